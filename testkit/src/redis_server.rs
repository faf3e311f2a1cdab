//! A throwaway `redis-server` for tests and benchmarks that need their own
//! (a primary and a replica, a server to stop or kill), and a poll of its
//! `INFO replication`. Needs `redis-server` on PATH.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` this process started: continued (if stopped) and killed
/// when dropped, so a failing test never leaves one behind.
pub struct RedisServer(Child);

impl RedisServer {
    /// Starts `redis-server --port port --bind 127.0.0.1` without persistence,
    /// working in `dir` (created), with `args` appended (e.g. `--replicaof`).
    pub fn start(port: u16, dir: &Path, args: &[&str]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Self)
    }

    /// Sends `kill -<sig>` (e.g. `STOP`, `CONT`) to the server.
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status()
            .map_err(|e| format!("kill -{sig}: {e}"))?
            .success();
        if ok {
            Ok(())
        } else {
            Err(format!("kill -{sig} {} failed", self.0.id()))
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.signal("CONT");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `INFO replication` of `url` every 100 ms until one of its lines is
/// `line` (e.g. `master_link_status:up`); an error after `limit`.
pub async fn wait_for_info(url: &str, line: &str, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Ok(client) = redis::Client::open(url)
            && let Ok(mut c) = client.get_multiplexed_async_connection().await
        {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if info.lines().any(|l| l.trim() == line) {
                return Ok(());
            }
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{url}: no {line:?} in INFO replication after {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Redis the shared adapters' tests run against: the Redis Cluster at
/// `REDIS_CLUSTER_URL` when it is set (`make test-cluster`, and the cluster
/// pass of `make test`), else the one Redis at `REDIS_URL` (default
/// redis://127.0.0.1:6379). Same test bodies on both.
pub async fn test_redis() -> Result<shared::redis_conn::RedisConn, String> {
    use shared::redis_conn::{Topology, connect};
    let (url, topology) = match std::env::var("REDIS_CLUSTER_URL") {
        Ok(url) if !url.trim().is_empty() => (url, Topology::Cluster),
        _ => (
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            Topology::Single,
        ),
    };
    connect(&url, topology)
        .await
        .map_err(|e| format!("no {topology:?} Redis answers at {url}: {e}"))
}
