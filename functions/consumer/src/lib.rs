//! The consumer Lambda: SQS-triggered delivery to the OnlyFans API under the
//! per-account rate limit.
//!
//! # Layout
//! - [`handler`]: the SQS event to per-record work and back to a batch response.
//! - [`process`]: one record's path: poison check, claim, token, call, outcome.
//! - [`ports`]: the store, queue and upstream traits with their real adapters.
//! - `main.rs`: wiring at cold start.

pub mod handler;
pub mod ports;
pub mod process;
