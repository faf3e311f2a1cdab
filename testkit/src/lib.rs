//! The one set of in-memory fakes of the ports in `shared`, for the
//! producer's and consumer's tests, the benchmark, the fuzz targets and the
//! simulation. Dev-only: no function depends on it.
//!
//! Each fake behaves as its real adapter does where a caller can tell the
//! difference (terminal statuses are final, a claim is held until its lease
//! ends, an idempotency key answers as Redis's SET NX does):
//! `tests/contract.rs` runs one test body on the fake and on the Redis
//! adapter. Each can also be told to fail, and records what was done to it.
//!
//! # Layout
//! - [`MemStore`]: status records, claims and idempotency keys
//!   ([`shared::store::StatusStore`], [`shared::store::ClaimStore`],
//!   [`shared::idempotency::IdempotencyStore`], [`shared::store::StoreHealth`]).
//! - [`MemQueue`]: what was enqueued, deferred, dead-lettered and re-enqueued
//!   ([`shared::queue::Enqueue`], [`shared::queue::QueueInfo`], [`shared::queue::Redeliver`]).
//! - [`ScriptedUpstream`]: the OnlyFans API answering from a script ([`shared::delivery::Upstream`]).
//! - [`ScriptedLimiter`], [`MemBuckets`]: limiter decisions from a script,
//!   and a bucket view ([`shared::limiter::Limiter`], [`shared::limiter::BucketViewer`]).
//! - [`RedisServer`], [`wait_for_info`]: a real `redis-server` of a test's
//!   own (a replica pair, a server to stop), not a fake; [`test_redis`]: the
//!   shared Redis or Redis Cluster the adapters' tests run against.

mod limiter;
mod queue;
mod redis_server;
mod store;
mod upstream;

pub use limiter::{MemBuckets, ScriptedLimiter};
pub use queue::MemQueue;
pub use redis_server::{RedisServer, test_redis, wait_for_info};
pub use store::{MemCampaign, MemStore, StoreCopy};
pub use upstream::ScriptedUpstream;

use std::sync::{Mutex, MutexGuard};

/// Locks a fake's state. A test that panicked while holding a lock has
/// failed already; its state is still the best picture of what happened.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
