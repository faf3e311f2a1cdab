//! Limiter throughput: decisions per second through the project's own client
//! (`RedisLimiter::acquire`) against `redis-benchmark` running `EVALSHA` of
//! the same script with the same keys and arguments, at the same concurrency,
//! alternating the two sides round by round.

use crate::stats::{median, round};
use anyhow::{Context, Result, bail};
use redis::ToRedisArgs;
use serde_json::{Value, json};
use shared::config::{LimiterClock, LimiterConfig};
use shared::keys;
use shared::limiter::{Limiter, RedisLimiter, SCRIPT};
use shared::message::{AccountId, Priority};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

/// High enough that no bucket ever runs dry at these speeds: every decision
/// on both sides is "allowed" (the write path: HMGET, PTTL, HSET, PEXPIRE).
/// The burst holds the limiter's guard (what refill adds in 100 ms, 6.7 M
/// tokens at this rate) many times over: with a burst below it the bucket
/// would be "too small", owe the guard, and deny (`Rate::need_and_take`).
const RATE_PER_MINUTE: u32 = 4_000_000_000;
const BURST: u32 = 1_000_000_000;
/// The limiter's own key TTL (`KEY_TTL_MS` in shared/src/limiter/mod.rs).
const KEY_TTL_MS: u64 = 24 * 3600 * 1000;
/// `high` leaves no reserve: ARGV[3] (the reserve percent) = 0 on both sides.
const PRIORITY: Priority = Priority::High;

pub struct Args {
    pub redis_url: String,
    pub prefix: String,
    pub rounds_c1: usize,
    pub rounds_c32: usize,
    pub ops_c1: usize,
    pub ops_c32: usize,
    pub current_thread: bool,
    /// Only the configuration of this name (a diagnostic).
    pub only: Option<String>,
}

#[derive(Clone, Copy)]
struct Setup {
    name: &'static str,
    concurrency: usize,
    accounts: usize,
    /// Rust side: one connection per task instead of one shared one.
    pool: bool,
}

const SETUPS: [Setup; 6] = [
    Setup {
        name: "c1-a1",
        concurrency: 1,
        accounts: 1,
        pool: false,
    },
    Setup {
        name: "c1-a10000",
        concurrency: 1,
        accounts: 10_000,
        pool: false,
    },
    Setup {
        name: "c32-a1",
        concurrency: 32,
        accounts: 1,
        pool: false,
    },
    Setup {
        name: "c32-a10000",
        concurrency: 32,
        accounts: 10_000,
        pool: false,
    },
    Setup {
        name: "c32-a1-pool",
        concurrency: 32,
        accounts: 1,
        pool: true,
    },
    Setup {
        name: "c32-a10000-pool",
        concurrency: 32,
        accounts: 10_000,
        pool: true,
    },
];

/// The configuration under test: only rate and burst matter (`high` has no reserve).
pub(crate) fn config() -> Result<LimiterConfig> {
    Ok(LimiterConfig {
        per_minute: NonZeroU32::new(RATE_PER_MINUTE).context("rate")?,
        burst: NonZeroU32::new(BURST).context("burst")?,
        reserve_medium_percent: 10,
        reserve_low_percent: 20,
        clock: LimiterClock::Redis,
    })
}

/// One argument as redis-rs puts it on the wire, so both sides send the same bytes.
fn wire<T: ToRedisArgs>(v: T) -> Result<String> {
    let args = v.to_redis_args();
    let first = args.into_iter().next().context("empty redis argument")?;
    Ok(String::from_utf8(first)?)
}

pub(crate) fn account(raw: &str) -> Result<AccountId> {
    AccountId::parse(raw).map_err(|e| anyhow::anyhow!("account id {raw:?}: {e}"))
}

/// A cheap deterministic generator for picking accounts.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

struct RustRun {
    ops_per_s: f64,
    allowed: usize,
}

async fn run_rust(
    limiters: &[RedisLimiter],
    accounts: &Arc<Vec<AccountId>>,
    concurrency: usize,
    ops: usize,
) -> Result<RustRun> {
    let per_task = ops / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for t in 0..concurrency {
        let limiter = limiters[t % limiters.len()].clone();
        let accounts = Arc::clone(accounts);
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
            let mut allowed = 0usize;
            for _ in 0..per_task {
                let i = if accounts.len() == 1 {
                    0
                } else {
                    (xorshift(&mut seed) % accounts.len() as u64) as usize
                };
                let d = limiter.acquire(&accounts[i], PRIORITY).await?;
                if d.is_allowed() {
                    allowed += 1;
                }
            }
            Ok::<usize, anyhow::Error>(allowed)
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(RustRun {
        ops_per_s: (per_task * concurrency) as f64 / elapsed,
        allowed,
    })
}

/// `redis-benchmark ... --csv EVALSHA sha 4 k1 k2 k3 k4 a1..a7`; returns requests/s.
fn run_raw(
    url: &str,
    concurrency: usize,
    ops: usize,
    random: bool,
    argv: &[String],
) -> Result<f64> {
    let mut cmd = std::process::Command::new("redis-benchmark");
    cmd.arg("-u")
        .arg(url)
        .arg("-n")
        .arg(ops.to_string())
        .arg("-c")
        .arg(concurrency.to_string())
        .arg("--csv");
    if random {
        cmd.arg("-r").arg("10000");
    }
    cmd.args(argv);
    let out = cmd.output().context("running redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps",... then "EVALSHA ...","25000.00",...
    for line in text.lines() {
        let fields: Vec<&str> = line.split("\",\"").collect();
        if fields.len() > 1
            && let Ok(rps) = fields[1].trim_matches('"').parse::<f64>()
        {
            return Ok(rps);
        }
    }
    bail!("cannot read redis-benchmark's output: {text}")
}

pub async fn run(args: &Args) -> Result<Value> {
    let cfg = config()?;
    let conn = shared::store::connect(&args.redis_url).await?;
    let mut admin = conn.clone();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query_async(&mut admin)
        .await
        .context("SCRIPT LOAD")?;
    if sha != redis::Script::new(SCRIPT).get_hash() {
        bail!("SCRIPT LOAD returned {sha}, not the client's hash");
    }

    // The raw side's arguments, byte for byte what RedisLimiter sends.
    let rate = f64::from(cfg.per_minute.get());
    let burst = f64::from(cfg.burst.get());
    let tail = [
        wire(rate)?,
        wire(burst)?,
        wire(0u8)?,
        wire(0u64)?,
        wire(KEY_TTL_MS)?,
        // No slot held, due time unknown: what `RedisLimiter::acquire` sends.
        wire(0u8)?,
        wire(0u64)?,
    ];
    let raw_argv = |acct: &AccountId| -> Vec<String> {
        let mut v = vec![
            "EVALSHA".to_owned(),
            sha.clone(),
            "4".to_owned(),
            keys::bucket(acct),
            keys::horizon(acct, PRIORITY),
            keys::pause(acct),
            keys::limits(acct),
        ];
        v.extend(tail.iter().cloned());
        v
    };
    let raw_solo = account(&format!("{}-raw-solo", args.prefix))?;
    let raw_rand = account(&format!("{}-raw-__rand_int__", args.prefix))?;

    let shared_limiter = RedisLimiter::new(conn.clone(), cfg);
    let mut pool = Vec::with_capacity(32);
    for _ in 0..32 {
        pool.push(RedisLimiter::new(
            shared::store::connect(&args.redis_url).await?,
            cfg,
        ));
    }

    let solo = Arc::new(vec![account(&format!("{}-rs-solo", args.prefix))?]);
    let many: Arc<Vec<AccountId>> = Arc::new(
        (0..10_000)
            .map(|i| account(&format!("{}-rs-{i:05}", args.prefix)))
            .collect::<Result<_>>()?,
    );

    // Warm-up of both sides (connections, script cache, key space).
    run_rust(std::slice::from_ref(&shared_limiter), &many, 32, 20_000).await?;
    run_raw(&args.redis_url, 32, 20_000, true, &raw_argv(&raw_rand))?;

    let mut results = Vec::new();
    for s in SETUPS
        .into_iter()
        .filter(|s| args.only.as_deref().is_none_or(|o| o == s.name))
    {
        let ops = if s.concurrency == 1 {
            args.ops_c1
        } else {
            args.ops_c32
        };
        let accounts = if s.accounts == 1 { &solo } else { &many };
        let limiters: &[RedisLimiter] = if s.pool {
            &pool
        } else {
            std::slice::from_ref(&shared_limiter)
        };
        let argv = if s.accounts == 1 {
            raw_argv(&raw_solo)
        } else {
            raw_argv(&raw_rand)
        };
        let mut rust = Vec::new();
        let mut raw = Vec::new();
        let mut allowed = 0usize;
        let mut decided = 0usize;
        let rounds = if s.concurrency == 1 {
            args.rounds_c1
        } else {
            args.rounds_c32
        };
        for r in 0..rounds {
            // Alternate which side goes first, so drift hits both alike.
            for side in 0..2 {
                if (side + r) % 2 == 0 {
                    let run = run_rust(limiters, accounts, s.concurrency, ops).await?;
                    rust.push(run.ops_per_s);
                    allowed += run.allowed;
                    decided += (ops / s.concurrency) * s.concurrency;
                } else {
                    raw.push(run_raw(
                        &args.redis_url,
                        s.concurrency,
                        ops,
                        s.accounts > 1,
                        &argv,
                    )?);
                }
            }
        }
        // The raw side's decision, probed once with the same keys.
        let probe: Vec<i64> = redis::Script::new(SCRIPT)
            .key(keys::bucket(&raw_solo))
            .key(keys::horizon(&raw_solo, PRIORITY))
            .key(keys::pause(&raw_solo))
            .key(keys::limits(&raw_solo))
            .arg(rate)
            .arg(burst)
            .arg(0u8)
            .arg(0u64)
            .arg(KEY_TTL_MS)
            .invoke_async(&mut admin)
            .await?;
        let rust_med = median(&rust);
        let raw_med = median(&raw);
        // Each round's two runs are back to back: their ratio cancels the
        // machine's slower drifts; the median of those ratios is the figure.
        let ratios: Vec<f64> = rust.iter().zip(&raw).map(|(a, b)| a / b).collect();
        let ratio = median(&ratios);
        eprintln!(
            "[bench] limiter {:<16} rust {:>8.0}/s  redis-benchmark {:>8.0}/s  ratio {:.3}",
            s.name, rust_med, raw_med, ratio
        );
        results.push(json!({
            "name": s.name,
            "concurrency": s.concurrency,
            "accounts": s.accounts,
            "rust_connections": if s.pool { s.concurrency } else { 1 },
            "raw_connections": s.concurrency,
            "ops_per_run": ops,
            "rounds": rounds,
            "rust_ops_per_s": rust.iter().map(|x| round(*x, 0)).collect::<Vec<_>>(),
            "raw_ops_per_s": raw.iter().map(|x| round(*x, 0)).collect::<Vec<_>>(),
            "round_ratios": ratios.iter().map(|x| round(*x, 3)).collect::<Vec<_>>(),
            "ops_per_s": round(rust_med, 0),
            "raw_ops_per_s_median": round(raw_med, 0),
            "ratio": round(ratio, 3),
            "ratio_of_medians": round(rust_med / raw_med, 3),
            "rust_allowed_share": round(allowed as f64 / decided.max(1) as f64, 4),
            "raw_probe_allowed": probe.first() == Some(&1),
        }));
    }

    let head = results
        .iter()
        .find(|r| r["name"] == "c32-a10000")
        .cloned()
        .unwrap_or(Value::Null);
    let min_ratio = results
        .iter()
        .filter_map(|r| r["ratio"].as_f64())
        .fold(f64::INFINITY, f64::min);
    Ok(json!({
        "headline_config": "c32-a10000",
        "ops_per_s": head["ops_per_s"],
        "raw_ops_per_s": head["raw_ops_per_s_median"],
        "ratio": head["ratio"],
        "min_ratio": round(min_ratio, 3),
        "rate_per_minute": RATE_PER_MINUTE,
        "burst": BURST,
        "decisions": "allowed (rate and burst far above the achievable call rate; both sides)",
        "priority": PRIORITY.as_str(),
        "rounds_c1": args.rounds_c1,
        "rounds_c32": args.rounds_c32,
        "profile": "release (opt-level z, fat LTO: the workspace's release profile)",
        "client_runtime": if args.current_thread { "tokio current-thread" } else { "tokio multi-thread (as the functions)" },
        "script_sha": sha,
        "configs": results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::limiter::Rate;

    /// The measured decisions are all grants: a full bucket serves a send of
    /// the benchmarked class without owing anything, and refill (over 10^7
    /// tokens a second) outruns any call rate a machine here reaches (the
    /// bench measures ~10^5 decisions a second).
    #[test]
    fn the_benchmarks_bucket_never_denies() {
        let rate = Rate {
            per_minute: f64::from(RATE_PER_MINUTE),
            burst: f64::from(BURST),
        };
        let (need, take) = rate.need_and_take(0);
        assert!(need <= rate.burst, "need {need} > burst {}", rate.burst);
        assert_eq!(take, 1.0, "a send owes nothing");
        assert!(rate.per_minute / 60.0 > 1e7);
    }
}
