//! Deterministic discrete-event simulation of the delivery path (issue 14).
//!
//! The real consumer runs on virtual time against models of what it talks
//! to: SQS and Lambda's event source mapping ([`queue`], [`engine`]), Redis
//! (the limiter script's Rust twin in [`limiter`]; status and claims in
//! `testkit::MemStore`), and the OnlyFans API ([`upstream`]). [`check`]
//! judges a run against the contract's guarantees and measures it.
//!
//! # Layout
//! - [`scenario`]: the scenario file format (`sim/scenarios/*.toml`), validated.
//! - [`workload`]: the traffic a scenario's seed draws.
//! - [`queue`]: the SQS model (visibility, receive counts, redrive, delays,
//!   receipt handles, duplicates, retention), with AWS documentation cited.
//! - [`limiter`]: the Redis limiter's keys, decided by `bucket::decide`.
//! - [`upstream`]: arrivals at the OnlyFans API.
//! - [`engine`]: the paused runtime, producer and event source mapping.
//! - [`check`]: violations, losses, duplicates, DLQ causes, lateness, cost.
//! - [`plot`]: the per-scenario SVG plots.
//! - [`bench`]: the comparison with `make bench`'s accuracy run.

pub mod bench;
pub mod check;
pub mod engine;
pub mod limiter;
pub mod plot;
pub mod queue;
pub mod scenario;
pub mod upstream;
pub mod workload;

/// Runs one scenario and judges it (`wall_s` is the real time it took).
pub fn run(s: &scenario::Scenario) -> anyhow::Result<check::ScenarioReport> {
    let started = std::time::Instant::now();
    let run = engine::run(s)?;
    Ok(check::report(s, &run, started.elapsed().as_secs_f64()))
}
