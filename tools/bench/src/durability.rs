//! What `REDIS_WAIT_REPLICAS` costs per limiter decision: the same
//! `RedisLimiter::acquire` with and without `WAIT 1` after each granted
//! token, on a real primary and replica the benchmark starts itself (one
//! machine, loopback: the replica's acknowledgement is as fast as it gets;
//! across availability zones add the network's round trip).

use crate::limiter::{account, config};
use crate::stats::{percentile, round};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use shared::durability::Durability;
use shared::limiter::{Limiter, RedisLimiter};
use shared::message::{AccountId, Priority};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::RedisServer;

/// Starts `redis-server --port port args...` without persistence, in `dir`.
pub(crate) fn redis_server(port: u16, dir: &Path, args: &[&str]) -> Result<RedisServer> {
    RedisServer::start(port, dir, args).context("starting redis-server")
}

/// Polls `INFO replication` of `url` until `line` is in it.
pub(crate) async fn wait_for_info(url: &str, line: &str, limit: Duration) -> Result<()> {
    testkit::wait_for_info(url, line, limit)
        .await
        .map_err(anyhow::Error::msg)
}

/// Sequential decisions on one connection: each one's latency (µs).
pub(crate) async fn latencies(
    l: &RedisLimiter,
    accounts: &[AccountId],
    n: usize,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let d = l
            .acquire(&accounts[i % accounts.len()], Priority::High)
            .await?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
        if !d.is_allowed() {
            bail!("a decision was denied: the benchmark measures granted tokens");
        }
    }
    Ok(out)
}

/// `concurrency` tasks sharing the limiter's one connection: decisions/s.
pub(crate) async fn throughput(
    l: &RedisLimiter,
    accounts: &Arc<Vec<AccountId>>,
    concurrency: usize,
    ops: usize,
) -> Result<f64> {
    let per_task = ops / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let l = l.clone();
        let accounts = Arc::clone(accounts);
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                l.acquire(
                    &accounts[(t * per_task + i) % accounts.len()],
                    Priority::High,
                )
                .await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((per_task * concurrency) as f64 / started.elapsed().as_secs_f64())
}

pub struct Args {
    /// The primary's port; the replica takes the next one.
    pub port: u16,
    pub prefix: String,
    pub decisions: usize,
    pub rounds: usize,
}

pub async fn run(args: &Args) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!("bench-wait-{}", std::process::id()));
    let primary_url = format!("redis://127.0.0.1:{}", args.port);
    let _primary = redis_server(args.port, &dir.join("p"), &[])?;
    let _replica = redis_server(
        args.port + 1,
        &dir.join("r"),
        &["--replicaof", "127.0.0.1", &args.port.to_string()],
    )?;
    wait_for_info(&primary_url, "connected_slaves:1", Duration::from_secs(20)).await?;
    wait_for_info(
        &format!("redis://127.0.0.1:{}", args.port + 1),
        "master_link_status:up",
        Duration::from_secs(20),
    )
    .await?;

    let conn = shared::store::connect(&primary_url).await?;
    let cfg = config()?;
    let plain = RedisLimiter::new(conn, cfg);
    let durable = plain.clone().with_durability(Durability {
        replicas: 1,
        timeout: Duration::from_millis(100),
    });
    let accounts: Arc<Vec<AccountId>> = Arc::new(
        (0..1000)
            .map(|i| account(&format!("{}-wait-{i:04}", args.prefix)))
            .collect::<Result<_>>()?,
    );
    // Warm-up: connection, script cache, keys.
    latencies(&plain, &accounts, 2000).await?;
    latencies(&durable, &accounts, 2000).await?;

    let (mut base, mut wait) = (Vec::new(), Vec::new());
    let (mut base_c32, mut wait_c32) = (Vec::new(), Vec::new());
    for r in 0..args.rounds {
        // Alternate which side goes first.
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_wait in order {
            let l = if with_wait { &durable } else { &plain };
            let lat = latencies(l, &accounts, args.decisions).await?;
            let ops = throughput(l, &accounts, 32, args.decisions * 4).await?;
            if with_wait {
                wait.extend(lat);
                wait_c32.push(ops);
            } else {
                base.extend(lat);
                base_c32.push(ops);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let p = |v: &[f64], q: f64| round(percentile(v, q).unwrap_or(f64::NAN), 1);
    let med = |v: &[f64]| round(crate::stats::median(v), 0);
    let out = json!({
        "p50_us": p(&wait, 50.0),
        "p99_us": p(&wait, 99.0),
        "base_p50_us": p(&base, 50.0),
        "base_p99_us": p(&base, 99.0),
        "added_p50_us": round(p(&wait, 50.0) - p(&base, 50.0), 1),
        "c32_ops_s": med(&wait_c32),
        "base_c32_ops_s": med(&base_c32),
        "decisions_per_round": args.decisions,
        "rounds": args.rounds,
        "replicas": 1,
        "setup": "RedisLimiter::acquire, granted tokens, one shared connection, primary + replica (redis-server) on this machine; latency sequential (c1), ops/s with 32 tasks on the one connection; WAIT 1 100 after each grant vs none",
    });
    eprintln!("[bench] limiter wait: {out}");
    Ok(out)
}
