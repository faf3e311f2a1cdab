//! Test control endpoints (`/__requests`, `/__stats`, `/__reset`, `/__config`,
//! `/__faults`, `/__accounts/{accountId}/limit`), `/health` and the JSON
//! fallbacks.

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, Query, State,
        rejection::{BytesRejection, QueryRejection},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use crate::{
    api::error_response,
    config::LimitUpdate,
    faults::{FaultRule, FaultSpec},
    state::{AccountLimit, StubState},
};

/// Query of `GET /__requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestsQuery {
    /// Only this account's records.
    account: Option<String>,
    /// Only records with a greater `seq`.
    #[serde(alias = "sinceSeq")]
    since_seq: Option<u64>,
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "invalid_body", Some(message))
}

/// Parses a JSON body; an empty (or all-whitespace) body is `None`. The error
/// is the message for a 400 answer.
fn optional_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<T>, String> {
    let bytes = body.map_err(|e| e.body_text())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| e.to_string())
}

pub(crate) async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub(crate) async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", Some("no such route"))
}

pub(crate) async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        Some("this route does not take that method"),
    )
}

pub(crate) async fn requests(
    State(state): State<StubState>,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                Some(&e.body_text()),
            );
        }
    };
    let list = state
        .requests(query.account.as_deref(), query.since_seq.unwrap_or(0))
        .await;
    Json(json!({ "requests": list })).into_response()
}

pub(crate) async fn stats(State(state): State<StubState>) -> Response {
    Json(state.stats().await).into_response()
}

pub(crate) async fn reset(
    State(state): State<StubState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let update = match optional_json::<LimitUpdate>(body) {
        Ok(u) => u,
        Err(message) => return bad_request(&message),
    };
    let mut inner = state.inner.lock().await;
    if let Some(update) = update
        && let Err(e) = inner.config.apply(&update)
    {
        return bad_request(&e.to_string());
    }
    inner.reset();
    tracing::info!(config = ?inner.config.view(), "reset");
    Json(json!({ "reset": true, "config": inner.config.view() })).into_response()
}

pub(crate) async fn get_config(State(state): State<StubState>) -> Response {
    let inner = state.inner.lock().await;
    Json(json!({ "config": inner.config.view() })).into_response()
}

pub(crate) async fn put_config(
    State(state): State<StubState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let update = match optional_json::<LimitUpdate>(body) {
        Ok(Some(u)) => u,
        Ok(None) => return bad_request("a JSON body is required"),
        Err(message) => return bad_request(&message),
    };
    let mut inner = state.inner.lock().await;
    if let Err(e) = inner.config.apply(&update) {
        return bad_request(&e.to_string());
    }
    tracing::info!(config = ?inner.config.view(), "config changed");
    Json(json!({ "config": inner.config.view() })).into_response()
}

pub(crate) async fn add_fault(
    State(state): State<StubState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let spec = match optional_json::<FaultSpec>(body) {
        Ok(Some(s)) => s,
        Ok(None) => return bad_request("a JSON body is required"),
        Err(message) => return bad_request(&message),
    };
    if let Err(message) = spec.validate() {
        return bad_request(&message);
    }
    let mut inner = state.inner.lock().await;
    let id = inner.next_fault_id;
    inner.next_fault_id += 1;
    let rule = FaultRule::new(id, spec);
    tracing::info!(
        id,
        kind = rule.kind.as_str(),
        account = rule.account.as_deref(),
        "fault added"
    );
    inner.faults.push(rule.clone());
    (StatusCode::CREATED, Json(rule)).into_response()
}

pub(crate) async fn list_faults(State(state): State<StubState>) -> Response {
    let inner = state.inner.lock().await;
    Json(json!({ "faults": inner.faults })).into_response()
}

pub(crate) async fn clear_faults(State(state): State<StubState>) -> Response {
    let mut inner = state.inner.lock().await;
    let cleared = inner.faults.len();
    inner.faults.clear();
    tracing::info!(cleared, "faults cleared");
    Json(json!({ "cleared": cleared })).into_response()
}

/// `GET /__accounts/{accountId}/limit`: the account's own limit, or `null`.
pub(crate) async fn get_account_limit(
    State(state): State<StubState>,
    Path(account): Path<String>,
) -> Response {
    let inner = state.inner.lock().await;
    let own = inner.account_limits.get(&account).copied();
    Json(json!({ "accountId": account, "limit": own })).into_response()
}

/// `PUT /__accounts/{accountId}/limit` `{"ratePerMinute", "burst"}`: judge
/// this account's calls against its own limit (the producer's
/// `PUT /v1/admin/accounts/{accountId}/limits`, mirrored by the stack tests).
pub(crate) async fn put_account_limit(
    State(state): State<StubState>,
    Path(account): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let own = match optional_json::<AccountLimit>(body) {
        Ok(Some(l)) => l,
        Ok(None) => return bad_request("a JSON body is required"),
        Err(message) => return bad_request(&message),
    };
    if !own.rate_per_minute.is_finite() || own.rate_per_minute <= 0.0 || own.burst == 0 {
        return bad_request("ratePerMinute must be a finite number > 0 and burst >= 1");
    }
    let mut inner = state.inner.lock().await;
    inner.account_limits.insert(account.clone(), own);
    tracing::info!(account = %account, rate_per_minute = own.rate_per_minute, burst = own.burst, "account limit set");
    Json(json!({ "accountId": account, "limit": own })).into_response()
}

/// `DELETE /__accounts/{accountId}/limit`: back to the global limit.
pub(crate) async fn delete_account_limit(
    State(state): State<StubState>,
    Path(account): Path<String>,
) -> Response {
    let mut inner = state.inner.lock().await;
    let removed = inner.account_limits.remove(&account).is_some();
    Json(json!({ "accountId": account, "removed": removed })).into_response()
}
