//! `POST /v1/accounts/{accountId}/chats/{recipientId}/messages`, the route the
//! consumer calls.

use std::time::Duration;

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{ConnectInfo, FromRequestParts, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    conn::ConnCtx,
    faults::{self, FaultKind, FaultRule},
    state::{Outcome, StubState, Ticket},
};

/// Largest request body read; bigger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// At most this many `mediaUrls` (the producer's own limit).
pub const MAX_MEDIA_URLS: usize = 10;

/// The only accepted body shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// The message; must not be empty.
    text: String,
    /// Attachments; optional, at most [`MAX_MEDIA_URLS`] https URLs.
    #[serde(default, rename = "mediaUrls")]
    media_urls: Vec<String>,
}

/// An error answer `{"error": code, "message": ...}`.
pub(crate) fn error_response(status: StatusCode, code: &str, message: Option<&str>) -> Response {
    let body = match message {
        Some(m) => json!({ "error": code, "message": m }),
        None => json!({ "error": code }),
    };
    (status, Json(body)).into_response()
}

fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Path parameters, falling back to the raw segments when they do not decode
/// (so that even such a call is recorded).
async fn path_params(parts: &mut Parts) -> (String, String) {
    if let Ok(Path((account, recipient))) =
        Path::<(String, String)>::from_request_parts(parts, &()).await
    {
        return (account, recipient);
    }
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    // ["", "v1", "accounts", account, "chats", recipient, "messages"]
    let get = |i: usize| segments.get(i).map(|s| (*s).to_owned()).unwrap_or_default();
    (get(3), get(5))
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(given.as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body, judged strictly, plus what the record keeps about it (the
/// lengths are taken leniently, so they are filled in even for a bad body).
struct ParsedBody {
    /// The strictly validated body, or why it is rejected.
    valid: Result<SendBody, String>,
    /// Characters in `text`, if it is a string.
    text_len: usize,
    /// Entries in `mediaUrls`, if it is an array.
    media_urls: usize,
}

fn parse_body(bytes: &[u8]) -> ParsedBody {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return ParsedBody {
                valid: Err(format!("body is not valid JSON: {e}")),
                text_len: 0,
                media_urls: 0,
            };
        }
    };
    let text_len = value
        .get("text")
        .and_then(Value::as_str)
        .map_or(0, |t| t.chars().count());
    let media_urls = value
        .get("mediaUrls")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let valid = if value.is_object() {
        serde_json::from_value::<SendBody>(value)
            .map_err(|e| e.to_string())
            .and_then(check_body)
    } else {
        Err("body must be a JSON object".to_owned())
    };
    ParsedBody {
        valid,
        text_len,
        media_urls,
    }
}

fn check_body(body: SendBody) -> Result<SendBody, String> {
    if body.text.is_empty() {
        return Err("text must be a non-empty string".to_owned());
    }
    if body.media_urls.len() > MAX_MEDIA_URLS {
        return Err(format!(
            "mediaUrls holds {} URLs, at most {MAX_MEDIA_URLS} are allowed",
            body.media_urls.len()
        ));
    }
    if let Some(i) = body
        .media_urls
        .iter()
        .position(|u| !u.starts_with("https://") || u.len() <= "https://".len())
    {
        return Err(format!("mediaUrls[{i}] must be an https URL"));
    }
    Ok(body)
}

/// Machine-readable code for an injected status.
fn status_code_name(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "bad_request".to_owned(),
        401 => "unauthorized".to_owned(),
        403 => "forbidden".to_owned(),
        404 => "not_found".to_owned(),
        408 => "request_timeout".to_owned(),
        409 => "conflict".to_owned(),
        422 => "unprocessable_entity".to_owned(),
        429 => "rate_limited".to_owned(),
        500 => "internal_error".to_owned(),
        502 => "bad_gateway".to_owned(),
        503 => "service_unavailable".to_owned(),
        504 => "gateway_timeout".to_owned(),
        _ => status.canonical_reason().map_or_else(
            || format!("http_{}", status.as_u16()),
            |reason| {
                reason
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect()
            },
        ),
    }
}

fn fault_response(rule: &FaultRule) -> Response {
    let status = rule
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = rule.message.as_deref().unwrap_or("injected fault");
    let response = error_response(status, &status_code_name(status), Some(message));
    match rule.retry_after {
        Some(secs) => with_retry_after(response, secs),
        None => response,
    }
}

/// A response hyper cannot finish: its body fails before yielding a byte.
/// Only used when the router runs without [`crate::serve`] (no kill switch).
fn aborting_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected reset fault",
        ))
    });
    Response::new(Body::from_stream(stream))
}

/// The message route. See the crate documentation for the order of checks.
pub(crate) async fn send_message(State(state): State<StubState>, request: Request) -> Response {
    let received_at_us = state.clock.now_us();
    let received_at_wall_us = state.clock.wall_us();
    let (mut parts, body) = request.into_parts();
    let (account_id, recipient_id) = path_params(&mut parts).await;
    let key = idempotency_key(&parts.headers);
    let ticket = state
        .admit(
            received_at_us,
            received_at_wall_us,
            &account_id,
            &recipient_id,
            key.clone(),
        )
        .await;

    let too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES as u64);
    let bytes = if too_large {
        None
    } else {
        axum::body::to_bytes(body, MAX_BODY_BYTES).await.ok()
    };
    let parsed = bytes.as_deref().map(parse_body);

    let mut outcome = Outcome {
        text_len: parsed.as_ref().map_or(0, |p| p.text_len),
        media_urls: parsed.as_ref().map_or(0, |p| p.media_urls),
        ..Outcome::default()
    };

    let response = respond(
        &state,
        &parts,
        &ticket,
        &account_id,
        &recipient_id,
        key,
        parsed.map(|p| p.valid),
        too_large,
        &mut outcome,
    )
    .await;

    tracing::info!(
        seq = ticket.seq,
        account_id = %account_id,
        recipient_id = %recipient_id,
        status = outcome.status,
        violation = ticket.violation,
        duplicate = outcome.duplicate,
        fault = outcome.fault.as_ref().map(|(k, _)| k.as_str()),
        text_len = outcome.text_len,
        media_urls = outcome.media_urls,
        "message call"
    );
    state.inner.lock().await.finish(&ticket, outcome);
    response
}

/// Applies the checks in order and fills in `outcome.status`, `duplicate` and `fault`.
#[allow(clippy::too_many_arguments)]
async fn respond(
    state: &StubState,
    parts: &Parts,
    ticket: &Ticket,
    account_id: &str,
    recipient_id: &str,
    key: Option<String>,
    body: Option<Result<SendBody, String>>,
    too_large: bool,
    outcome: &mut Outcome,
) -> Response {
    // 1. Rate limit.
    if ticket.violation {
        outcome.status = 429;
        return with_retry_after(
            error_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            ticket.retry_after,
        );
    }
    // 2. Auth, idempotency key, body.
    let token = state.inner.lock().await.config.api_token.clone();
    if !authorized(&parts.headers, &token) {
        outcome.status = 401;
        return error_response(StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    let Some(key) = key else {
        outcome.status = 400;
        return error_response(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            Some("the Idempotency-Key header is required"),
        );
    };
    let _validated: SendBody = match body {
        Some(Ok(body)) => body,
        Some(Err(message)) => {
            outcome.status = 400;
            return error_response(StatusCode::BAD_REQUEST, "invalid_body", Some(&message));
        }
        None if too_large => {
            outcome.status = 413;
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                Some(&format!("the body must be at most {MAX_BODY_BYTES} bytes")),
            );
        }
        None => {
            outcome.status = 400;
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                Some("the body could not be read"),
            );
        }
    };

    // 3. Injected faults.
    let rule = {
        let mut inner = state.inner.lock().await;
        if inner.epoch == ticket.epoch {
            faults::take_matching(&mut inner.faults, account_id)
        } else {
            None
        }
    };
    if let Some(rule) = rule {
        outcome.fault = Some((rule.kind.as_str().to_owned(), rule.id));
        match rule.kind {
            FaultKind::Status => {
                let response = fault_response(&rule);
                outcome.status = response.status().as_u16();
                return response;
            }
            FaultKind::Reset => {
                outcome.status = 0;
                return match parts.extensions.get::<ConnectInfo<ConnCtx>>() {
                    Some(ConnectInfo(ctx)) => {
                        ctx.switch.kill();
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                    None => aborting_response(),
                };
            }
            FaultKind::Slow => {
                let delay = rule.delay_ms.unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
    }

    // 4. Idempotency, 5. delivery: one critical section, so two concurrent
    // calls with the same key cannot both deliver.
    let mut inner = state.inner.lock().await;
    let slot = (account_id.to_owned(), key);
    if let Some(previous) = inner.delivered.get(&slot) {
        let mut response = (StatusCode::OK, Json(previous.clone())).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        outcome.status = 200;
        outcome.duplicate = true;
        return response;
    }
    let created_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
    let answer = json!({
        "id": format!("ofm_{}", uuid::Uuid::new_v4()),
        "accountId": account_id,
        "recipientId": recipient_id,
        "createdAt": created_at,
    });
    if inner.epoch == ticket.epoch {
        inner.delivered.insert(slot, answer.clone());
    }
    outcome.status = 200;
    (StatusCode::OK, Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_validation() {
        assert!(parse_body(br#"{"text":"hi"}"#).valid.is_ok());
        assert!(parse_body(br#"{"text":"hi","mediaUrls":[]}"#).valid.is_ok());
        let p = parse_body(br#"{"text":"h\u00e9llo","mediaUrls":["https://a/b","https://c"]}"#);
        assert!(p.valid.is_ok());
        assert_eq!((p.text_len, p.media_urls), (5, 2));
        for bad in [
            &br#"{"text":""}"#[..],
            br#"{"text":1}"#,
            br#"{}"#,
            br#"[]"#,
            br#"not json"#,
            br#"{"text":"hi","extra":1}"#,
            br#"{"text":"hi","mediaUrls":null}"#,
            br#"{"text":"hi","mediaUrls":["http://a"]}"#,
            br#"{"text":"hi","mediaUrls":[1]}"#,
        ] {
            assert!(
                parse_body(bad).valid.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Lengths are still recorded for a body that is rejected.
        let p = parse_body(br#"{"text":"abc","extra":true}"#);
        assert!(p.valid.is_err());
        assert_eq!(p.text_len, 3);
    }

    #[test]
    fn bearer_token_check() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "tok"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        assert!(authorized(&h, "tok"));
        assert!(!authorized(&h, "to"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer tok"),
        );
        assert!(authorized(&h, "tok"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic tok"));
        assert!(!authorized(&h, "tok"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok "),
        );
        assert!(!authorized(&h, "tok"));
    }

    #[test]
    fn status_names() {
        assert_eq!(
            status_code_name(StatusCode::SERVICE_UNAVAILABLE),
            "service_unavailable"
        );
        assert_eq!(status_code_name(StatusCode::IM_A_TEAPOT), "i_m_a_teapot");
        assert_eq!(
            status_code_name(StatusCode::from_u16(599).unwrap_or(StatusCode::OK)),
            "http_599"
        );
    }
}
