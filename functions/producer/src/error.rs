//! The HTTP boundary's one error type, and its answers.
//!
//! Every way a request can fail is a variant of [`ApiError`]; its status,
//! problem `type`, text and headers are decided here and nowhere else. The
//! `Display` text is for logs (it may name an infrastructure error); the
//! problem body says what the client can do and never shows an internal
//! error or a request's content.

use crate::caller::Unauthorized;
use crate::respond;
use http::header::{ALLOW, HeaderName, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use lambda_http::Body;
use serde::Serialize;
use shared::idempotency::ProtocolError;
use shared::intake::MAX_BODY_BYTES;
use shared::limiter::LimiterError;
use shared::problem::{self, FieldError, Problem};
use shared::queue::QueueError;
use shared::store::{Status, StoreError};

/// `Retry-After` while Redis or SQS is not answering: long enough for the
/// SDK's and the connection manager's own reconnects, short enough that a
/// client does not give up.
pub const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 5;
/// `Retry-After` while intake is switched off: a flag flip is an operator's
/// act, so polling every second would only add load.
pub const RETRY_AFTER_DISABLED_SECS: u64 = 60;
/// `Retry-After` for a request whose `Idempotency-Key` is still being
/// accepted by another request (that takes milliseconds).
pub const RETRY_AFTER_IN_PROGRESS_SECS: u64 = 1;

/// Outcome of one `/health` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Ok,
    Error,
    Timeout,
}

/// The `checks` object of `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthChecks {
    pub redis: Check,
    pub sqs: Check,
}

impl HealthChecks {
    pub fn all_ok(&self) -> bool {
        self.redis == Check::Ok && self.sqs == Check::Ok
    }

    /// "redis", "sqs" or "redis and sqs".
    fn failed(&self) -> String {
        let failed: Vec<&str> = [("redis", self.redis), ("sqs", self.sqs)]
            .into_iter()
            .filter(|(_, c)| *c != Check::Ok)
            .map(|(n, _)| n)
            .collect();
        failed.join(" and ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] Unauthorized),
    #[error("request body of {size} bytes is over the limit")]
    PayloadTooLarge { size: u64 },
    #[error("Content-Type is not JSON")]
    UnsupportedMediaType,
    /// The body is not JSON; `errors` holds other bad fields (the header).
    #[error("request body is not valid JSON: {reason}")]
    MalformedJson {
        reason: String,
        errors: Vec<FieldError>,
    },
    #[error("request body is not a JSON object")]
    NotAnObject { errors: Vec<FieldError> },
    #[error("{} invalid field(s)", .0.len())]
    InvalidFields(Vec<FieldError>),
    #[error("message id is not a UUID")]
    InvalidMessageId,
    #[error("no such message for this account")]
    MessageNotFound,
    /// `DELETE /v1/messages/{id}` on a message already `sending` or settled.
    #[error("cannot cancel a message that is {}", .0.as_str())]
    NotCancellable(Status),
    #[error("campaign id is not a UUID")]
    InvalidCampaignId,
    #[error("no such campaign for this account")]
    CampaignNotFound,
    /// `POST /v1/campaigns/{id}/recipients` once the campaign is cancelled.
    #[error("the campaign is cancelled")]
    CampaignCancelled,
    #[error("no such route")]
    RouteNotFound,
    /// Authenticated, but the token lacks the scope the route needs.
    #[error("the token lacks the scope {scope}")]
    Forbidden { scope: &'static str },
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
    #[error("Idempotency-Key was used with a different body")]
    IdempotencyConflict,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress,
    #[error("intake is closed for this account")]
    IntakeDisabled,
    #[error("queue unavailable: {0}")]
    QueueUnavailable(#[source] QueueError),
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[source] StoreError),
    #[error("limiter unavailable: {0}")]
    LimiterUnavailable(#[source] LimiterError),
    /// A record in Redis that this code did not write (or a bug).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("unhealthy: {}", .0.failed())]
    Unhealthy(HealthChecks),
}

/// A Redis that does not answer is a 503; a record that cannot be read is
/// a bug or tampering, and retrying will not help: 500.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(what) => {
                ApiError::Internal(format!("corrupt store record: {what}"))
            }
            e @ (StoreError::Redis(_) | StoreError::NotReplicated(_)) => {
                ApiError::StoreUnavailable(e)
            }
        }
    }
}

/// The idempotency protocol's outcomes, for a request whose accept step
/// already answers in HTTP terms.
impl From<ProtocolError<ApiError>> for ApiError {
    fn from(e: ProtocolError<ApiError>) -> Self {
        match e {
            ProtocolError::Conflict => ApiError::IdempotencyConflict,
            ProtocolError::InProgress => ApiError::IdempotencyInProgress,
            ProtocolError::Store(e) => e.into(),
            ProtocolError::Accept(e) => e,
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::Internal(format!("serialising a response: {e}"))
    }
}

/// RFC 6750 allows neither `"` nor `\` in `error_description`.
fn quoted_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '"' || c == '\\' || !c.is_ascii() || c.is_ascii_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

/// "the token has expired" -> "The token has expired."
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MalformedJson { .. }
            | ApiError::NotAnObject { .. }
            | ApiError::InvalidFields(_)
            | ApiError::InvalidMessageId
            | ApiError::InvalidCampaignId => StatusCode::BAD_REQUEST,
            ApiError::MessageNotFound | ApiError::CampaignNotFound | ApiError::RouteNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdempotencyConflict
            | ApiError::IdempotencyInProgress
            | ApiError::NotCancellable(_)
            | ApiError::CampaignCancelled => StatusCode::CONFLICT,
            ApiError::IntakeDisabled
            | ApiError::QueueUnavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::LimiterUnavailable(_)
            | ApiError::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document (without extension members).
    pub fn problem(&self) -> Problem {
        let status = self.status_code().as_u16();
        let p = |slug: &str, title: &str, detail: String| Problem::new(status, slug, title, detail);
        match self {
            ApiError::Unauthorized(u) => p("unauthorized", "Unauthorized", sentence(&u.reason.to_string())),
            ApiError::PayloadTooLarge { size } => p(
                "payload-too-large",
                "Request body too large",
                format!("The request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (256 KiB)."),
            ),
            ApiError::UnsupportedMediaType => p(
                "unsupported-media-type",
                "Unsupported media type",
                "The request body must be JSON: send 'Content-Type: application/json'.".into(),
            ),
            ApiError::MalformedJson { reason, errors } => p(
                "malformed-json",
                "Malformed JSON",
                format!("The request body is not valid JSON: {reason}."),
            )
            .with_errors(errors.clone()),
            ApiError::NotAnObject { errors } => p(
                "invalid-request",
                "Invalid request",
                "The request body must be a JSON object.".into(),
            )
            .with_errors(errors.clone()),
            ApiError::InvalidFields(errors) => p(
                "invalid-request",
                "Invalid request",
                format!("{} field(s) are invalid; see errors.", errors.len()),
            )
            .with_errors(errors.clone()),
            ApiError::InvalidMessageId => p(
                "invalid-message-id",
                "Invalid message id",
                "A message id is a UUID, as returned in messageId by POST /v1/messages.".into(),
            ),
            ApiError::MessageNotFound => p(
                "not-found",
                "Not found",
                "Your account has no message with this id.".into(),
            ),
            ApiError::InvalidCampaignId => p(
                "invalid-campaign-id",
                "Invalid campaign id",
                "A campaign id is a UUID, as returned in campaignId by POST /v1/campaigns.".into(),
            ),
            ApiError::CampaignNotFound => p(
                "not-found",
                "Not found",
                "Your account has no campaign with this id.".into(),
            ),
            ApiError::CampaignCancelled => p(
                "campaign-cancelled",
                "Campaign cancelled",
                "The campaign is cancelled: it takes no more recipients. Create a new campaign.".into(),
            ),
            ApiError::NotCancellable(status) => p(
                "not-cancellable",
                "Too late to cancel",
                format!(
                    "The message is {}: only a scheduled, queued or deferred message can be cancelled.",
                    status.as_str()
                ),
            ),
            ApiError::RouteNotFound => p(
                "not-found",
                "Not found",
                "No such resource. Routes: POST /v1/messages, GET and DELETE /v1/messages/{id}, GET /v1/status, GET /v1/limits, GET|PUT|DELETE /v1/admin/accounts/{accountId}/limits, POST /v1/campaigns, GET and DELETE /v1/campaigns/{id}, POST /v1/campaigns/{id}/recipients, GET /v1/campaigns/{id}/messages, GET /health.".into(),
            ),
            ApiError::Forbidden { scope } => p(
                "forbidden",
                "Forbidden",
                format!("This route needs a token with the scope '{scope}' (the 'scope' claim, space separated)."),
            ),
            ApiError::MethodNotAllowed { allow } => p(
                "method-not-allowed",
                "Method not allowed",
                format!("This resource allows only {allow}."),
            ),
            ApiError::IdempotencyConflict => p(
                "idempotency-conflict",
                "Idempotency-Key reused",
                "This Idempotency-Key was already used with a different request body in the last 24 hours; use a new key for a new message.".into(),
            ),
            ApiError::IdempotencyInProgress => p(
                "idempotency-in-progress",
                "Request in progress",
                "A request with this Idempotency-Key is still in progress; retry after Retry-After seconds to get its answer.".into(),
            ),
            ApiError::IntakeDisabled => p(
                "intake-disabled",
                "Intake disabled",
                "Message intake is currently disabled for this account; nothing was queued. Retry later.".into(),
            ),
            ApiError::QueueUnavailable(_) => p(
                "queue-unavailable",
                "Queue unavailable",
                "The message queue did not accept the message; nothing was queued. Retry later (reusing the same Idempotency-Key is safe).".into(),
            ),
            ApiError::StoreUnavailable(_) | ApiError::LimiterUnavailable(_) => p(
                "store-unavailable",
                "Store unavailable",
                "The message store is not answering; nothing was changed. Retry later.".into(),
            ),
            ApiError::Internal(_) => p(
                "internal",
                "Internal error",
                "The request could not be completed because of an internal error; it has been logged.".into(),
            ),
            ApiError::Unhealthy(checks) => p(
                "unhealthy",
                "Unhealthy",
                format!("Not answering: {}.", checks.failed()),
            ),
        }
    }

    fn headers(&self) -> Vec<(HeaderName, String)> {
        let retry = |secs: u64| vec![(RETRY_AFTER, secs.to_string())];
        match self {
            ApiError::Unauthorized(u) if u.token_presented => vec![(
                WWW_AUTHENTICATE,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    quoted_safe(&u.reason.to_string())
                ),
            )],
            ApiError::Unauthorized(_) => vec![(WWW_AUTHENTICATE, "Bearer".into())],
            // RFC 6750 §3.1.
            ApiError::Forbidden { scope } => vec![(
                WWW_AUTHENTICATE,
                format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
            )],
            ApiError::MethodNotAllowed { allow } => vec![(ALLOW, (*allow).to_owned())],
            ApiError::IdempotencyInProgress => retry(RETRY_AFTER_IN_PROGRESS_SECS),
            ApiError::IntakeDisabled => retry(RETRY_AFTER_DISABLED_SECS),
            ApiError::QueueUnavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::LimiterUnavailable(_)
            | ApiError::Unhealthy(_) => retry(RETRY_AFTER_UNAVAILABLE_SECS),
            _ => Vec::new(),
        }
    }

    /// The `application/problem+json` response.
    pub fn into_response(self) -> Response<Body> {
        let problem = self.problem();
        let body = match (&self, serde_json::to_value(&problem)) {
            // /health's 503 also carries the `checks` object of its 200.
            (ApiError::Unhealthy(checks), Ok(serde_json::Value::Object(mut map))) => {
                map.insert("checks".into(), serde_json::json!(checks));
                serde_json::Value::Object(map).to_string()
            }
            _ => problem.to_json(),
        };
        respond::text(
            self.status_code(),
            problem::CONTENT_TYPE,
            body,
            &self.headers(),
        )
    }
}
