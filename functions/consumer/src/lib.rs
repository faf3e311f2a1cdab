//! The consumer Lambda: SQS-triggered delivery to the OnlyFans API under the
//! per-account rate limit.
//!
//! # Layout
//! - [`handler`]: the SQS event to per-record work and back to a batch response.
//! - [`process`]: one record's path: poison check, claim, token, call,
//!   outcome; it performs what [`shared::delivery::policy`] decides.
//! - [`wiring`]: the cold start: configuration, clients built once, the
//!   runtime loop (`main.rs` only calls it).
//!
//! The ports it is generic over live in `shared` beside their adapters:
//! [`shared::store::StatusStore`] and [`shared::store::ClaimStore`] (Redis),
//! [`shared::queue::Redeliver`] (SQS), [`shared::delivery::Upstream`] (the
//! OnlyFans client), [`shared::limiter::Limiter`] (the Lua token bucket).

pub mod handler;
pub mod process;
pub mod wiring;
