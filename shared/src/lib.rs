//! Everything the producer and the consumer Lambdas share: the domain, its
//! validation, the per-account rate limiter, and the adapters to Redis, SQS
//! and the OnlyFans API.
//!
//! The functions themselves only translate: the producer turns HTTP into
//! [`intake`] calls and writes to [`store`] and [`queue`]; the consumer turns
//! an SQS event into [`message::QueueMessage`]s, asks the [`limiter`], calls
//! [`delivery`], and records the outcome in [`store`] and [`queue`]. Every
//! decision (is this body valid, may this message go now, what does this
//! upstream answer mean) is a plain function or type here, tested without AWS.
//!
//! # Layout
//! - [`config`]: typed settings read once from the environment at cold start.
//! - [`message`]: domain newtypes (`AccountId`, `RecipientId`, `Content`, ...)
//!   and the versioned queue-message format.
//! - [`intake`]: request body to [`message::NewMessage`], every field error collected.
//! - [`problem`]: RFC 9457 `application/problem+json` bodies.
//! - [`auth`]: bearer-token verification and the local token signer.
//! - [`limiter`]: the Redis Lua token bucket and its Rust twin (fake-clock tests)
//!   ([`limiter::Limiter`], [`limiter::BucketViewer`]).
//! - [`delivery`]: the OnlyFans client ([`delivery::Upstream`]), the classification of its
//!   answers, and [`delivery::policy`]: every delivery rule as a pure function.
//! - [`campaign`]: one message to many recipients: the id, the counts, the
//!   completion estimate, and their Redis storage ([`campaign::CampaignStore`]).
//! - [`idempotency`]: the `Idempotency-Key` newtype, its stored entry and the
//!   reserve -> accept -> complete protocol.
//! - [`store`]: status records and send claims in Redis ([`store::StatusStore`], [`store::ClaimStore`]);
//!   cancel against send, decided atomically by two scripts on one key.
//! - [`queue`]: SQS send, defer (visibility), dead-letter and queue statistics
//!   ([`queue::Enqueue`], [`queue::QueueInfo`], [`queue::Redeliver`]).
//! - [`redrive`]: DLQ messages back to the main queue (`make redrive`).
//! - [`outbox`]: the producer's Redis-stream fallback while SQS is down, and its replay.
//! - [`breaker`]: circuit breakers around SQS (producer) and the OnlyFans API (consumer).
//! - [`clock`]: the one source of wall time; elapsed time and sleeps are tokio's (virtual in the simulation).
//! - [`rollout`]: the feature flag and the stable-hash percentage rollout.
//! - [`secrets`]: Secrets Manager reads (API token, Redis AUTH) at cold start.
//! - [`ssm`]: SSM Parameter Store reads, and the one choice of where each secret
//!   comes from (Secrets Manager, an SSM `SecureString`, or the plain local value).
//! - [`tls`]: rustls with ring for the SDK, reqwest and redis-rs clients.
//! - [`telemetry`]: JSON logs through `tracing` and CloudWatch EMF metrics.
//! - [`durability`]: `WAIT` after the writes a failover must not lose.
//! - [`keys`]: the Redis key layout (every key of an account shares one hash tag).
//! - [`redis_conn`]: the one Redis connection type, one Redis or a Redis Cluster (`REDIS_CLUSTER`).

pub mod auth;
pub mod breaker;
pub mod campaign;
pub mod clock;
#[cfg(test)]
mod cluster_audit;
pub mod config;
pub mod delivery;
pub mod durability;
pub mod idempotency;
pub mod intake;
pub mod keys;
pub mod limiter;
pub mod message;
pub mod outbox;
pub mod problem;
pub mod queue;
pub mod redis_conn;
pub mod redrive;
pub mod rollout;
pub mod secrets;
pub mod ssm;
pub mod store;
pub mod telemetry;
pub mod tls;

/// Milliseconds since the Unix epoch on the system clock ([`clock::Clock`]'s).
///
/// For the dev tools and tests that stamp tokens and bodies; the functions
/// read time through the [`clock::Clock`] they were built with.
pub fn now_ms() -> u64 {
    clock::Clock::system().now_ms()
}
