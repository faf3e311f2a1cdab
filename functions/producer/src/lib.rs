//! The producer Lambda: the HTTP API that accepts outbound chat messages.
//!
//! It only translates. An API Gateway HTTP API (v2 payload) request becomes
//! calls into `shared`: [`shared::auth`] says who is calling,
//! [`shared::intake`] turns the body into a [`shared::message::NewMessage`],
//! [`shared::rollout`] says whether intake is open, and the message is written
//! to the status store and then to SQS. Every outcome, good or bad, is an
//! `Ok(Response)` with the right status; errors are RFC 9457
//! `application/problem+json` bodies built in one place ([`error`]).
//!
//! The handler is generic over small ports that live in `shared` beside
//! their adapters ([`shared::store::StatusStore`],
//! [`shared::idempotency::IdempotencyStore`], [`shared::queue::Enqueue`],
//! [`shared::queue::QueueInfo`], [`shared::limiter::BucketViewer`]), so unit
//! tests run it against the `testkit` fakes; [`wiring`] plugs in Redis, SQS
//! and the Redis limiter.
//!
//! # Layout
//! - [`routes`]: the route table (paths, methods and every status each can
//!   answer; `openapi.yaml` is tested against it) and path matching that
//!   tolerates the `cargo lambda watch` and API Gateway stage prefixes.
//! - [`caller`]: who is calling: API Gateway JWT authorizer claims, or a
//!   bearer token verified here.
//! - [`handler`]: one function per route; the request's walk through intake,
//!   idempotency, store and queue.
//! - [`error`]: [`error::ApiError`], the one error type of the HTTP boundary,
//!   and its mapping to status codes and problem bodies.
//! - [`wiring`]: the cold start (configuration, clients built once) and the
//!   one Lambda event stream it serves: HTTP API requests, and the scheduled
//!   EventBridge event that replays the outbox.
//! - [`trace`]: W3C `traceparent` forwarding.
//! - [`respond`]: building responses without any fallible step.

pub mod caller;
pub mod error;
pub mod handler;
pub mod respond;
pub mod routes;
pub mod trace;
pub mod wiring;

#[cfg(test)]
mod tests;

use shared::auth::Verifier;
use shared::clock::Clock;
use shared::config::Config;
use shared::idempotency::Polling;
use shared::telemetry::Metrics;
use std::time::Duration;

/// The decisions and knobs the handler reads from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `RATE_LIMITER_ENABLED`: `false` closes intake with 503.
    pub enabled: bool,
    /// `RATE_LIMITER_ROLLOUT_PERCENT`: share of accounts intake is open for.
    pub rollout_percent: u8,
    /// `AUTH_REQUIRE_AUTHORIZER`: trust only API Gateway authorizer claims,
    /// never a token verified with the local secret.
    pub require_authorizer: bool,
    /// How long a request waits for another request with the same
    /// `Idempotency-Key` to finish before answering 409, and how often it
    /// looks again meanwhile.
    pub idempotency: Polling,
    /// Budget of each `/health` check (both run at once).
    pub health_timeout: Duration,
}

impl Settings {
    /// Waiting two seconds covers a normal accept (one Redis write and one
    /// SQS send, tens of milliseconds) with a wide margin, and stays far
    /// below API Gateway's 30 s integration timeout.
    pub const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(2);
    pub const IDEMPOTENCY_POLL: Duration = Duration::from_millis(100);
    /// A health check that takes longer than this is as good as down for a
    /// load balancer or an operator's probe.
    pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(1500);

    pub fn from_config(config: &Config) -> Self {
        Self {
            enabled: config.enabled,
            rollout_percent: config.rollout_percent,
            require_authorizer: config.auth_require_authorizer,
            idempotency: Polling {
                wait: Self::IDEMPOTENCY_WAIT,
                every: Self::IDEMPOTENCY_POLL,
            },
            health_timeout: Self::HEALTH_TIMEOUT,
        }
    }
}

/// Everything a request needs, built once at cold start and shared by
/// reference with every invocation.
pub struct App<S, Q, B> {
    /// Status records and idempotency keys.
    pub store: S,
    /// The outbound queue.
    pub queue: Q,
    /// Read-only view of the callers' token buckets.
    pub buckets: B,
    /// Verifies bearer tokens when no API Gateway authorizer did.
    pub verifier: Verifier,
    pub settings: Settings,
    /// EMF metrics (`MessagesQueued` by priority).
    pub metrics: Metrics,
    /// Wall time for `createdAt`.
    pub clock: Clock,
}
