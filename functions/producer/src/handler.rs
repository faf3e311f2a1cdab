//! HTTP in, `shared` calls, HTTP out.
//!
//! [`handle`] routes a request, runs the route's function and turns its
//! `Result` into a response (an [`ApiError`] becomes a problem document), and
//! logs one JSON line per request. The route functions read top to bottom in
//! the order the contract checks things.

use crate::caller;
use crate::error::{ApiError, Check, HealthChecks};
use crate::respond;
use crate::routes::{self, Endpoint, Resource, Routing};
use crate::{App, trace};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, LOCATION};
use http::{Response, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt};
use serde_json::json;
use shared::idempotency::{self, IdempotencyKey, IdempotencyStore};
use shared::intake::{self, IntakeError, MAX_BODY_BYTES};
use shared::limiter::BucketViewer;
use shared::message::{AccountId, MessageId, NewMessage, QueueMessage};
use shared::problem::FieldError;
use shared::queue::{Enqueue, QueueInfo};
use shared::rollout;
use shared::store::{StatusStore, StoreHealth};
use shared::telemetry::Metric;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// The optional header that makes `POST /v1/messages` safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a 202 that replays an earlier answer for the same `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// W3C Trace Context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What the request log line says about one request.
#[derive(Debug, Default)]
struct RequestLog {
    request_id: Option<String>,
    apigw_request_id: Option<String>,
    route: Option<&'static Endpoint>,
    account_id: Option<String>,
    message_id: Option<MessageId>,
    error: Option<String>,
}

impl RequestLog {
    fn new(req: &Request) -> Self {
        Self {
            request_id: req.lambda_context_ref().map(|c| c.request_id.clone()),
            apigw_request_id: match req.request_context_ref() {
                Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
                _ => None,
            },
            ..Self::default()
        }
    }

    fn emit(&self, method: &str, path: &str, status: StatusCode, elapsed: Duration) {
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    request_id = self.request_id.as_deref(),
                    apigw_request_id = self.apigw_request_id.as_deref(),
                    method,
                    path,
                    route = self.route.map(|e| e.resource.template()),
                    status = status.as_u16(),
                    account_id = self.account_id.as_deref(),
                    message_id = self.message_id.map(|m| m.to_string()).as_deref(),
                    duration_ms = elapsed.as_millis() as u64,
                    error = self.error.as_deref(),
                    "request"
                )
            };
        }
        if status.is_server_error() {
            line!(warn);
        } else {
            line!(info);
        }
    }
}

/// The Lambda handler: every request gets an `Ok` response.
pub async fn handle<S, Q, B>(app: &App<S, Q, B>, req: Request) -> Result<Response<Body>, Error>
where
    S: StatusStore + IdempotencyStore + StoreHealth,
    Q: Enqueue + QueueInfo,
    B: BucketViewer,
{
    let started = Instant::now();
    let mut log = RequestLog::new(&req);
    let resp = app.dispatch(&req, &mut log).await;
    log.emit(
        req.method().as_str(),
        raw_path(&req),
        resp.status(),
        started.elapsed(),
    );
    Ok(resp)
}

/// The path as the function saw it (see [`routes::normalize`] for prefixes).
fn raw_path(req: &Request) -> &str {
    match req.raw_http_path() {
        "" => req.uri().path(),
        raw => raw,
    }
}

fn stage(req: &Request) -> Option<&str> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.stage.as_deref(),
        _ => None,
    }
}

/// Checks `Content-Length` (before the body is looked at) and the body itself.
fn check_size(req: &Request) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let actual = req.body().len() as u64;
    let size = declared.unwrap_or(0).max(actual);
    if size > MAX_BODY_BYTES as u64 {
        return Err(ApiError::PayloadTooLarge { size });
    }
    Ok(())
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `Idempotency-Key`, if sent: once, and valid.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, FieldError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(FieldError::new(
            "Idempotency-Key",
            "must be sent at most once",
        ));
    }
    IdempotencyKey::parse(first.as_bytes()).map(Some)
}

/// The body and the `Idempotency-Key`, with every problem of both reported
/// together.
fn parse_intake(req: &Request) -> Result<(NewMessage, Option<IdempotencyKey>), ApiError> {
    let key = idempotency_key(req.headers());
    let key_errors: Vec<FieldError> = key.as_ref().err().cloned().into_iter().collect();
    match (intake::parse_new_message(req.body()), key) {
        (Ok(msg), Ok(key)) => Ok((msg, key)),
        (Ok(_), Err(e)) => Err(ApiError::InvalidFields(vec![e])),
        (Err(IntakeError::Malformed(reason)), _) => Err(ApiError::MalformedJson {
            reason,
            errors: key_errors,
        }),
        (Err(IntakeError::NotAnObject), _) => Err(ApiError::NotAnObject { errors: key_errors }),
        (Err(IntakeError::Fields(mut errors)), _) => {
            errors.extend(key_errors);
            Err(ApiError::InvalidFields(errors))
        }
    }
}

/// The 202 of an accepted message (first time or replayed).
fn accepted(id: MessageId, replayed: bool) -> Result<Response<Body>, ApiError> {
    let mut headers = vec![(LOCATION, format!("/v1/messages/{id}"))];
    if replayed {
        headers.push((IDEMPOTENT_REPLAYED, "true".into()));
    }
    Ok(respond::json(
        StatusCode::ACCEPTED,
        &json!({ "messageId": id, "status": "queued" }),
        &headers,
    )?)
}

impl<S, Q, B> App<S, Q, B>
where
    S: StatusStore + IdempotencyStore + StoreHealth,
    Q: Enqueue + QueueInfo,
    B: BucketViewer,
{
    async fn dispatch(&self, req: &Request, log: &mut RequestLog) -> Response<Body> {
        let (endpoint, id) = match routes::route(req.method(), raw_path(req), stage(req)) {
            Routing::Found(endpoint, id) => (endpoint, id),
            Routing::MethodNotAllowed { allow, .. } => {
                return ApiError::MethodNotAllowed { allow }.into_response();
            }
            Routing::NotFound => return ApiError::RouteNotFound.into_response(),
        };
        log.route = Some(endpoint);
        let result = self.run(endpoint, id, req, log).await;
        let resp = result.unwrap_or_else(|e| {
            log.error = Some(e.to_string());
            e.into_response()
        });
        // The route table is what openapi.yaml is checked against: in tests,
        // a status the table does not declare fails loudly.
        #[cfg(test)]
        assert!(
            endpoint.statuses.contains(&resp.status().as_u16()),
            "{} {} answered {} which routes::ENDPOINTS does not declare",
            endpoint.method,
            endpoint.resource.template(),
            resp.status()
        );
        resp
    }

    /// Runs a matched route. `/health` is the only route without a caller
    /// (`routes::ENDPOINTS` says so too, and a test holds the two together).
    async fn run(
        &self,
        endpoint: &Endpoint,
        id: Option<&str>,
        req: &Request,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, ApiError> {
        if endpoint.resource == Resource::Health {
            return self.health().await;
        }
        let account = self.authenticate(req, log)?;
        match endpoint.resource {
            Resource::Messages => self.post_message(req, &account, log).await,
            Resource::Message => {
                let id = id.unwrap_or_default();
                self.get_message(id, &account, log).await
            }
            Resource::Status => self.status(&account).await,
            Resource::Health => self.health().await,
        }
    }

    fn authenticate(&self, req: &Request, log: &mut RequestLog) -> Result<AccountId, ApiError> {
        let account = caller::authenticate(&self.verifier, self.settings.require_authorizer, req)?;
        log.account_id = Some(account.to_string());
        Ok(account)
    }

    /// `POST /v1/messages`.
    async fn post_message(
        &self,
        req: &Request,
        account: &AccountId,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, ApiError> {
        check_size(req)?;
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let (msg, key) = parse_intake(req)?;
        if !rollout::admits(
            self.settings.enabled,
            self.settings.rollout_percent,
            account,
        ) {
            return Err(ApiError::IntakeDisabled);
        }

        let id = MessageId::new();
        let fingerprint = intake::fingerprint(&msg);
        let priority = msg.priority;
        let traceparent = trace::traceparent(req.headers().get(TRACEPARENT).map(|v| v.as_bytes()));
        let outcome = idempotency::accept_once(
            &self.store,
            account,
            key.as_ref(),
            &fingerprint,
            id,
            self.settings.idempotency,
            || self.store_and_enqueue(account, id, msg, &traceparent),
        )
        .await?;
        log.message_id = Some(outcome.id);
        if !outcome.replayed {
            self.metrics.count(Metric::MessagesQueued, priority);
        }
        accepted(outcome.id, outcome.replayed)
    }

    /// Writes the `queued` record, then sends to SQS. The record comes first
    /// so a consumer that receives the message at once finds it; if the send
    /// fails the record is removed again, so nothing claims a message that
    /// is not on the queue.
    ///
    /// A send that timed out may still have reached SQS. The consumer then
    /// recreates the record from the queue message, so such a message is
    /// delivered and visible, though the client was told 503.
    async fn store_and_enqueue(
        &self,
        account: &AccountId,
        id: MessageId,
        msg: NewMessage,
        traceparent: &str,
    ) -> Result<(), ApiError> {
        let created_at = self.clock.now_utc();
        self.store
            .put_queued(account, &id, msg.priority, created_at)
            .await?;
        let queued = QueueMessage::new(id, account.clone(), msg, created_at);
        if let Err(e) = self.queue.enqueue(&queued, Some(traceparent)).await {
            if let Err(del) = self.store.delete(account, &id).await {
                tracing::warn!(error = %del, message_id = %id, "could not delete the record of a message SQS refused");
            }
            return Err(ApiError::QueueUnavailable(e));
        }
        Ok(())
    }

    /// `GET /v1/messages/{id}`. Records are keyed by account, so another
    /// account's id is simply not found.
    async fn get_message(
        &self,
        raw_id: &str,
        account: &AccountId,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, ApiError> {
        let id = MessageId::parse(raw_id).map_err(|_| ApiError::InvalidMessageId)?;
        log.message_id = Some(id);
        let record = self
            .store
            .get(account, &id)
            .await?
            .ok_or(ApiError::MessageNotFound)?;
        Ok(respond::json(StatusCode::OK, &record, &[])?)
    }

    /// `GET /v1/status`: the queue, the caller's bucket, and whether intake
    /// is open for the caller.
    async fn status(&self, account: &AccountId) -> Result<Response<Body>, ApiError> {
        let (stats, bucket) = tokio::join!(self.queue.stats(), self.buckets.view(account));
        let stats = stats.map_err(ApiError::QueueUnavailable)?;
        let bucket = bucket.map_err(ApiError::LimiterUnavailable)?;
        let backlog = stats.visible + stats.in_flight + stats.delayed;
        let per_second = bucket.per_minute / 60.0;
        // Worst case for one account: the whole backlog is the caller's and
        // drains at the caller's own rate. Other accounts drain in parallel.
        let drain = (per_second > 0.0).then(|| (backlog as f64 / per_second).ceil() as u64);
        let body = json!({
            "queue": {
                "visible": stats.visible,
                "inFlight": stats.in_flight,
                "delayed": stats.delayed,
                "oldestMessageAgeSeconds": stats.oldest_age_secs,
                "dlqDepth": stats.dlq_depth,
            },
            "bucket": {
                "tokens": (bucket.tokens * 1000.0).round() / 1000.0,
                "perMinute": bucket.per_minute,
                "burst": bucket.burst,
                "pausedForSeconds": bucket.paused_for.map_or(0, |d| d.as_secs_f64().ceil() as u64),
            },
            "estimatedDrainSeconds": drain,
            "intakeEnabled": rollout::admits(self.settings.enabled, self.settings.rollout_percent, account),
        });
        Ok(respond::json(StatusCode::OK, &body, &[])?)
    }

    /// `GET /health`: Redis and SQS, checked at once, each with a deadline.
    async fn health(&self) -> Result<Response<Body>, ApiError> {
        let limit = self.settings.health_timeout;
        let (redis, sqs) = tokio::join!(
            timeout(limit, self.store.ping()),
            timeout(limit, self.queue.ping())
        );
        let check = |name: &str, outcome: Result<Result<(), String>, _>| match outcome {
            Ok(Ok(())) => Check::Ok,
            Ok(Err(e)) => {
                tracing::warn!(check = name, error = %e, "health check failed");
                Check::Error
            }
            Err(_) => {
                tracing::warn!(
                    check = name,
                    timeout_ms = limit.as_millis() as u64,
                    "health check timed out"
                );
                Check::Timeout
            }
        };
        let checks = HealthChecks {
            redis: check("redis", redis.map(|r| r.map_err(|e| e.to_string()))),
            sqs: check("sqs", sqs.map(|r| r.map_err(|e| e.to_string()))),
        };
        if !checks.all_ok() {
            return Err(ApiError::Unhealthy(checks));
        }
        Ok(respond::json(
            StatusCode::OK,
            &json!({ "status": "ok", "checks": checks }),
            &[],
        )?)
    }
}
