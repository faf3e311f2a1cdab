//! One SQS record, from its body to its fate.
//!
//! The order matters and each step says why:
//! 1. Parse the body; anything that is not a valid v1 queue message is
//!    poison and goes straight to the DLQ with the reason.
//! 2. Claim the message in Redis (a lease keyed by message id) so two
//!    deliveries of one SQS message never call the upstream at once, then
//!    read its status: one already `sent`, `failed` or `dead` is done.
//! 3. Take a token from the account's bucket. A throttled message is deferred
//!    (visibility set to its slot) and reported as a batch item failure: a
//!    wait, not an attempt. Only after the token, call the upstream, so the
//!    time between the limiter's decision and the request's arrival is short.
//! 4. Classify the answer: sent, rate limited (pause the account, defer),
//!    transient (retry with backoff until `MAX_ATTEMPTS`, then dead), or
//!    permanent (failed).

use crate::ports::{Attributes, Queue, Store, Upstream};
use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::MessageAttributeValue;
use shared::breaker::{Breaker, Permit};
use shared::delivery::{Outcome, backoff};
use shared::limiter::{Decision, Limiter};
use shared::message::{Priority, QueueMessage};
use shared::queue::attr;
use shared::store::{ClaimOutcome, Status, Transition};
use shared::telemetry::{Metric, Metrics};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tracing::{error, info, warn};

/// How long a deferral waits when delivery is paused by the feature flag.
pub const PAUSED_DEFER: Duration = Duration::from_secs(60);
/// How long a record waits when Redis cannot be reached (fail closed).
pub const UNAVAILABLE_DEFER: Duration = Duration::from_secs(5);

/// What the `sentRecord` attribute carries: the outcome of a delivery whose
/// status could not be written at the time.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentRecord {
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    sent_at: OffsetDateTime,
    upstream_message_id: Option<String>,
}

/// What the trigger should do with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: sent, failed, dead-lettered, poison, or a duplicate.
    Done,
    /// Leave it (a batch item failure): deferred, or to be retried.
    Retry,
}

enum CallKind {
    Unauthorized,
    Other,
}

/// The settings delivery decisions use.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: bool,
    pub max_attempts: u32,
    pub max_receive_count: u32,
    /// How long a claim lasts: longer than one upstream call can take.
    pub claim_lease: Duration,
    /// The most one record can take (an upstream call at its timeout, and
    /// Redis/SQS calls): a record is only started with this much time left.
    pub record_budget: Duration,
    /// Waits up to this long are waited out in process rather than deferred.
    pub in_process_wait: Duration,
    /// `Naive`: a throttled message is only reported as a batch item failure
    /// (the benchmark's baseline), not hidden until its slot.
    pub deferral: shared::config::DeferralStrategy,
}

/// Everything processing needs, built once at cold start.
pub struct Deps<S, Q, U, L> {
    pub store: S,
    pub queue: Q,
    pub upstream: U,
    pub limiter: L,
    pub metrics: Metrics,
    pub settings: Settings,
    /// Guards the OnlyFans API: while open, messages are deferred uncalled.
    pub breaker: Breaker,
}

/// What is known about a record before its body is trusted.
pub struct Envelope<'a> {
    pub sqs_id: &'a str,
    pub receipt_handle: Option<&'a str>,
    pub body: &'a str,
    pub receive_count: u32,
    pub attributes: Attributes,
    /// When the invocation must be finished by.
    pub deadline: Instant,
}

impl<'a> Envelope<'a> {
    pub fn from_record(record: &'a SqsMessage, deadline: Instant) -> Self {
        Self {
            sqs_id: record.message_id.as_deref().unwrap_or(""),
            receipt_handle: record.receipt_handle.as_deref(),
            body: record.body.as_deref().unwrap_or(""),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            attributes: sdk_attributes(record),
            deadline,
        }
    }
}

/// The record's message attributes in the SDK's form, to carry them along
/// when the message is dead-lettered or re-enqueued.
fn sdk_attributes(record: &SqsMessage) -> Attributes {
    record
        .message_attributes
        .iter()
        .filter_map(|(k, v)| {
            let data_type = v.data_type.clone().unwrap_or_else(|| "String".into());
            let mut b = MessageAttributeValue::builder().data_type(data_type);
            if let Some(s) = &v.string_value {
                b = b.string_value(s);
            } else if let Some(bin) = &v.binary_value {
                b = b.binary_value(aws_sdk_sqs::primitives::Blob::new(bin.0.clone()));
            } else {
                return None;
            }
            b.build().ok().map(|a| (k.clone(), a))
        })
        .collect()
}

impl<S: Store, Q: Queue, U: Upstream, L: Limiter> Deps<S, Q, U, L> {
    /// Decides one record. Never panics and never returns an error: every
    /// failure becomes a disposition, so one record cannot fail its batch.
    pub async fn process(&self, env: Envelope<'_>, owner: &str) -> Disposition {
        let msg = match QueueMessage::parse(env.body) {
            Ok(m) => m,
            Err(reason) => return self.poison(&env, &reason.to_string()).await,
        };
        // The producer's trace context travels in a message attribute; the
        // span carries it so one request can be followed into delivery.
        let traceparent = env
            .attributes
            .get(attr::TRACEPARENT)
            .and_then(|a| a.string_value())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "message",
            message_id = %msg.message_id,
            account_id = %msg.account_id,
            sqs_message_id = env.sqs_id,
            priority = %msg.priority,
            traceparent,
        );
        tracing::Instrument::instrument(self.deliver(&env, &msg, owner), span).await
    }

    async fn poison(&self, env: &Envelope<'_>, reason: &str) -> Disposition {
        warn!(
            sqs_message_id = env.sqs_id,
            reason, "poison message: moving it to the DLQ"
        );
        match self
            .queue
            .dead_letter(env.body, env.attributes.clone(), reason)
            .await
        {
            Ok(()) => {
                self.metrics
                    .count(Metric::MessagesDead, Priority::default());
                Disposition::Done
            }
            Err(e) => {
                // Leave it: the queue's own redrive policy will move it.
                error!(error = %e, "could not dead-letter a poison message");
                Disposition::Retry
            }
        }
    }

    async fn deliver(&self, env: &Envelope<'_>, msg: &QueueMessage, owner: &str) -> Disposition {
        let s = &self.settings;
        if let Some(record) = env
            .attributes
            .get(attr::SENT_RECORD)
            .and_then(|a| a.string_value())
        {
            return self.record_sent_copy(env, msg, record).await;
        }
        if !s.enabled {
            return self
                .defer(
                    env,
                    msg,
                    PAUSED_DEFER,
                    None,
                    "delivery paused (RATE_LIMITER_ENABLED=false)",
                )
                .await;
        }
        match self
            .store
            .claim(&msg.account_id, &msg.message_id, owner, s.claim_lease)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {}
            Ok(ClaimOutcome::Held(left)) => {
                info!(
                    wait_ms = left.as_millis() as u64,
                    "another delivery holds this message; deferring"
                );
                return self.defer_only(env, left + Duration::from_secs(1)).await;
            }
            Err(e) => {
                error!(error = %e, "redis unavailable: failing closed");
                return self.defer_only(env, UNAVAILABLE_DEFER).await;
            }
        }
        let result = self.deliver_claimed(env, msg).await;
        if let Err(e) = self
            .store
            .release(&msg.account_id, &msg.message_id, owner)
            .await
        {
            // The lease ends by itself.
            warn!(error = %e, "could not release the claim");
        }
        result
    }

    async fn deliver_claimed(&self, env: &Envelope<'_>, msg: &QueueMessage) -> Disposition {
        let s = &self.settings;
        let record = match self.store.get(&msg.account_id, &msg.message_id).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "redis unavailable: failing closed");
                return self.defer_only(env, UNAVAILABLE_DEFER).await;
            }
        };
        if let Some(r) = &record
            && r.status.is_terminal()
        {
            info!(
                status = r.status.as_str(),
                "already settled; dropping the duplicate delivery"
            );
            return Disposition::Done;
        }
        let attempts_before = record.as_ref().map_or(0, |r| r.attempts);

        // An upstream that keeps failing is left alone for a while: the
        // message waits (no token taken, no attempt counted).
        if let Permit::Refused { retry_in } = self.breaker.permit() {
            return self
                .defer(env, msg, retry_in, None, "upstream circuit open")
                .await;
        }

        // Take a token, waiting out short waits in process.
        let mut waited = 0;
        loop {
            match self.limiter.acquire(&msg.account_id, msg.priority).await {
                Ok(Decision::Allowed { .. }) => break,
                Ok(d) => {
                    let wait = d.wait();
                    let left = env.deadline.saturating_duration_since(Instant::now());
                    if waited < 3 && wait <= s.in_process_wait && wait * 2 < left {
                        waited += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if s.deferral == shared::config::DeferralStrategy::Naive {
                        return Disposition::Retry;
                    }
                    let why = match d {
                        Decision::Paused { .. } => "account paused by the upstream's Retry-After",
                        _ => "rate limited",
                    };
                    return self.defer(env, msg, wait, None, why).await;
                }
                Err(e) => {
                    error!(error = %e, "limiter unavailable: failing closed, nothing is sent without a token");
                    return self.defer_only(env, UNAVAILABLE_DEFER).await;
                }
            }
        }

        let fallback = (msg.priority, msg.created_at);
        let _ = self
            .store
            .transition(
                &msg.account_id,
                &msg.message_id,
                Status::Sending,
                Transition::default(),
                fallback,
            )
            .await;
        let call = self.upstream.send(msg).await;
        self.metrics
            .latency(Metric::UpstreamLatency, call.latency, msg.priority);
        let attempts = attempts_before + 1;
        match &call.outcome {
            Outcome::Transient { .. } => self.breaker.failure(),
            Outcome::Unauthorized { .. } => {}
            _ => self.breaker.success(),
        }
        let call_kind = match call.outcome {
            Outcome::Unauthorized { .. } => CallKind::Unauthorized,
            _ => CallKind::Other,
        };
        match call.outcome {
            Outcome::Sent { upstream_id } => {
                let now = OffsetDateTime::now_utc();
                let change = Transition {
                    attempts: Some(attempts),
                    sent_at: Some(now),
                    upstream_message_id: upstream_id,
                    last_error: None,
                };
                // The message is out: whatever Redis says now, delete it
                // rather than risk sending it twice; but first make its
                // status say so (Redis may be failing over right now).
                self.record_sent(env, msg, change, fallback).await;
                let latency = (now - msg.created_at).try_into().unwrap_or(Duration::ZERO);
                self.metrics.count(Metric::MessagesSent, msg.priority);
                self.metrics
                    .latency(Metric::DeliveryLatency, latency, msg.priority);
                info!(
                    attempts,
                    upstream_ms = call.latency.as_millis() as u64,
                    "sent"
                );
                Disposition::Done
            }
            Outcome::RateLimited { retry_after } => {
                // Not a failure and not an attempt: the account waits, every
                // instance sees the pause, and the message goes later.
                if let Err(e) = self.limiter.pause(&msg.account_id, retry_after).await {
                    warn!(error = %e, "could not store the upstream pause");
                }
                self.defer(env, msg, retry_after, None, "upstream answered 429")
                    .await
            }
            Outcome::Permanent { status, reason } => {
                let change = Transition {
                    attempts: Some(attempts),
                    last_error: Some(reason.clone()),
                    ..Transition::default()
                };
                if let Err(e) = self
                    .store
                    .transition(
                        &msg.account_id,
                        &msg.message_id,
                        Status::Failed,
                        change,
                        fallback,
                    )
                    .await
                {
                    error!(error = %e, "failed, but the status record could not be updated");
                }
                self.metrics.count(Metric::MessagesFailed, msg.priority);
                warn!(
                    upstream_status = status,
                    reason, "permanently refused by the upstream"
                );
                Disposition::Done
            }
            Outcome::Transient { reason } | Outcome::Unauthorized { reason } => {
                if matches!(call_kind, CallKind::Unauthorized) {
                    // The token may have been rotated: read it again.
                    self.upstream.refresh_token().await;
                }
                if attempts >= s.max_attempts {
                    return self.dead(env, msg, attempts, &reason).await;
                }
                let wait = backoff(attempts, &mut fastrand::Rng::new());
                warn!(
                    attempts,
                    reason,
                    retry_in_ms = wait.as_millis() as u64,
                    "transient upstream failure"
                );
                self.defer(
                    env,
                    msg,
                    wait,
                    Some((attempts, reason)),
                    "retrying after a transient failure",
                )
                .await
            }
        }
    }

    /// Records a delivered message as `sent`. A failed write is tried again
    /// after a moment (the first command after a Redis restart fails while
    /// the client reconnects). If Redis still cannot take it, the outcome
    /// goes to SQS instead: a copy of the message carrying it in the
    /// `sentRecord` attribute, which a later delivery only records
    /// ([`Self::record_sent_copy`]). A status left `sending` would never
    /// tell the sender that the message went out, and once this SQS message
    /// is deleted nothing else would correct it.
    async fn record_sent(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        change: Transition,
        fallback: (Priority, OffsetDateTime),
    ) {
        let mut failure = None;
        for pause in [0, 200, 800].map(Duration::from_millis) {
            // One write's worst case (the 2 s Redis response timeout) must
            // end before the deadline: a function killed at its timeout
            // would have this message delivered again.
            let left = env.deadline.saturating_duration_since(Instant::now());
            if left < pause + Duration::from_millis(2500) {
                break;
            }
            tokio::time::sleep(pause).await;
            match self
                .store
                .transition(
                    &msg.account_id,
                    &msg.message_id,
                    Status::Sent,
                    change.clone(),
                    fallback,
                )
                .await
            {
                Ok(_) => return,
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let failure = failure.unwrap_or_else(|| "no time left to write it".to_owned());
        let record = SentRecord {
            attempts: change.attempts.unwrap_or(1),
            sent_at: change.sent_at.unwrap_or_else(OffsetDateTime::now_utc),
            upstream_message_id: change.upstream_message_id,
        };
        let mut attrs = env.attributes.clone();
        attrs.remove(attr::DEAD_REASON);
        if let Ok(v) = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(serde_json::to_string(&record).unwrap_or_default())
            .build()
        {
            attrs.insert(attr::SENT_RECORD.to_owned(), v);
        }
        match self.queue.requeue(env.body, attrs, UNAVAILABLE_DEFER).await {
            Ok(()) => warn!(
                error = failure,
                "sent, but the status record could not be updated; a copy of the message will record it"
            ),
            Err(e) => error!(
                error = failure,
                queue_error = %e,
                "sent, but neither Redis nor SQS took its status: it stays `sending`"
            ),
        }
    }

    /// A copy left by [`Self::record_sent`]: the message went out already,
    /// so only its status is written (no claim, no token, no call). While
    /// Redis still fails the copy waits and comes back.
    async fn record_sent_copy(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        record: &str,
    ) -> Disposition {
        let Ok(record) = serde_json::from_str::<SentRecord>(record) else {
            error!(record, "unreadable sentRecord attribute; dropping the copy");
            return Disposition::Done;
        };
        let change = Transition {
            attempts: Some(record.attempts),
            sent_at: Some(record.sent_at),
            upstream_message_id: record.upstream_message_id,
            last_error: None,
        };
        match self
            .store
            .transition(
                &msg.account_id,
                &msg.message_id,
                Status::Sent,
                change,
                (msg.priority, msg.created_at),
            )
            .await
        {
            Ok(_) => {
                info!("recorded a delivery whose status could not be written at the time");
                Disposition::Done
            }
            Err(e) => {
                warn!(error = %e, "redis unavailable: the sent status waits");
                self.defer_only(env, UNAVAILABLE_DEFER).await
            }
        }
    }

    async fn dead(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        attempts: u32,
        reason: &str,
    ) -> Disposition {
        let why = format!("gave up after {attempts} attempts: {reason}");
        if let Err(e) = self
            .queue
            .dead_letter(env.body, env.attributes.clone(), &why)
            .await
        {
            error!(error = %e, "could not dead-letter; leaving the message for the redrive policy");
            return Disposition::Retry;
        }
        let change = Transition {
            attempts: Some(attempts),
            last_error: Some(why.clone()),
            ..Transition::default()
        };
        if let Err(e) = self
            .store
            .transition(
                &msg.account_id,
                &msg.message_id,
                Status::Dead,
                change,
                (msg.priority, msg.created_at),
            )
            .await
        {
            error!(error = %e, "dead, but the status record could not be updated");
        }
        self.metrics.count(Metric::MessagesDead, msg.priority);
        error!(attempts, reason, "dead-lettered");
        Disposition::Done
    }

    /// Defers a message: records `deferred`, then hides it until `wait` is over.
    async fn defer(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        wait: Duration,
        failure: Option<(u32, String)>,
        why: &str,
    ) -> Disposition {
        let (attempts, last_error) = failure.unzip();
        let change = Transition {
            attempts,
            last_error,
            ..Transition::default()
        };
        let _ = self
            .store
            .transition(
                &msg.account_id,
                &msg.message_id,
                Status::Deferred,
                change,
                (msg.priority, msg.created_at),
            )
            .await;
        self.metrics.count(Metric::MessagesDeferred, msg.priority);
        info!(
            wait_ms = wait.as_millis() as u64,
            receive_count = env.receive_count,
            why,
            "deferred"
        );
        // Waiting must never dead-letter: before SQS's receive count reaches
        // maxReceiveCount, replace the message by a fresh copy.
        if env.receive_count + 2 >= self.settings.max_receive_count {
            let mut attrs = env.attributes.clone();
            attrs.remove(attr::DEAD_REASON);
            let delay = wait.min(shared::queue::MAX_DELAY);
            match self.queue.requeue(env.body, attrs, delay).await {
                Ok(()) => {
                    info!(
                        receive_count = env.receive_count,
                        "re-enqueued a fresh copy before maxReceiveCount"
                    );
                    return Disposition::Done;
                }
                Err(e) => warn!(error = %e, "could not re-enqueue; deferring the original"),
            }
        }
        self.defer_only(env, wait).await
    }

    /// Hides the record for `wait` (rounded up to whole seconds, as SQS
    /// counts) and leaves it to come back.
    async fn defer_only(&self, env: &Envelope<'_>, wait: Duration) -> Disposition {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Some(rh) = env.receipt_handle
            && let Err(e) = self.queue.defer(rh, Duration::from_secs(secs)).await
        {
            // The queue's visibility timeout applies instead: later, not lost.
            warn!(error = %e, "could not change the visibility");
        }
        Disposition::Retry
    }
}
