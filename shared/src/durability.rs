//! Writes that must survive a failover: `WAIT` after them.
//!
//! ElastiCache (and Redis) replicate asynchronously: a primary answers a
//! write before any replica has it, so a failover can promote a replica that
//! lacks the last writes. For the token bucket that hands spent tokens back
//! (an over-limit burst); for a `sent` status or a send claim it can forget
//! that a message went. With [`Durability::replicas`] > 0, the adapters call
//! [`Durability::confirm`] on the same connection right after such a write
//! (a token taken, a claim, a terminal status, a completed idempotency key):
//! `WAIT replicas timeout` answers how many replicas acknowledged every write
//! this connection made so far. Fewer than asked is an error, and the caller
//! treats it like an unreachable Redis: nothing is sent on a token or claim
//! whose write a failover could lose (fail closed).
//!
//! `WAIT` inside a Lua script does not block, so it follows the call. It
//! blocks the connection it runs on (redis-rs multiplexes one connection per
//! instance): while a replica lags, every command of that instance waits up
//! to the timeout behind it. That is the price; see docs/reliability.md for
//! what it costs per decision.

use crate::redis_conn::RedisConn;
use std::time::Duration;

/// How many replicas must acknowledge a critical write, and how long to
/// wait for them (`REDIS_WAIT_REPLICAS`, `REDIS_WAIT_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// 0: no `WAIT` (a single Redis, or a deployment that accepts what an
    /// asynchronous failover loses).
    pub replicas: u32,
    /// `WAIT`'s timeout; above 0 (`WAIT 0` would block forever).
    pub timeout: Duration,
}

/// The longest `WAIT` allowed: under the connection's 2 s response timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(1000);

/// Fewer replicas than asked acknowledged a write in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "write not replicated: {acked} of {wanted} replicas acknowledged it within {timeout_ms} ms"
)]
pub struct NotReplicated {
    pub acked: i64,
    pub wanted: u32,
    pub timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    NotReplicated(#[from] NotReplicated),
}

impl Default for Durability {
    fn default() -> Self {
        Self::NONE
    }
}

impl Durability {
    /// No `WAIT`.
    pub const NONE: Durability = Durability {
        replicas: 0,
        timeout: Duration::from_millis(100),
    };

    pub fn enabled(&self) -> bool {
        self.replicas > 0
    }

    /// `WAIT replicas timeout` on `conn`, after a write to `key` made on it
    /// (in a cluster, on the node serving `key`:
    /// [`RedisConn::wait_for_replicas`]). Ok when disabled, or when enough
    /// replicas acknowledged.
    pub async fn confirm(&self, conn: &mut RedisConn, key: &str) -> Result<(), DurabilityError> {
        if !self.enabled() {
            return Ok(());
        }
        let timeout_ms = self.timeout.as_millis().max(1) as u64;
        let acked = conn
            .wait_for_replicas(key, self.replicas, timeout_ms)
            .await?;
        if acked < i64::from(self.replicas) {
            return Err(NotReplicated {
                acked,
                wanted: self.replicas,
                timeout_ms,
            }
            .into());
        }
        Ok(())
    }
}
