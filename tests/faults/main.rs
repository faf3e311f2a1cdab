//! Fault injection: each case posts messages, injects one fault into the
//! running stack, lets it settle, and checks that every accepted message
//! reached the OnlyFans stub exactly once or is `failed`/`dead` with a
//! reason, with no limit violation (see `harness::settle`).
//!
//! These tests stop Redis, pause the SQS server and kill the consumer, so
//! they run only against the fault stack, one at a time:
//! `scripts/faults.sh test` (called by `make test` after the main suite).
//! Each reports what it saw on stderr (`[faults] ...`).

mod breaker;
mod consumer_crash;
mod duplicate_delivery;
mod harness;
mod redis_restart;
mod sqs_outage;
mod upstream;
