//! One SQS record, from its body to its fate.
//!
//! This module performs; [`shared::delivery::policy`] decides. The walk:
//! 1. Parse the body; anything that is not a valid v1 queue message is
//!    poison and goes straight to the DLQ with the reason.
//! 2. Claim the message in Redis (a lease keyed by message id) so two
//!    deliveries of one SQS message never call the upstream at once, then
//!    read its status: one already `sent`, `failed` or `dead` is done.
//! 3. A scheduled message not yet due ([`policy::due_step`]) is hidden
//!    again until its `sendAt`, like a slot it holds from the start: no
//!    token, no attempt, re-enqueued before `maxReceiveCount`.
//!    A message given a slot earlier keeps it ([`policy::slot_step`]): back
//!    before it, it is hidden again until then (no token taken); once it
//!    has come, it asks for its token as the slot's holder.
//! 4. Look at the upstream's circuit breaker (open: wait, nothing spent).
//! 5. Take a token from the account's bucket ([`policy::after_limiter`]):
//!    a throttled message is given a slot, kept with its status record, and
//!    deferred (visibility set to its slot) as a batch item failure: a wait,
//!    not an attempt.
//! 6. Take the breaker's permit, move the message to `sending` if it was
//!    not cancelled meanwhile (one script that checks the claim and the
//!    status together, atomic against `DELETE /v1/messages/{id}`), and call
//!    the upstream, right after the token, so the time between the
//!    limiter's decision and the request's arrival is short; settle the
//!    permit with [`policy::breaker_report`]. The account's next record in
//!    the batch asks for its token once this one has its own, while the
//!    account's calls are answered 2xx, or else once this one is answered
//!    2xx or done ([`Turn`]).
//! 7. Carry out [`policy::after_call`]'s plan: sent, pause the account and
//!    defer, retry with backoff, dead, or failed.

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::MessageAttributeValue;
use shared::breaker::{Breaker, Permit};
use shared::clock::Clock;
use shared::config::DeferralStrategy;
use shared::delivery::policy::{
    self, BreakerReport, DeferReason, DueStep, Plan, SlotStep, TokenStep,
};
use shared::delivery::{Jitter, Outcome, Upstream};
use shared::limiter::Decision;
use shared::limiter::Limiter;
use shared::message::{Priority, QueueMessage};
use shared::queue::{Attributes, Redeliver, attr};
use shared::store::{
    ClaimOutcome, ClaimStore, SendGate, SlotChange, Status, StatusStore, StoreError, Transition,
};
use shared::telemetry::{Metric, Metrics};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info, warn};

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
    /// How late a deferred message may come back after its slot
    /// ([`policy::queue_lateness`] of the trigger's batching window).
    pub queue_lateness: Duration,
    /// `Naive`: a throttled message is only reported as a batch item failure
    /// (the benchmark's baseline), not hidden until its slot.
    pub deferral: DeferralStrategy,
}

impl Settings {
    /// A claim outlives one upstream call at its timeout by this much.
    pub const CLAIM_MARGIN: Duration = Duration::from_secs(5);
    /// A record's budget: one upstream call at its timeout and this much for
    /// the Redis and SQS calls around it.
    pub const RECORD_MARGIN: Duration = Duration::from_secs(1);

    pub fn from_config(config: &shared::config::Config) -> Self {
        Self {
            enabled: config.enabled,
            max_attempts: config.max_attempts.get(),
            max_receive_count: config.max_receive_count,
            claim_lease: config.upstream_timeout + Self::CLAIM_MARGIN,
            record_budget: config.upstream_timeout + Self::RECORD_MARGIN,
            in_process_wait: config.in_process_wait,
            queue_lateness: policy::queue_lateness(config.batching_window),
            deferral: config.deferral,
        }
    }
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
    /// Wall time for status timestamps (tokio's clock for the rest).
    pub clock: Clock,
    /// The backoff's jitter.
    pub jitter: Jitter,
}

/// A record's place in its account's line within one batch. The account's
/// records ask the limiter one after another, in the order they came; once
/// a call of the line has been answered 2xx, a record passes its turn as
/// soon as its token is taken, so the next one's wait for its token
/// overlaps this one's upstream call instead of following it. Until then
/// (the line's first call, and after any answer that is not a 2xx: a 429,
/// a 5xx, a timeout), a record passes its turn only once answered 2xx, or
/// else once it is done (a 429's pause is then set before the next one
/// asks), so an upstream that refuses the account gets one call at a time,
/// not a burst of calls already under way. A record with a copy of itself later in the
/// line (SQS delivered it twice in one batch, or a fresh copy met its
/// original) holds its turn until it is done, so the copy finds it settled
/// rather than claimed. The turn passes on every path out: dropping it
/// passes it.
#[derive(Debug)]
pub struct Turn {
    next: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    /// Whether the line's last answered call was a 2xx.
    answered_ok: Arc<AtomicBool>,
    /// False for a record whose copy comes later in the line.
    may_pass_early: bool,
}

impl Turn {
    /// A line of turns for records with these bodies, in order: each waits
    /// for the one before it to pass.
    pub fn line<B: Eq + std::hash::Hash>(
        bodies: &[B],
    ) -> Vec<(Option<oneshot::Receiver<()>>, Turn)> {
        // Whether a copy comes later, for each record (one pass from the
        // back: a batch may hold up to 10,000 records).
        let mut later = std::collections::HashSet::with_capacity(bodies.len());
        let mut copy_behind: Vec<bool> = bodies.iter().rev().map(|b| !later.insert(b)).collect();
        copy_behind.reverse();
        let answered_ok = Arc::new(AtomicBool::new(false));
        let mut before = None;
        copy_behind
            .into_iter()
            .map(|copy_behind| {
                let (tx, rx) = oneshot::channel();
                let wait = before.replace(rx);
                let turn = Turn {
                    next: std::sync::Mutex::new(Some(tx)),
                    answered_ok: answered_ok.clone(),
                    may_pass_early: !copy_behind,
                };
                (wait, turn)
            })
            .collect()
    }

    /// The record's token is taken: the next record may ask for its own,
    /// if the line's calls are being answered.
    pub fn token_taken(&self) {
        if self.answered_ok.load(Ordering::Acquire) {
            self.pass_early();
        }
    }

    /// The record's call was answered (`ok`: a 2xx).
    pub fn answered(&self, ok: bool) {
        self.answered_ok.store(ok, Ordering::Release);
        if ok {
            self.pass_early();
        }
    }

    /// Passes before the record is done, unless a copy of it waits behind.
    fn pass_early(&self) {
        if self.may_pass_early {
            self.pass();
        }
    }

    /// Lets the next record of the account go on (once; later calls do
    /// nothing).
    fn pass(&self) {
        let next = self.next.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(next) = next {
            // The next record may be gone already: nothing waits then.
            let _ = next.send(());
        }
    }
}

/// What is known about a record before its body is trusted.
pub struct Envelope<'a> {
    /// The Lambda request id of the invocation the record came in: on every
    /// log line about the record, with the message's own ids.
    pub request_id: &'a str,
    pub sqs_id: &'a str,
    pub receipt_handle: Option<&'a str>,
    pub body: &'a str,
    pub receive_count: u32,
    pub attributes: Attributes,
    /// When the invocation must be finished by.
    pub deadline: Instant,
    /// Where the record's deferral goes, sent with the batch's others.
    pub hides: &'a Hides,
    /// Its place in its account's line ([`Turn`]).
    pub turn: &'a Turn,
}

/// The visibility changes an invocation's records ask for, sent together
/// when they are all done ([`Deps::flush_hides`]): one
/// `ChangeMessageVisibilityBatch` for up to ten records instead of a call
/// each. Each entry keeps the moment its record is to come back, so the
/// time the invocation goes on after the decision is not added to the wait.
/// A record whose change never goes out (the invocation crashed or timed
/// out first, or SQS refused it) comes back when the queue's visibility
/// timeout ends: later, not lost, and a slot it holds is kept in Redis.
#[derive(Debug, Default)]
pub struct Hides(std::sync::Mutex<Vec<(String, Instant)>>);

impl Hides {
    fn push(&self, receipt_handle: &str, wait: Duration) {
        let until = Instant::now() + wait;
        self.lock().push((receipt_handle.to_owned(), until));
    }

    /// The entries so far, each with the visibility it needs now
    /// ([`policy::visibility`]).
    pub fn take(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        std::mem::take(&mut *self.lock())
            .into_iter()
            .map(|(rh, until)| (rh, policy::visibility(until.saturating_duration_since(now))))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'a> Envelope<'a> {
    pub fn from_record(
        record: &'a SqsMessage,
        request_id: &'a str,
        deadline: Instant,
        hides: &'a Hides,
        turn: &'a Turn,
    ) -> Self {
        Self {
            request_id,
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
            hides,
            turn,
        }
    }

    /// Time left in the invocation.
    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
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

/// A message's attributes without the DLQ's reason, plus `extra`.
fn carried_attributes(env: &Envelope<'_>, extra: Option<(&str, String)>) -> Attributes {
    let mut attrs = env.attributes.clone();
    attrs.remove(attr::DEAD_REASON);
    if let Some((name, value)) = extra
        && let Ok(v) = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
    {
        attrs.insert(name.to_owned(), v);
    }
    attrs
}

impl<S, Q, U, L> Deps<S, Q, U, L>
where
    S: StatusStore + ClaimStore,
    Q: Redeliver,
    U: Upstream,
    L: Limiter,
{
    /// Decides one record. Never panics and never returns an error: every
    /// failure becomes a disposition, so one record cannot fail its batch.
    pub async fn process(&self, env: Envelope<'_>, owner: &str) -> Disposition {
        let msg = match QueueMessage::parse(env.body) {
            Ok(m) => m,
            Err(reason) => return self.poison(&env, &reason.to_string()).await,
        };
        // The producer's trace context travels in a message attribute; the
        // span carries it so one request can be followed into delivery. The
        // log lines show only the innermost span's fields, so this span
        // repeats the invocation's request id (named as
        // lambda_runtime's own span names it).
        let traceparent = env
            .attributes
            .get(attr::TRACEPARENT)
            .and_then(|a| a.string_value())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "message",
            requestId = env.request_id,
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

    /// Claims the message, delivers it, and releases the claim on every
    /// path out of the delivery.
    async fn deliver(&self, env: &Envelope<'_>, msg: &QueueMessage, owner: &str) -> Disposition {
        if let Some(record) = env
            .attributes
            .get(attr::SENT_RECORD)
            .and_then(|a| a.string_value())
        {
            return self.record_sent_copy(env, msg, record).await;
        }
        if !self.settings.enabled {
            let step = (policy::PAUSED_DEFER, DeferReason::DeliveryPaused);
            return self.defer(env, msg, step, None).await;
        }
        let (account, id) = (&msg.account_id, &msg.message_id);
        match self
            .store
            .claim(account, id, owner, self.settings.claim_lease)
            .await
        {
            Ok(ClaimOutcome::Claimed) => {}
            Ok(ClaimOutcome::Held(left)) => {
                let wait = policy::held_claim_wait(left);
                info!(
                    wait_ms = wait.as_millis() as u64,
                    "another delivery holds this message; deferring"
                );
                return self.defer_only(env, wait).await;
            }
            Err(e) => return self.unavailable(env, &e.to_string()).await,
        }
        let result = self.deliver_claimed(env, msg, owner).await;
        if let Err(e) = self.store.release(account, id, owner).await {
            // The lease ends by itself.
            warn!(error = %e, "could not release the claim");
        }
        result
    }

    /// Settle attempts → keep the slot → take a token → call → carry out
    /// the plan.
    async fn deliver_claimed(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        owner: &str,
    ) -> Disposition {
        let record = match self.store.get(&msg.account_id, &msg.message_id).await {
            Ok(r) => r,
            Err(e) => return self.unavailable(env, &e.to_string()).await,
        };
        if let Some(r) = record.as_ref().filter(|r| r.status.is_terminal()) {
            if r.status == Status::Cancelled {
                info!("cancelled by the sender; settled without sending");
            } else {
                info!(
                    status = r.status.as_str(),
                    "already settled; dropping the duplicate delivery"
                );
            }
            return Disposition::Done;
        }
        let attempts_before = record.as_ref().map_or(0, |r| r.attempts);
        let limit = self.settings.in_process_wait;
        // The body carries sendAt; the record too (a body from before
        // scheduled send has neither).
        let send_at = msg.send_at.or(record.as_ref().and_then(|r| r.send_at));
        let until_due = send_at.map(|t| policy::until(t, self.clock.now_utc()));
        let due_us = policy::due_us(msg.created_at, send_at);
        match policy::due_step(until_due, limit, env.time_left()) {
            DueStep::Due => {}
            DueStep::WaitThenGo(wait) => self.clock.sleep(wait).await,
            DueStep::NotYet(wait) => {
                info!(
                    wait_ms = wait.as_millis() as u64,
                    receive_count = env.receive_count,
                    "scheduled; hidden until its sendAt"
                );
                return self.hide(env, wait).await;
            }
        }
        let now = self.clock.now_utc();
        let until_slot = record
            .as_ref()
            .and_then(|r| r.slot_at)
            .map(|slot| policy::until(slot, now));
        let held = match policy::slot_step(until_slot, limit, env.time_left()) {
            SlotStep::Ask { held } => held,
            SlotStep::WaitThenAsk(wait) => {
                self.clock.sleep(wait).await;
                true
            }
            SlotStep::Early(wait) => {
                info!(
                    wait_ms = wait.as_millis() as u64,
                    receive_count = env.receive_count,
                    "back before its slot; hidden until it"
                );
                return self.hide(env, policy::slot_hide(wait, limit)).await;
            }
        };
        // An upstream that keeps failing is left alone for a while: the
        // message waits (no token taken, no attempt counted). Only a look:
        // the permit itself is taken right before the call.
        if let Some(retry_in) = self.breaker.refusing() {
            return self
                .defer(env, msg, (retry_in, DeferReason::CircuitOpen), None)
                .await;
        }
        if let Err(disposition) = self.take_token(env, msg, held, due_us).await {
            return disposition;
        }
        // The token is taken: the account's next record may ask for its
        // own while this one's call is under way ([`Turn`]).
        env.turn.token_taken();
        self.call(env, msg, attempts_before, owner).await
    }

    /// Takes a token (as a slot's holder if `held`), waiting out short waits
    /// in process; `Err` is what to do with the record when no token comes.
    async fn take_token(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        mut held: bool,
        due_us: Option<u64>,
    ) -> Result<(), Disposition> {
        let s = &self.settings;
        held = policy::asks_as_holder(held, s.deferral);
        let mut waits = 0;
        loop {
            let asked = self
                .limiter
                .acquire_as(&msg.account_id, msg.priority, held, due_us)
                .await;
            let decision = match asked {
                Ok(d) => d,
                Err(e) => {
                    error!(error = %e, "limiter unavailable: failing closed, nothing is sent without a token");
                    return Err(self.defer_only(env, policy::UNAVAILABLE_DEFER).await);
                }
            };
            match policy::after_limiter(
                &decision,
                held,
                waits,
                s.in_process_wait,
                s.queue_lateness,
                env.time_left(),
                s.deferral,
            ) {
                TokenStep::Send => return Ok(()),
                TokenStep::WaitHere(wait) => {
                    waits += 1;
                    // A denial gave the message a slot: it asks as its holder.
                    held |= matches!(decision, Decision::Throttled { .. });
                    self.clock.sleep(wait).await;
                }
                TokenStep::NewSlot => {
                    info!("its slot's token went to a higher priority; taking a new slot");
                    held = false;
                }
                TokenStep::LeaveToQueue => return Err(Disposition::Retry),
                TokenStep::Defer(wait, why) => {
                    return Err(self.defer(env, msg, (wait, why), None).await);
                }
            }
        }
    }

    /// Calls the upstream under the breaker's permit, then carries out the plan.
    async fn call(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        attempts_before: u32,
        owner: &str,
    ) -> Disposition {
        // Another message may have become the half-open probe since the look
        // in `deliver_claimed`; then this one waits (its token is spent: a
        // rare race, and never an excess over the limit). The permit is
        // settled below; dropped on any other path, it gives the probe back.
        let permit = match self.breaker.permit() {
            Permit::Go(call) => call,
            Permit::Refused { retry_in } => {
                return self
                    .defer(env, msg, (retry_in, DeferReason::CircuitOpen), None)
                    .await;
            }
        };
        // The point of no return, decided in Redis against a cancel: the
        // message becomes `sending` only if it was not cancelled or settled
        // meanwhile (its slot is used: a delivery after a crash asks afresh).
        let fallback = (msg.priority, msg.created_at);
        match self
            .store
            .begin_send(&msg.account_id, &msg.message_id, owner, fallback)
            .await
        {
            Ok(SendGate::Go) => {}
            Ok(SendGate::Settled(status)) => {
                info!(
                    status = status.as_str(),
                    "cancelled or settled just before the call; not sending"
                );
                return Disposition::Done;
            }
            Ok(SendGate::ClaimLost) => {
                warn!("the claim ran out and another delivery holds it; not sending");
                return self.defer_only(env, policy::UNAVAILABLE_DEFER).await;
            }
            // Whether it was cancelled is unknown: fail closed.
            Err(e) => return self.unavailable(env, &e.to_string()).await,
        }
        let call = self.upstream.send(msg).await;
        let sent = matches!(call.outcome, Outcome::Sent { .. });
        env.turn.answered(sent);
        // A delivery's upstream latency goes out with its other values in
        // one line (`Metrics::sent`); every other outcome's goes out here.
        if !sent {
            self.metrics
                .latency(Metric::UpstreamLatency, call.latency, msg.priority);
        }
        match policy::breaker_report(&call.outcome) {
            BreakerReport::Success => permit.success(),
            BreakerReport::Failure => permit.failure(),
            BreakerReport::Neutral => permit.neutral(),
        }
        let plan = policy::after_call(
            call.outcome,
            attempts_before,
            self.settings.max_attempts,
            self.jitter.sample(),
        );
        self.carry_out(env, msg, plan, call.latency).await
    }

    async fn carry_out(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        plan: Plan,
        upstream: Duration,
    ) -> Disposition {
        match plan {
            Plan::Sent {
                attempts,
                upstream_id,
            } => self.sent(env, msg, attempts, upstream_id, upstream).await,
            Plan::PauseAccount { retry_after } => {
                // Not a failure and not an attempt: the account waits, every
                // instance sees the pause, and the message goes later.
                if let Err(e) = self.limiter.pause(&msg.account_id, retry_after).await {
                    warn!(error = %e, "could not store the upstream pause");
                }
                self.defer(env, msg, (retry_after, DeferReason::Upstream429), None)
                    .await
            }
            Plan::Fail {
                attempts,
                status,
                reason,
            } => self.failed(msg, attempts, status, reason).await,
            Plan::Retry {
                attempts,
                wait,
                reason,
                refresh_token,
            } => {
                if refresh_token {
                    self.upstream.refresh_token().await;
                }
                warn!(
                    attempts,
                    reason,
                    retry_in_ms = wait.as_millis() as u64,
                    "transient upstream failure"
                );
                self.defer(
                    env,
                    msg,
                    (wait, DeferReason::Retrying),
                    Some((attempts, reason)),
                )
                .await
            }
            Plan::Dead { attempts, reason } => self.dead(env, msg, attempts, &reason).await,
        }
    }

    /// A permanent 4xx: `failed` with the upstream's reason, never retried.
    async fn failed(
        &self,
        msg: &QueueMessage,
        attempts: u32,
        status: u16,
        reason: String,
    ) -> Disposition {
        let change = Transition {
            attempts: Some(attempts),
            last_error: Some(reason.clone()),
            ..Transition::default()
        };
        if let Err(e) = self.set_status(msg, Status::Failed, change).await {
            error!(error = %e, "failed, but the status record could not be updated");
        }
        self.metrics.count(Metric::MessagesFailed, msg.priority);
        warn!(
            upstream_status = status,
            reason, "permanently refused by the upstream"
        );
        Disposition::Done
    }

    async fn sent(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        attempts: u32,
        upstream_id: Option<String>,
        upstream: Duration,
    ) -> Disposition {
        let now = self.clock.now_utc();
        let change = Transition {
            attempts: Some(attempts),
            sent_at: Some(now),
            upstream_message_id: upstream_id,
            last_error: None,
            slot: SlotChange::Keep,
        };
        // The message is out: whatever Redis says now, delete it rather than
        // risk sending it twice; but first make its status say so (Redis may
        // be failing over right now).
        self.record_sent(env, msg, change).await;
        let latency = (now - msg.created_at).try_into().unwrap_or(Duration::ZERO);
        self.metrics.sent(latency, upstream, msg.priority);
        info!(attempts, upstream_ms = upstream.as_millis() as u64, "sent");
        Disposition::Done
    }

    /// Records a delivered message as `sent`, trying again after each of
    /// [`policy::SENT_WRITE_PAUSES`] while the write fits before the
    /// deadline. If Redis still cannot take it, the outcome goes to SQS
    /// instead: a copy of the message carrying it in the `sentRecord`
    /// attribute, which a later delivery only records
    /// ([`Self::record_sent_copy`]). A status left `sending` would never tell
    /// the sender that the message went out, and once this SQS message is
    /// deleted nothing else would correct it.
    async fn record_sent(&self, env: &Envelope<'_>, msg: &QueueMessage, change: Transition) {
        let mut failure = None;
        for pause in policy::SENT_WRITE_PAUSES {
            if !policy::sent_write_fits(pause, env.time_left()) {
                break;
            }
            self.clock.sleep(pause).await;
            match self.set_status(msg, Status::Sent, change.clone()).await {
                Ok(_) => return,
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let failure = failure.unwrap_or_else(|| "no time left to write it".to_owned());
        let record = SentRecord {
            attempts: change.attempts.unwrap_or(1),
            sent_at: change.sent_at.unwrap_or_else(|| self.clock.now_utc()),
            upstream_message_id: change.upstream_message_id,
        };
        let value = serde_json::to_string(&record).unwrap_or_default();
        let attrs = carried_attributes(env, Some((attr::SENT_RECORD, value)));
        match self
            .queue
            .requeue(env.body, attrs, policy::UNAVAILABLE_DEFER)
            .await
        {
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
            slot: SlotChange::Keep,
        };
        match self.set_status(msg, Status::Sent, change).await {
            Ok(_) => {
                info!("recorded a delivery whose status could not be written at the time");
                Disposition::Done
            }
            Err(e) => self.unavailable(env, &e.to_string()).await,
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
            last_error: Some(why),
            ..Transition::default()
        };
        if let Err(e) = self.set_status(msg, Status::Dead, change).await {
            error!(error = %e, "dead, but the status record could not be updated");
        }
        self.metrics.count(Metric::MessagesDead, msg.priority);
        error!(attempts, reason, "dead-lettered");
        Disposition::Done
    }

    /// Defers a message: records `deferred`, then hides it until its wait is
    /// over, or replaces it by a fresh copy before SQS's receive count would
    /// dead-letter it ([`policy::reenqueue_before_dlq`]): waiting must never
    /// dead-letter a message.
    async fn defer(
        &self,
        env: &Envelope<'_>,
        msg: &QueueMessage,
        (wait, why): (Duration, DeferReason),
        failure: Option<(u32, String)>,
    ) -> Disposition {
        let (attempts, last_error) = failure.unzip();
        let change = Transition {
            attempts,
            last_error,
            slot: policy::slot_change(why, self.clock.now_utc(), wait),
            ..Transition::default()
        };
        let _ = self.set_status(msg, Status::Deferred, change).await;
        self.metrics.count(Metric::MessagesDeferred, msg.priority);
        info!(
            wait_ms = wait.as_millis() as u64,
            receive_count = env.receive_count,
            why = why.as_str(),
            "deferred"
        );
        let hide = policy::defer_hide(why, wait, self.settings.in_process_wait);
        self.hide(env, hide).await
    }

    /// Hides the record for `wait`, or replaces it by a fresh copy before
    /// SQS's receive count would dead-letter it.
    async fn hide(&self, env: &Envelope<'_>, wait: Duration) -> Disposition {
        if policy::reenqueue_before_dlq(env.receive_count, self.settings.max_receive_count) {
            let attrs = carried_attributes(env, None);
            let delay = policy::reenqueue_delay(wait);
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

    /// Redis did not answer: fail closed, and look again soon.
    async fn unavailable(&self, env: &Envelope<'_>, error: &str) -> Disposition {
        error!(error, "redis unavailable: failing closed");
        self.defer_only(env, policy::UNAVAILABLE_DEFER).await
    }

    /// Hides the record for `wait` (with the batch's others, [`Hides`]) and
    /// leaves it to come back.
    async fn defer_only(&self, env: &Envelope<'_>, wait: Duration) -> Disposition {
        if let Some(rh) = env.receipt_handle {
            env.hides.push(rh, wait);
        }
        Disposition::Retry
    }

    /// Sends the batch's visibility changes, ten to a request.
    pub async fn flush_hides(&self, hides: &Hides) {
        let entries = hides.take();
        for chunk in entries.chunks(shared::queue::BATCH_MAX) {
            match self.queue.defer_batch(chunk).await {
                Ok(0) => {}
                // The queue's visibility timeout applies instead: later, not lost.
                Ok(refused) => warn!(
                    refused,
                    entries = chunk.len(),
                    "SQS refused some visibility changes"
                ),
                Err(e) => warn!(
                    error = %e,
                    entries = chunk.len(),
                    "could not change the visibilities"
                ),
            }
        }
    }

    /// The one way a status moves: a missing record is recreated from the
    /// queue message.
    async fn set_status(
        &self,
        msg: &QueueMessage,
        to: Status,
        change: Transition,
    ) -> Result<Option<Status>, StoreError> {
        self.store
            .transition(
                &msg.account_id,
                &msg.message_id,
                to,
                change,
                Some((msg.priority, msg.created_at)),
            )
            .await
    }
}
