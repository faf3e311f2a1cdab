//! A strict local stand-in for the OnlyFans chat-message API, used as a
//! **test instrument** by the integration tests, the local dev stack and the
//! benchmarks. Dev-only: it is never deployed.
//!
//! It answers `POST /v1/accounts/{accountId}/chats/{recipientId}/messages`
//! the way the consumer expects the real API to (see `CONTRACT.md`, "OnlyFans
//! API, as the consumer calls it"), and it *records every call*, so that a
//! test can afterwards prove the product's delivery guarantees:
//!
//! * **No rate-limit violation.** Per account, never more than
//!   `burst + rate_per_minute × t / 60` calls in any interval of `t` seconds.
//!   The stub judges each arrival exactly, against the account's whole
//!   arrival history since the last reset, over *every* window ending at it
//!   (see [`limit`]), with a small tolerance for jitter. It is strict on
//!   purpose: a sliding one-minute counter or a lenient bucket would let a
//!   limiter that drifts slightly fast pass, and the product's main promise
//!   would go untested. A violating call is answered 429 and counted.
//!   An account may have a limit of its own (`PUT /__accounts/{a}/limit`,
//!   as the producer's admin route gives one in the product); its calls are
//!   then judged against it.
//! * **No duplicate.** A call whose `Idempotency-Key` was already answered 2xx
//!   for that account is replayed (200, `Idempotent-Replayed: true`) and
//!   counted as a duplicate: the product sent a message twice.
//! * **No loss.** `accepted` counts each message delivered once.
//!
//! Tests can also inject upstream faults (a status, a slow answer, a dropped
//! connection), per account and for a limited number of calls, to exercise
//! retries, `Retry-After` handling and the dead-letter path.
//!
//! # Order of checks on the message route
//!
//! Every call is recorded (arrival time taken at the start of the handler, in
//! microseconds since the Unix epoch from a monotonic-anchored clock) and
//! counts as an arrival for its account, whatever it is answered.
//!
//! 1. Rate limit: a violation is answered `429 {"error":"rate_limited"}` with
//!    `Retry-After` (whole seconds until one more call would conform).
//! 2. `Authorization: Bearer <token>` missing or wrong: `401 {"error":"unauthorized"}`;
//!    no `Idempotency-Key`: `400 {"error":"missing_idempotency_key",...}`; body not
//!    exactly `{"text": non-empty string, "mediaUrls"?: [https URL, ≤ 10]}`:
//!    `400 {"error":"invalid_body","message":...}`; body over 1 MiB: 413.
//! 3. The first matching fault rule, if any, is applied.
//! 4. A key already answered 2xx: the same 200 body again, `Idempotent-Replayed: true`,
//!    recorded as a duplicate.
//! 5. Otherwise `200 {"id":"ofm_<uuid>","accountId","recipientId","createdAt"}`.
//!
//! # Layout
//!
//! * [`limit`]: the violation arithmetic, pure functions over arrival times (unit-tested).
//! * [`config`]: [`StubConfig`] and its environment variables, run-time updates.
//! * [`faults`]: fault rules and their matching.
//! * [`state`]: shared state, request records, stats, the monotonic clock.
//! * `api`: the message route.
//! * `control`: `/__requests`, `/__stats`, `/__reset`, `/__config`, `/__faults`, `/health`.
//! * [`conn`]: a listener whose connections a handler can drop (the `reset` fault).
//! * `src/main.rs`: the `onlyfans-stub` binary (env config, JSON logs, SIGINT/SIGTERM).
//! * `tests/`: integration tests over real HTTP on `127.0.0.1:0`.
//!
//! # Embedding
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(onlyfans_stub::serve(
//!     listener,
//!     onlyfans_stub::StubConfig::default(),
//!     async move {
//!         let _ = stopped.await;
//!     },
//! ));
//! // ... call http://{addr} ...
//! # let _ = (addr, stop, server);
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod conn;
pub mod faults;
pub mod limit;
pub mod state;

mod api;
mod control;

use std::future::Future;

use axum::{
    Router,
    routing::{get, post},
};
use tokio::net::TcpListener;

pub use crate::{
    api::{MAX_BODY_BYTES, MAX_MEDIA_URLS},
    config::{ConfigError, LimitUpdate, LimitView, StubConfig},
    conn::{ConnCtx, KillableListener},
    faults::{FaultKind, FaultRule, FaultSpec},
    limit::RateLimit,
    state::{AccountLimit, Counts, RequestRecord, Stats, StubState},
};

/// The message route's path, in axum syntax.
pub const MESSAGES_PATH: &str = "/v1/accounts/{accountId}/chats/{recipientId}/messages";

/// All routes over `state`. For the `reset` fault to drop connections, serve
/// it with [`KillableListener`] and `into_make_service_with_connect_info::<ConnCtx>()`
/// (as [`serve`] does); otherwise a reset fault aborts the response body,
/// which hyper turns into a closed connection as well.
pub fn router(state: StubState) -> Router {
    Router::new()
        .route(MESSAGES_PATH, post(api::send_message))
        .route("/health", get(control::health))
        .route("/__requests", get(control::requests))
        .route("/__stats", get(control::stats))
        .route("/__reset", post(control::reset))
        .route(
            "/__config",
            get(control::get_config).put(control::put_config),
        )
        .route(
            "/__accounts/{accountId}/limit",
            get(control::get_account_limit)
                .put(control::put_account_limit)
                .delete(control::delete_account_limit),
        )
        .route(
            "/__faults",
            get(control::list_faults)
                .post(control::add_fault)
                .delete(control::clear_faults),
        )
        .fallback(control::not_found)
        .method_not_allowed_fallback(control::method_not_allowed)
        .with_state(state)
}

/// Serves the stub on `listener` with a fresh state until `shutdown`
/// completes, then waits for in-flight calls to finish.
///
/// # Errors
/// Only what `axum::serve` reports (in practice none).
pub async fn serve(
    listener: TcpListener,
    config: StubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_state(listener, StubState::new(config), shutdown).await
}

/// Like [`serve`] with a state the caller keeps a handle to.
///
/// # Errors
/// Only what `axum::serve` reports (in practice none).
pub async fn serve_with_state(
    listener: TcpListener,
    state: StubState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<ConnCtx>();
    axum::serve(KillableListener::new(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}
