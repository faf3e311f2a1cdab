//! Intake in process: the producer's real handler (`producer::handler::handle`)
//! on an `App` built with in-memory ports, timed call by call, so p50/p99 are
//! per request, with the `testkit` fakes: a map for status records and
//! idempotency keys, and a queue that serialises the body (as the SQS
//! adapter does) and counts.
//!
//! Logging is on, in the production format (JSON, as `shared::telemetry::init`
//! configures it) but written to a sink: the per-request log line is part of
//! the handler's cost in Lambda. EMF metrics are off, as `METRICS_DISABLED`
//! makes them locally.

use crate::stats::{median, percentile_sorted, round};
use anyhow::Result;
use lambda_http::{Body, Request};
use producer::{App, Settings};
use serde_json::{Value, json};
use shared::auth::Verifier;
use shared::telemetry::Metrics;
use std::time::Instant;
use testkit::{MemBuckets, MemQueue, MemStore};

const SECRET: &str = "bench-secret";

type BenchApp = App<MemStore, MemQueue, MemBuckets>;

fn app() -> BenchApp {
    App {
        // Room for every record of the run: no rehash in the middle of a call.
        store: MemStore::with_capacity(200_000),
        queue: MemQueue {
            count_only: true,
            ..MemQueue::default()
        },
        buckets: MemBuckets::default(),
        verifier: Verifier::new(SECRET).expect("a constant, non-empty secret"),
        settings: Settings {
            enabled: true,
            rollout_percent: 100,
            require_authorizer: false,
            idempotency: shared::idempotency::Polling {
                wait: Settings::IDEMPOTENCY_WAIT,
                every: Settings::IDEMPOTENCY_POLL,
            },
            health_timeout: Settings::HEALTH_TIMEOUT,
        },
        metrics: Metrics::disabled("Bench", "producer"),
        clock: shared::clock::Clock::system(),
    }
}

/// A request as `cargo lambda watch` hands it to the function.
fn request(auth: &str, body: &str, idem: Option<&str>) -> Result<Request> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri("https://api.example.com/v1/messages")
        .header("authorization", auth)
        .header("content-type", "application/json");
    if let Some(k) = idem {
        b = b.header("idempotency-key", k);
    }
    Ok(b.body(Body::from(body.to_owned()))?)
}

/// Times `n` calls one by one; returns sorted microseconds.
async fn sample(
    app: &BenchApp,
    auth: &str,
    body: &str,
    n: usize,
    idempotent: bool,
    round_no: usize,
) -> Result<Vec<f64>> {
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let key = idempotent.then(|| format!("bench-{round_no}-{i}"));
        let req = request(auth, body, key.as_deref())?;
        let started = Instant::now();
        let resp = producer::handler::handle(app, req)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let elapsed = started.elapsed();
        if resp.status() != http::StatusCode::ACCEPTED {
            anyhow::bail!("handler answered {} instead of 202", resp.status());
        }
        drop(resp);
        us.push(elapsed.as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    Ok(us)
}

pub async fn run(rounds: usize, per_round: usize) -> Result<Value> {
    // The production log format, into a sink.
    shared::telemetry::init_with(std::io::sink, Some("info"));

    let now = shared::now_ms() / 1000;
    let token = shared::auth::sign(SECRET, "bench_acct", now, 3600)?;
    let auth = format!("Bearer {token}");
    let body = json!({
        "recipientId": "fan_123",
        "content": "Hello from the benchmark! A message of ordinary length, with an emoji 🙂.",
        "priority": "high",
        "mediaUrls": ["https://cdn.example.com/a.jpg"],
    })
    .to_string();

    let mut variants = Vec::new();
    for (name, idempotent) in [("post", false), ("post_idempotency_key", true)] {
        let app = app();
        // Warm-up: allocator, caches, lazy statics.
        sample(&app, &auth, &body, 2_000, idempotent, 999).await?;
        let (mut p50s, mut p99s, mut means) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let us = sample(&app, &auth, &body, per_round, idempotent, r).await?;
            p50s.push(percentile_sorted(&us, 50.0));
            p99s.push(percentile_sorted(&us, 99.0));
            means.push(us.iter().sum::<f64>() / us.len().max(1) as f64);
        }
        let sent = app.queue.count();
        eprintln!(
            "[bench] intake handler {name}: p50 {:.1} us, p99 {:.1} us ({} calls)",
            median(&p50s),
            median(&p99s),
            sent
        );
        variants.push(json!({
            "name": name,
            "p50_us": round(median(&p50s), 1),
            "p99_us": round(median(&p99s), 1),
            "mean_us": round(median(&means), 1),
            "round_p50_us": p50s.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "round_p99_us": p99s.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "calls_per_round": per_round,
            "enqueued": sent,
        }));
    }
    let head = variants[0].clone();
    Ok(json!({
        "handler_p50_us": head["p50_us"],
        "handler_p99_us": head["p99_us"],
        "rounds": rounds,
        "variants": variants,
        "runtime": "tokio current-thread; one request at a time",
        "timer": "Instant around each producer::handler::handle call",
    }))
}
