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
use shared::auth::{ADMIN_SCOPE, Caller};
use shared::campaign::{
    AddOutcome, CampaignId, CampaignRecord, CampaignSpec, CampaignStore, Pace, PageQuery, Slot,
    distinct,
};
use shared::idempotency::{self, IdempotencyKey, IdempotencyStore};
use shared::intake::{self, IntakeError, MAX_BODY_BYTES};
use shared::limiter::{AccountLimits, BucketViewer, LimitView};
use shared::message::{AccountId, MessageId, NewMessage, QueueMessage, RecipientId};
use shared::problem::FieldError;
use shared::queue::{Enqueue, QueueInfo};
use shared::rollout;
use shared::store::{CancelOutcome, NewRecord, StatusStore, StoreHealth};
use shared::telemetry::Metric;
use std::time::Duration;
use time::OffsetDateTime;
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
    S: StatusStore + IdempotencyStore + StoreHealth + CampaignStore,
    Q: Enqueue + QueueInfo,
    B: BucketViewer + AccountLimits,
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
/// together; `now` bounds `sendAt`.
fn parse_intake(
    req: &Request,
    now: OffsetDateTime,
) -> Result<(NewMessage, Option<IdempotencyKey>), ApiError> {
    let key = idempotency_key(req.headers());
    let key_errors: Vec<FieldError> = key.as_ref().err().cloned().into_iter().collect();
    match (intake::parse_new_message_at(req.body(), now), key) {
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

/// A limit as the limits routes show it (`accountId` on the admin routes).
/// Rates and bursts are whole numbers (configuration and the admin API
/// accept nothing else).
fn limit_body(account: Option<&AccountId>, view: LimitView) -> serde_json::Value {
    let mut body = json!({
        "perMinute": view.rate.per_minute.round() as u64,
        "burst": view.rate.burst.round() as u64,
        "source": view.source.as_str(),
    });
    if let Some(a) = account {
        body["accountId"] = json!(a.as_str());
    }
    body
}

/// Checks size and media type, then reads a body with `parse`, reporting
/// the `Idempotency-Key`'s problem together with the body's.
fn parse_body<T>(
    req: &Request,
    parse: impl FnOnce(&[u8]) -> Result<T, IntakeError>,
) -> Result<(T, Option<IdempotencyKey>), ApiError> {
    check_size(req)?;
    if !is_json(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let key = idempotency_key(req.headers());
    let key_errors: Vec<FieldError> = key.as_ref().err().cloned().into_iter().collect();
    match (parse(req.body()), key) {
        (Ok(v), Ok(key)) => Ok((v, key)),
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

/// What one add of recipients did: `accepted` messages stored (new, or
/// completed from an earlier failed request), `duplicates` created nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Added {
    accepted: u64,
    duplicates: u64,
}

/// The 202 of a campaign request.
fn campaign_accepted(
    id: CampaignId,
    scheduled: bool,
    added: Added,
    replayed: bool,
) -> Result<Response<Body>, ApiError> {
    let mut headers = vec![(LOCATION, format!("/v1/campaigns/{id}"))];
    if replayed {
        headers.push((IDEMPOTENT_REPLAYED, "true".into()));
    }
    let status = if scheduled { "scheduled" } else { "queued" };
    Ok(respond::json(
        StatusCode::ACCEPTED,
        &json!({
            "campaignId": id,
            "status": status,
            "accepted": added.accepted,
            "duplicates": added.duplicates,
        }),
        &headers,
    )?)
}

/// The 202 of an accepted message (first time or replayed): `scheduled`
/// while its `sendAt` is ahead, else `queued`.
fn accepted(id: MessageId, scheduled: bool, replayed: bool) -> Result<Response<Body>, ApiError> {
    let mut headers = vec![(LOCATION, format!("/v1/messages/{id}"))];
    if replayed {
        headers.push((IDEMPOTENT_REPLAYED, "true".into()));
    }
    let status = if scheduled { "scheduled" } else { "queued" };
    Ok(respond::json(
        StatusCode::ACCEPTED,
        &json!({ "messageId": id, "status": status }),
        &headers,
    )?)
}

impl<S, Q, B> App<S, Q, B>
where
    S: StatusStore + IdempotencyStore + StoreHealth + CampaignStore,
    Q: Enqueue + QueueInfo,
    B: BucketViewer + AccountLimits,
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
        let caller = self.authenticate(req, log)?;
        let account = &caller.account;
        match endpoint.resource {
            Resource::Messages => self.post_message(req, account, log).await,
            Resource::Message if endpoint.method == "DELETE" => {
                let id = id.unwrap_or_default();
                self.cancel_message(id, account, log).await
            }
            Resource::Message => {
                let id = id.unwrap_or_default();
                self.get_message(id, account, log).await
            }
            Resource::Status => self.status(account).await,
            Resource::Health => self.health().await,
            Resource::Limits => self.own_limits(account).await,
            Resource::AccountLimits => {
                self.account_limits(endpoint.method, id.unwrap_or_default(), &caller, req)
                    .await
            }
            Resource::Campaigns => self.post_campaign(req, account).await,
            Resource::CampaignRecipients => {
                self.add_recipients(id.unwrap_or_default(), req, account)
                    .await
            }
            Resource::Campaign if endpoint.method == "DELETE" => {
                self.cancel_campaign(id.unwrap_or_default(), account).await
            }
            Resource::Campaign => self.get_campaign(id.unwrap_or_default(), account).await,
            Resource::CampaignMessages => {
                self.campaign_messages(id.unwrap_or_default(), req, account)
                    .await
            }
        }
    }

    fn authenticate(&self, req: &Request, log: &mut RequestLog) -> Result<Caller, ApiError> {
        let caller = caller::authenticate(&self.verifier, self.settings.require_authorizer, req)?;
        log.account_id = Some(caller.account.to_string());
        Ok(caller)
    }

    /// `GET /v1/limits`: the limit in force for the caller.
    async fn own_limits(&self, account: &AccountId) -> Result<Response<Body>, ApiError> {
        let view = self
            .buckets
            .limit(account)
            .await
            .map_err(ApiError::LimiterUnavailable)?;
        Ok(respond::json(StatusCode::OK, &limit_body(None, view), &[])?)
    }

    /// `GET|PUT|DELETE /v1/admin/accounts/{accountId}/limits`: scope
    /// first (403), then the account id and the body, every bad field
    /// listed together (400). Each answer is the limit now in force.
    async fn account_limits(
        &self,
        method: &str,
        raw_account: &str,
        caller: &Caller,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        if !caller.has_scope(ADMIN_SCOPE) {
            return Err(ApiError::Forbidden { scope: ADMIN_SCOPE });
        }
        let target = AccountId::parse(raw_account)
            .map_err(|e| FieldError::new("accountId", format!("not a valid account id: {}", e.0)));
        let unavailable = ApiError::LimiterUnavailable;
        match method {
            "PUT" => {
                check_size(req)?;
                if !is_json(req.headers()) {
                    return Err(ApiError::UnsupportedMediaType);
                }
                let id_errors: Vec<FieldError> =
                    target.as_ref().err().cloned().into_iter().collect();
                let limit = match intake::parse_account_limit(req.body()) {
                    Ok(limit) => limit,
                    Err(IntakeError::Malformed(reason)) => {
                        return Err(ApiError::MalformedJson {
                            reason,
                            errors: id_errors,
                        });
                    }
                    Err(IntakeError::NotAnObject) => {
                        return Err(ApiError::NotAnObject { errors: id_errors });
                    }
                    Err(IntakeError::Fields(mut errors)) => {
                        errors.splice(0..0, id_errors);
                        return Err(ApiError::InvalidFields(errors));
                    }
                };
                let target = target.map_err(|e| ApiError::InvalidFields(vec![e]))?;
                self.buckets
                    .set_limit(&target, limit)
                    .await
                    .map_err(unavailable)?;
                tracing::info!(
                    admin = %caller.account,
                    target_account = %target,
                    per_minute = limit.per_minute(),
                    burst = limit.burst(),
                    "account limit set"
                );
                let view = self.buckets.limit(&target).await.map_err(unavailable)?;
                Ok(respond::json(
                    StatusCode::OK,
                    &limit_body(Some(&target), view),
                    &[],
                )?)
            }
            "DELETE" => {
                let target = target.map_err(|e| ApiError::InvalidFields(vec![e]))?;
                let had = self
                    .buckets
                    .clear_limit(&target)
                    .await
                    .map_err(unavailable)?;
                tracing::info!(
                    admin = %caller.account,
                    target_account = %target,
                    had_own_limit = had,
                    "account limit cleared"
                );
                let view = self.buckets.limit(&target).await.map_err(unavailable)?;
                Ok(respond::json(
                    StatusCode::OK,
                    &limit_body(Some(&target), view),
                    &[],
                )?)
            }
            _ => {
                let target = target.map_err(|e| ApiError::InvalidFields(vec![e]))?;
                let view = self.buckets.limit(&target).await.map_err(unavailable)?;
                Ok(respond::json(
                    StatusCode::OK,
                    &limit_body(Some(&target), view),
                    &[],
                )?)
            }
        }
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
        let now = self.clock.now_utc();
        let (msg, key) = parse_intake(req, now)?;
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
        let scheduled = msg.send_at.is_some_and(|t| t > now);
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
        accepted(outcome.id, scheduled, outcome.replayed)
    }

    /// Writes the `queued` (or `scheduled`) record, then sends to SQS. The record comes first
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
        let record = NewRecord {
            priority: msg.priority,
            created_at,
            recipient_id: msg.recipient_id.as_str().to_owned(),
            send_at: msg.send_at,
        };
        self.store.put_new(account, &id, &record).await?;
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
        self.message_view(account, &id).await
    }

    /// 200 with the message's view, or 404.
    async fn message_view(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Response<Body>, ApiError> {
        let record = self
            .store
            .get(account, id)
            .await?
            .ok_or(ApiError::MessageNotFound)?;
        Ok(respond::json(StatusCode::OK, &record, &[])?)
    }

    /// `DELETE /v1/messages/{id}`: cancels a `scheduled`, `queued` or
    /// `deferred` message and answers its view. The store decides in one
    /// script, atomically against the consumer's move to `sending`, so a 200
    /// means no consumer will call the upstream for it. The SQS message
    /// stays; the consumer deletes it when it comes back.
    async fn cancel_message(
        &self,
        raw_id: &str,
        account: &AccountId,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, ApiError> {
        let id = MessageId::parse(raw_id).map_err(|_| ApiError::InvalidMessageId)?;
        log.message_id = Some(id);
        match self.store.cancel(account, &id).await? {
            CancelOutcome::Cancelled | CancelOutcome::AlreadyCancelled => {}
            CancelOutcome::TooLate(status) => return Err(ApiError::NotCancellable(status)),
            CancelOutcome::NotFound => return Err(ApiError::MessageNotFound),
        }
        // `cancelled` is final: the record read now is the one cancelled.
        self.message_view(account, &id).await
    }

    /// `POST /v1/campaigns`: the campaign record, then one message per
    /// distinct recipient ([`Self::add_and_enqueue`]). With an
    /// `Idempotency-Key` the campaign's id is derived from the key and the
    /// body, so a retry after a 503 completes the same campaign.
    async fn post_campaign(
        &self,
        req: &Request,
        account: &AccountId,
    ) -> Result<Response<Body>, ApiError> {
        let now = self.clock.now_utc();
        let (campaign, key) = parse_body(req, |b| intake::parse_new_campaign_at(b, now))?;
        if !rollout::admits(
            self.settings.enabled,
            self.settings.rollout_percent,
            account,
        ) {
            return Err(ApiError::IntakeDisabled);
        }
        let fingerprint = intake::campaign_fingerprint(&campaign);
        let id = key.as_ref().map_or_else(CampaignId::new, |k| {
            CampaignId::for_request(account, k, &fingerprint)
        });
        let scheduled = campaign.spec.send_at.is_some_and(|t| t > now);
        let traceparent = trace::traceparent(req.headers().get(TRACEPARENT).map(|v| v.as_bytes()));
        let mut answer = None;
        let outcome = idempotency::accept_once(
            &self.store,
            account,
            key.as_ref(),
            &fingerprint,
            id.as_message_id(),
            self.settings.idempotency,
            || async {
                self.store
                    .create_campaign(account, &id, &campaign.spec, now)
                    .await?;
                let (unique, repeats) = distinct(&campaign.recipients);
                let added = self
                    .add_and_enqueue(
                        account,
                        id,
                        &campaign.spec,
                        &unique,
                        repeats,
                        true,
                        &traceparent,
                    )
                    .await?;
                answer = Some(added);
                Ok::<_, ApiError>(())
            },
        )
        .await?;
        let id = CampaignId::from_message_id(outcome.id);
        let added = match answer {
            Some(a) => a,
            // Replayed: the first request's answer, kept on the campaign.
            None => {
                let c = self
                    .store
                    .campaign(account, &id)
                    .await?
                    .ok_or(ApiError::CampaignNotFound)?;
                let (accepted, duplicates) = c.first_answer.unwrap_or((c.total, 0));
                Added {
                    accepted,
                    duplicates,
                }
            }
        };
        campaign_accepted(id, scheduled, added, outcome.replayed)
    }

    /// `POST /v1/campaigns/{id}/recipients`: more recipients, same message.
    async fn add_recipients(
        &self,
        raw_id: &str,
        req: &Request,
        account: &AccountId,
    ) -> Result<Response<Body>, ApiError> {
        let id = CampaignId::parse(raw_id).map_err(|_| ApiError::InvalidCampaignId)?;
        let (recipients, _key) = parse_body(req, intake::parse_recipients)?;
        if !rollout::admits(
            self.settings.enabled,
            self.settings.rollout_percent,
            account,
        ) {
            return Err(ApiError::IntakeDisabled);
        }
        let campaign = self.campaign_of(account, &id).await?;
        if campaign.cancelled {
            return Err(ApiError::CampaignCancelled);
        }
        let now = self.clock.now_utc();
        let traceparent = trace::traceparent(req.headers().get(TRACEPARENT).map(|v| v.as_bytes()));
        let (unique, repeats) = distinct(&recipients);
        let added = self
            .add_and_enqueue(
                account,
                id,
                &campaign.spec,
                &unique,
                repeats,
                false,
                &traceparent,
            )
            .await?;
        let scheduled = campaign.spec.send_at.is_some_and(|t| t > now);
        campaign_accepted(id, scheduled, added, false)
    }

    /// Stores a message for each recipient that has none (one script), sends
    /// the stored ones to the queue in batches, and marks what the queue
    /// took. 202 only if the queue (or the outbox) took every one; else 503,
    /// and the messages it did not take stay pending for a retry to send.
    #[allow(clippy::too_many_arguments)]
    async fn add_and_enqueue(
        &self,
        account: &AccountId,
        id: CampaignId,
        spec: &CampaignSpec,
        recipients: &[RecipientId],
        repeats: u64,
        first: bool,
        traceparent: &str,
    ) -> Result<Added, ApiError> {
        let now = self.clock.now_utc();
        let pairs: Vec<(RecipientId, MessageId)> = recipients
            .iter()
            .map(|r| (r.clone(), MessageId::new()))
            .collect();
        let slots = match self
            .store
            .add_recipients(account, &id, spec, now, &pairs)
            .await?
        {
            AddOutcome::Added(slots) => slots,
            AddOutcome::NotFound => return Err(ApiError::CampaignNotFound),
            AddOutcome::Cancelled => return Err(ApiError::CampaignCancelled),
        };
        let mut added = Added {
            accepted: 0,
            duplicates: repeats,
        };
        let mut msgs = Vec::with_capacity(slots.len());
        for (slot, (r, _)) in slots.iter().zip(&pairs) {
            match slot {
                Slot::New(m) | Slot::Pending(m) => msgs.push(QueueMessage::new(
                    *m,
                    account.clone(),
                    spec.message(r.clone()),
                    now,
                )),
                Slot::Duplicate => added.duplicates += 1,
            }
        }
        added.accepted = msgs.len() as u64;
        let result = self.queue.enqueue_batch(&msgs, Some(traceparent)).await;
        let failed = result
            .as_ref()
            .err()
            .map(|e| e.failed.as_slice())
            .unwrap_or(&[]);
        let stored: Vec<MessageId> = msgs
            .iter()
            .map(|m| m.message_id)
            .filter(|m| !failed.contains(m))
            .collect();
        let answer = (first && result.is_ok()).then_some((added.accepted, added.duplicates));
        self.store
            .mark_enqueued(account, &id, &stored, answer)
            .await?;
        if let Err(e) = result {
            tracing::warn!(
                campaign_id = %id,
                not_stored = e.failed.len(),
                stored = stored.len(),
                error = %e.error,
                "campaign messages not all stored: 503, a retry completes them"
            );
            return Err(ApiError::QueueUnavailable(e.error));
        }
        // One EMF line for the call, not one per message: a campaign's
        // messages share its priority, and CloudWatch sums the value.
        self.metrics
            .count_n(Metric::MessagesQueued, msgs.len() as u64, spec.priority);
        Ok(added)
    }

    /// One of the account's campaigns, or 404.
    async fn campaign_of(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> Result<CampaignRecord, ApiError> {
        self.store
            .campaign(account, id)
            .await?
            .ok_or(ApiError::CampaignNotFound)
    }

    /// The campaign view: counts, and the completion estimate from the
    /// account's bucket.
    async fn campaign_view(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> Result<Response<Body>, ApiError> {
        let campaign = self.campaign_of(account, id).await?;
        let bucket = self
            .buckets
            .view(account)
            .await
            .map_err(ApiError::LimiterUnavailable)?;
        let pace = Pace {
            per_minute: bucket.per_minute,
            tokens: bucket.tokens,
            paused_for: bucket.paused_for,
        };
        let view = campaign.view(pace, self.clock.now_utc());
        Ok(respond::json(StatusCode::OK, &view, &[])?)
    }

    /// `GET /v1/campaigns/{id}`.
    async fn get_campaign(
        &self,
        raw_id: &str,
        account: &AccountId,
    ) -> Result<Response<Body>, ApiError> {
        let id = CampaignId::parse(raw_id).map_err(|_| ApiError::InvalidCampaignId)?;
        self.campaign_view(account, &id).await
    }

    /// `DELETE /v1/campaigns/{id}`: no more recipients, and every message not
    /// yet `sending` or settled cancelled (each by the atomic cancel script).
    async fn cancel_campaign(
        &self,
        raw_id: &str,
        account: &AccountId,
    ) -> Result<Response<Body>, ApiError> {
        let id = CampaignId::parse(raw_id).map_err(|_| ApiError::InvalidCampaignId)?;
        if !self.store.cancel_campaign(account, &id).await? {
            return Err(ApiError::CampaignNotFound);
        }
        tracing::info!(campaign_id = %id, "campaign cancelled");
        self.campaign_view(account, &id).await
    }

    /// `GET /v1/campaigns/{id}/messages?status=&limit=&cursor=`.
    async fn campaign_messages(
        &self,
        raw_id: &str,
        req: &Request,
        account: &AccountId,
    ) -> Result<Response<Body>, ApiError> {
        let id = CampaignId::parse(raw_id).map_err(|_| ApiError::InvalidCampaignId);
        let query = PageQuery::parse(req.uri().query());
        let (id, query) = match (id, query) {
            (Ok(id), Ok(q)) => (id, q),
            (Err(e), Ok(_)) => return Err(e),
            (_, Err(errors)) => return Err(ApiError::InvalidFields(errors)),
        };
        self.campaign_of(account, &id).await?;
        let page = self
            .store
            .campaign_page(account, &id, query.status, query.cursor, query.limit)
            .await?;
        Ok(respond::json(
            StatusCode::OK,
            &json!({
                "messages": page.records,
                "nextCursor": page.next.map(|n| n.to_string()),
            }),
            &[],
        )?)
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
