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
//! - [`limiter`]: the Redis Lua token bucket and its Rust twin (fake-clock tests).
//! - [`delivery`]: the OnlyFans client and the classification of its answers.
//! - [`store`]: status records, idempotency keys and send claims in Redis.
//! - [`queue`]: SQS send, defer (visibility), dead-letter and queue statistics.
//! - [`redrive`]: DLQ messages back to the main queue (`make redrive`).
//! - [`outbox`]: the producer's Redis-stream fallback while SQS is down, and its replay.
//! - [`breaker`]: circuit breakers around SQS (producer) and the OnlyFans API (consumer).
//! - [`rollout`]: the feature flag and the stable-hash percentage rollout.
//! - [`secrets`]: Secrets Manager reads (API token, Redis AUTH) at cold start.
//! - [`ssm`]: SSM Parameter Store reads, and the one choice of where each secret
//!   comes from (Secrets Manager, an SSM `SecureString`, or the plain local value).
//! - [`tls`]: rustls with ring for the SDK, reqwest and redis-rs clients.
//! - [`telemetry`]: JSON logs through `tracing` and CloudWatch EMF metrics.
//! - [`keys`]: the Redis key layout (every key of an account shares one hash tag).

pub mod auth;
pub mod breaker;
pub mod config;
pub mod delivery;
pub mod intake;
pub mod keys;
pub mod limiter;
pub mod message;
pub mod outbox;
pub mod problem;
pub mod queue;
pub mod redrive;
pub mod rollout;
pub mod secrets;
pub mod ssm;
pub mod store;
pub mod telemetry;
pub mod tls;

/// Current wall-clock time in milliseconds since the Unix epoch.
///
/// Used for timestamps shown to users and for the limiter's client-clock
/// fallback; rate decisions normally use Redis `TIME` instead.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
