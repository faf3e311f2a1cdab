//! Limiter decisions per second on one Redis and on a 3-shard Redis Cluster,
//! side by side in one run: the same `RedisLimiter::acquire` on 1,000
//! accounts (spread over every shard by their hash tags), 32 tasks sharing
//! one client, alternating the two sides round by round. Both are started by
//! the benchmark itself on this machine: a `redis-server` without replicas,
//! and `scripts/redis-cluster.sh` (3 primaries + 3 replicas). On a machine
//! with fewer cores than shards the cluster's primaries share the CPU with
//! each other and with the client, so the figure is a floor, not what three
//! ElastiCache shards would do.

use crate::durability::{latencies, redis_server, throughput};
use crate::limiter::{account, config};
use crate::stats::{median, percentile, round};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use shared::limiter::RedisLimiter;
use shared::message::AccountId;
use shared::redis_conn::{Topology, connect};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub struct Args {
    /// The cluster's first port (it takes six); the single Redis takes the seventh.
    pub port_base: u16,
    pub prefix: String,
    pub decisions: usize,
    pub rounds: usize,
}

/// The cluster `scripts/redis-cluster.sh` started, stopped when dropped.
struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    base: u16,
}

impl Cluster {
    fn sh(script: &Path, dir: &Path, base: u16, cmd: &str) -> Result<()> {
        let out = Command::new("bash")
            .arg(script)
            .arg(cmd)
            .env("REDIS_CLUSTER_PORT_BASE", base.to_string())
            .env("REDIS_CLUSTER_DIR", dir)
            .output()
            .context("running scripts/redis-cluster.sh")?;
        ensure!(
            out.status.success(),
            "redis-cluster.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn up(base: u16) -> Result<Self> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster.sh");
        let dir = std::env::temp_dir().join(format!("bench-cluster-{}", std::process::id()));
        Self::sh(&script, &dir, base, "up")?;
        Ok(Self { script, dir, base })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Self::sh(&self.script, &self.dir, self.base, "down");
    }
}

pub async fn run(args: &Args) -> Result<Value> {
    let single_port = args.port_base + 6;
    let dir = std::env::temp_dir().join(format!("bench-single-{}", std::process::id()));
    let _single = redis_server(single_port, &dir, &[])?;
    let single_url = format!("redis://127.0.0.1:{single_port}");
    crate::durability::wait_for_info(
        &single_url,
        "role:master",
        std::time::Duration::from_secs(20),
    )
    .await?;
    let _cluster = Cluster::up(args.port_base)?;
    let cluster_url = format!("redis://127.0.0.1:{}", args.port_base);

    let cfg = config()?;
    let single = RedisLimiter::new(connect(&single_url, Topology::Single).await?, cfg);
    let cluster = RedisLimiter::new(connect(&cluster_url, Topology::Cluster).await?, cfg);
    let accounts: Arc<Vec<AccountId>> = Arc::new(
        (0..1000)
            .map(|i| account(&format!("{}-topo-{i:04}", args.prefix)))
            .collect::<Result<_>>()?,
    );
    // Warm-up: connections, script caches (one per shard), keys.
    latencies(&single, &accounts, 2000).await?;
    latencies(&cluster, &accounts, 2000).await?;

    let (mut s_lat, mut c_lat, mut s_ops, mut c_ops) = (vec![], vec![], vec![], vec![]);
    for r in 0..args.rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for on_cluster in order {
            let l = if on_cluster { &cluster } else { &single };
            let lat = latencies(l, &accounts, args.decisions).await?;
            let ops = throughput(l, &accounts, 32, args.decisions * 4).await?;
            if on_cluster {
                c_lat.extend(lat);
                c_ops.push(ops);
            } else {
                s_lat.extend(lat);
                s_ops.push(ops);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let p = |v: &[f64], q: f64| round(percentile(v, q).unwrap_or(f64::NAN), 1);
    let out = json!({
        "single": {
            "ops_s": round(median(&s_ops), 0),
            "p50_us": p(&s_lat, 50.0),
            "p99_us": p(&s_lat, 99.0),
        },
        "cluster": {
            "ops_s": round(median(&c_ops), 0),
            "p50_us": p(&c_lat, 50.0),
            "p99_us": p(&c_lat, 99.0),
            "shards": 3,
            "replicas_per_shard": 1,
        },
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "decisions_per_round": args.decisions,
        "rounds": args.rounds,
        "setup": "RedisLimiter::acquire, granted tokens, 1000 accounts, one client (redis-rs ConnectionManager vs cluster-async); ops/s: 32 tasks on the one client, median of rounds; latency sequential; one redis-server vs scripts/redis-cluster.sh (3 primaries + 3 replicas) on this machine, alternating",
    });
    eprintln!("[bench] limiter single vs cluster: {out}");
    Ok(out)
}
