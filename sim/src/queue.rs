//! The SQS model: one standard queue with a redrive policy, and its DLQ.
//!
//! Rules kept, each as the AWS documentation states it:
//! - A received message is hidden for the queue's visibility timeout, 0 s to
//!   12 h; `ChangeMessageVisibility` takes 0–43,200 s, counted from the call,
//!   and the total since the receive may not pass 12 h ("If you try to extend
//!   the visibility timeout beyond 12 hours, your request is rejected").
//!   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html>
//!   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html>
//! - Each receive gives a new receipt handle; only the newest one deletes
//!   ("otherwise, the request succeeds, but the message will not be deleted")
//!   or changes the visibility (refused here, as for a message not in flight).
//!   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessage.html>
//! - `DelaySeconds` is 0–900. <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html>
//! - `ApproximateReceiveCount` counts receives; when a receive would take it
//!   past `maxReceiveCount`, the message moves to the DLQ instead.
//!   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html>
//! - At-least-once delivery: a message may be delivered again while a first
//!   copy is being processed (`duplicate_rate`).
//!   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues-at-least-once-delivery.html>
//! - Retention: a message older than `MessageRetentionPeriod` (≤ 14 days) is
//!   deleted by SQS. <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html>
//! - At most 120,000 messages in flight; a receive beyond that gets nothing
//!   (`OverLimit`). <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html>
//! - Fair queues (`[queue] fair`, on by default: the functions send every
//!   message with `MessageGroupId = accountId`). A group is a noisy
//!   neighbour while either measure holds: it has more than 10 % of the
//!   queue's in-flight messages and at least 30 of its own (concurrency
//!   share), or more than 10 % of the consumers' recent processing time
//!   (processing-time share). A receive then returns quiet groups' visible
//!   messages first, and noisy groups' only to fill the batch, the noisy
//!   group with the fewest in flight first.
//!   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues-detailed.html>
//!   Our reading where the page is not exact: "in flight" is received and
//!   hidden, so a backlog deferred with `ChangeMessageVisibility` counts; a
//!   message's processing time runs from its receive to its delete or
//!   visibility change; "recent" is the last [`PROCESSING_WINDOW`]; a group
//!   is quiet again as soon as both shares drop (the page also names 5
//!   minutes without a send, not modelled).
//!
//! Every call is counted as one SQS request (the cost model).

use crate::scenario::{MAX_VISIBILITY_S, QueueCfg};
use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use shared::queue::{Attributes, QueueError, Redeliver};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Fair queues: a group is noisy with more than this share of the queue's
/// in-flight messages (1 / 10)...
const NOISY_SHARE_DIVISOR: u32 = 10;
/// ...and at least this many of its own in flight; or more than the same
/// share of the consumers' processing time over the last
/// [`PROCESSING_WINDOW`].
const NOISY_MIN_IN_FLIGHT: u32 = 30;
pub const PROCESSING_WINDOW: Duration = Duration::from_secs(60);
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

const MAX_DELAY_S: u64 = 900;
const MAX_IN_FLIGHT: usize = 120_000;
const TWELVE_HOURS: Duration = Duration::from_secs(MAX_VISIBILITY_S as u64);

/// Why a message is in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadCause {
    /// SQS's redrive: received `maxReceiveCount` times.
    Redrive,
    /// The consumer sent it there (`Redeliver::dead_letter`) with this reason.
    Consumer(String),
}

#[derive(Debug, Clone)]
pub struct Dead {
    pub body: String,
    pub cause: DeadCause,
}

/// SQS requests by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requests {
    pub receive: u64,
    pub receive_empty: u64,
    /// Of the empty ones, long polls that waited their 20 s for nothing
    /// (what an idle queue costs); the rest are a batching window's
    /// top-ups that found nothing more.
    pub long_poll_empty: u64,
    pub delete: u64,
    pub change_visibility: u64,
    pub send: u64,
}

impl Requests {
    pub fn total(&self) -> u64 {
        self.receive + self.delete + self.change_visibility + self.send
    }
}

/// The approximate counts `GetQueueAttributes` gives ([`SimQueue::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub visible: u64,
    pub not_visible: u64,
    pub delayed: u64,
}

/// Things SQS refused or did that a report should show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refusals {
    /// Deletes with a receipt handle that was no longer the newest.
    pub stale_deletes: u64,
    /// Visibility changes refused (stale handle, out of range, or past 12 h).
    pub visibility_refused: u64,
    /// Of which: past 12 hours since the receive.
    pub visibility_past_12h: u64,
    /// Receives that found 120,000 messages in flight.
    pub over_limit: u64,
    /// Sends refused (DelaySeconds over 900).
    pub send_refused: u64,
}

struct Msg {
    sqs_id: String,
    body: String,
    attrs: Attributes,
    sent_at: Instant,
    visible_at: Instant,
    receive_count: u32,
    /// Which receive the newest receipt handle belongs to (0: none yet).
    receipt: u32,
    received_at: Option<Instant>,
    /// `MessageGroupId` (the body's `accountId`, as `shared::queue` sets
    /// it), as an index into `State::groups`.
    group: Option<usize>,
}

struct State {
    cfg: QueueCfg,
    next_seq: u64,
    msgs: BTreeMap<u64, Msg>,
    /// Every message by the time it is (or becomes) visible.
    by_time: BTreeSet<(Instant, u64)>,
    /// The visible messages by the order they were sent (`by_time`'s
    /// entries up to `swept_to`, [`State::sweep_ready`]): what a queue that
    /// ignores the group serves first, as moto does.
    ready: BTreeSet<u64>,
    swept_to: Option<(Instant, u64)>,
    dlq: Vec<Dead>,
    expired: Vec<String>,
    requests: Requests,
    refusals: Refusals,
    rng: fastrand::Rng,
    /// Received messages still hidden, by when they show again (entries
    /// whose time has passed are dropped at the next receive), with the
    /// count per group and in all: the fair queue's in-flight measure.
    in_flight: BTreeSet<(Instant, u64)>,
    total_in_flight: u32,
    /// Group ids by name, and each group's measures.
    group_ids: HashMap<Arc<str>, usize>,
    groups: Vec<GroupLoad>,
    /// Processing times of the last `PROCESSING_WINDOW`: (when it ended,
    /// group, how long), and their sum.
    processed: VecDeque<(Instant, Option<usize>, Duration)>,
    total_processing: Duration,
}

/// The queue, shared by the event source mapping and the consumer.
#[derive(Clone)]
pub struct SimQueue {
    state: Arc<Mutex<State>>,
    /// Wakes a long-polling receiver when a message is sent.
    arrived: Arc<Notify>,
}

fn refused(op: &'static str, message: impl Into<String>) -> QueueError {
    QueueError::Sqs {
        op,
        message: message.into(),
    }
}

fn receipt_handle(seq: u64, receive: u32) -> String {
    format!("{seq}:{receive}")
}

fn parse_handle(h: &str) -> Option<(u64, u32)> {
    let (a, b) = h.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The `accountId` of a queue body: its `MessageGroupId`.
fn group_of(body: &str) -> Option<Arc<str>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("accountId")?.as_str().map(Arc::from)
}

/// A message group's share of the queue, as fair queues measure it.
#[derive(Debug, Clone, Copy, Default)]
struct GroupLoad {
    in_flight: u32,
    processing: Duration,
}

impl State {
    /// The group id of `name`, made on first use.
    fn group_id(&mut self, name: Arc<str>) -> usize {
        if let Some(&id) = self.group_ids.get(&name) {
            return id;
        }
        let id = self.groups.len();
        self.groups.push(GroupLoad::default());
        self.group_ids.insert(name, id);
        id
    }

    /// Receives the visible message `seq` (at `t` in `by_time`): expired
    /// past retention or redriven past `maxReceiveCount` instead (`None`),
    /// else hidden for the visibility timeout, or left visible when SQS
    /// delivers it twice (`true`: a duplicate).
    fn take(&mut self, t: Instant, seq: u64, now: Instant) -> Option<(SqsMessage, bool)> {
        self.unshow(t, seq);
        let cfg = self.cfg;
        let m = self.msgs.get(&seq)?;
        if now.saturating_duration_since(m.sent_at) >= Duration::from_secs(cfg.retention_s) {
            if let Some(m) = self.remove(seq) {
                self.expired.push(m.body);
            }
            return None;
        }
        if m.receive_count >= cfg.max_receive_count {
            if let Some(m) = self.remove(seq) {
                self.dlq.push(Dead {
                    body: m.body,
                    cause: DeadCause::Redrive,
                });
            }
            return None;
        }
        let duplicate = cfg.duplicate_rate > 0.0 && self.rng.f64() < cfg.duplicate_rate;
        let old = self.msgs.get(&seq).map(|m| m.visible_at)?;
        self.leave_in_flight(seq, old);
        let m = self.msgs.get_mut(&seq)?;
        m.receive_count += 1;
        m.receipt += 1;
        m.received_at = Some(now);
        // A duplicate: the message stays visible, so another poller may
        // receive it while this copy is processed.
        m.visible_at = if duplicate {
            now
        } else {
            now + Duration::from_secs(u64::from(cfg.visibility_timeout_s))
        };
        let rec = to_record(seq, m);
        let visible_at = m.visible_at;
        self.show(visible_at, seq, now);
        self.enter_in_flight(seq, visible_at, now);
        Some((rec, duplicate))
    }

    /// Moves what became visible since the last sweep into `ready`. An
    /// entry put in `by_time` for later than the moment it is put there
    /// sorts after the last one swept; one visible at once is put in
    /// `ready` where it is made so ([`State::show`]). Entries leave both
    /// together ([`State::unshow`]).
    fn sweep_ready(&mut self, now: Instant) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let from = self.swept_to.map_or(Unbounded, Excluded);
        for &(t, seq) in self.by_time.range((from, Included((now, u64::MAX)))) {
            self.ready.insert(seq);
            self.swept_to = Some((t, seq));
        }
    }

    /// Puts `seq` in `by_time` at `t` (and in `ready` if that is not later
    /// than `now`).
    fn show(&mut self, t: Instant, seq: u64, now: Instant) {
        self.by_time.insert((t, seq));
        if t <= now {
            self.ready.insert(seq);
        }
    }

    /// Takes `seq`'s entry at `t` out of `by_time` and `ready` (the pair
    /// [`State::show`] puts in).
    fn unshow(&mut self, t: Instant, seq: u64) {
        self.by_time.remove(&(t, seq));
        self.ready.remove(&seq);
    }

    /// Removes a message from the queue (and from the in-flight count).
    fn remove(&mut self, seq: u64) -> Option<Msg> {
        let m = self.msgs.remove(&seq)?;
        self.unshow(m.visible_at, seq);
        if self.in_flight.remove(&(m.visible_at, seq)) {
            self.count_in_flight(m.group, false);
        }
        Some(m)
    }

    fn count_in_flight(&mut self, group: Option<usize>, up: bool) {
        let load = group.and_then(|g| self.groups.get_mut(g));
        if up {
            self.total_in_flight += 1;
            if let Some(l) = load {
                l.in_flight += 1;
            }
        } else {
            self.total_in_flight = self.total_in_flight.saturating_sub(1);
            if let Some(l) = load {
                l.in_flight = l.in_flight.saturating_sub(1);
            }
        }
    }

    /// A receive of `seq` ended (deleted, or hidden again by the consumer):
    /// its processing time counts for its group for `PROCESSING_WINDOW`.
    fn processed(&mut self, seq: u64, now: Instant) {
        if !self.cfg.fair {
            return;
        }
        let Some(m) = self.msgs.get(&seq) else { return };
        let Some(received) = m.received_at else {
            return;
        };
        let took = now.saturating_duration_since(received);
        let group = m.group;
        if let Some(l) = group.and_then(|g| self.groups.get_mut(g)) {
            l.processing += took;
        }
        self.total_processing += took;
        self.processed.push_back((now, group, took));
    }

    fn expire_processing(&mut self, now: Instant) {
        while let Some(&(at, group, took)) = self.processed.front() {
            if now.saturating_duration_since(at) < PROCESSING_WINDOW {
                break;
            }
            self.processed.pop_front();
            self.total_processing = self.total_processing.saturating_sub(took);
            if let Some(l) = group.and_then(|g| self.groups.get_mut(g)) {
                l.processing = l.processing.saturating_sub(took);
            }
        }
    }

    /// A received message hidden until `until` is in flight: fair queues'
    /// measure of a group, and SQS's limit on in-flight messages.
    fn enter_in_flight(&mut self, seq: u64, until: Instant, now: Instant) {
        if until <= now || !self.in_flight.insert((until, seq)) {
            return;
        }
        let group = self.msgs.get(&seq).and_then(|m| m.group);
        self.count_in_flight(group, true);
    }

    fn leave_in_flight(&mut self, seq: u64, until: Instant) {
        if !self.in_flight.remove(&(until, seq)) {
            return;
        }
        let group = self.msgs.get(&seq).and_then(|m| m.group);
        self.count_in_flight(group, false);
    }

    /// Messages whose visibility ran out are no longer in flight.
    fn expire_in_flight(&mut self, now: Instant) {
        while let Some(&(t, seq)) = self.in_flight.first() {
            if t > now {
                break;
            }
            self.leave_in_flight(seq, t);
        }
    }

    /// Whether group `g` is noisy now, with its in-flight count (the order
    /// among noisy groups).
    fn noisy(&self, g: usize) -> Option<u32> {
        let l = self.groups.get(g)?;
        let by_concurrency = l.in_flight >= NOISY_MIN_IN_FLIGHT
            && l.in_flight * NOISY_SHARE_DIVISOR > self.total_in_flight;
        let total_t = self.total_processing.as_nanos();
        let by_time =
            total_t > 0 && l.processing.as_nanos() * u128::from(NOISY_SHARE_DIVISOR) > total_t;
        (by_concurrency || by_time).then_some(l.in_flight)
    }

    /// The visible messages a fair receive of `max` takes, in order: quiet
    /// groups' oldest first, then noisy groups' (fewest in flight first)
    /// to fill the batch.
    fn fair_order(&self, now: Instant, max: usize) -> Vec<(Instant, u64)> {
        let mut quiet = Vec::with_capacity(max);
        // (in flight of its group, position, key): the best `max` noisy ones.
        let mut noisy: Vec<(u32, usize, (Instant, u64))> = Vec::new();
        for (pos, &(t, seq)) in self.by_time.iter().enumerate() {
            if t > now || quiet.len() == max {
                break;
            }
            let group = self.msgs.get(&seq).and_then(|m| m.group);
            match group.and_then(|g| self.noisy(g)) {
                None => quiet.push((t, seq)),
                Some(n) => {
                    if noisy.len() < max || noisy.last().is_some_and(|l| (n, pos) < (l.0, l.1)) {
                        let at = noisy.partition_point(|x| (x.0, x.1) < (n, pos));
                        noisy.insert(at, (n, pos, (t, seq)));
                        noisy.truncate(max);
                    }
                }
            }
        }
        quiet.extend(noisy.into_iter().map(|(_, _, k)| k));
        quiet
    }
}

impl SimQueue {
    pub fn new(cfg: QueueCfg, seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                cfg,
                next_seq: 0,
                msgs: BTreeMap::new(),
                by_time: BTreeSet::new(),
                ready: BTreeSet::new(),
                swept_to: None,
                dlq: Vec::new(),
                expired: Vec::new(),
                requests: Requests::default(),
                refusals: Refusals::default(),
                rng: fastrand::Rng::with_seed(seed),
                in_flight: BTreeSet::new(),
                total_in_flight: 0,
                group_ids: HashMap::new(),
                groups: Vec::new(),
                processed: VecDeque::new(),
                total_processing: Duration::ZERO,
            })),
            arrived: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify(&self) -> &Notify {
        &self.arrived
    }

    /// `SendMessage`.
    pub fn send(&self, body: String, attrs: Attributes, delay: Duration) -> Result<(), QueueError> {
        self.send_entry(body, attrs, delay, true)
    }

    /// One message of a `SendMessageBatch`: `first` counts the request
    /// (one for up to ten entries).
    pub fn send_entry(
        &self,
        body: String,
        attrs: Attributes,
        delay: Duration,
        first: bool,
    ) -> Result<(), QueueError> {
        let mut s = self.lock();
        if first {
            s.requests.send += 1;
        }
        if delay > Duration::from_secs(MAX_DELAY_S) {
            s.refusals.send_refused += 1;
            return Err(refused("SendMessage", "DelaySeconds must be 0-900"));
        }
        let now = Instant::now();
        let seq = s.next_seq;
        s.next_seq += 1;
        let visible_at = now + Duration::from_secs(delay.as_secs());
        let group = if s.cfg.fair {
            group_of(&body).map(|g| s.group_id(g))
        } else {
            None
        };
        s.msgs.insert(
            seq,
            Msg {
                sqs_id: format!("sqs-{seq:012}"),
                body,
                attrs,
                sent_at: now,
                visible_at,
                receive_count: 0,
                receipt: 0,
                received_at: None,
                group,
            },
        );
        s.show(visible_at, seq, now);
        drop(s);
        self.arrived.notify_one();
        Ok(())
    }

    /// `ReceiveMessage` of up to `max` visible messages, oldest visible
    /// first (with fair queues: quiet groups' first).
    /// One request, counted (and counted empty if nothing came).
    pub fn receive(&self, max: usize) -> Vec<SqsMessage> {
        let out = self.take_visible(max);
        self.count_receive(out.is_empty());
        out
    }

    /// Counts one `ReceiveMessage` request (billed whether or not it
    /// returned messages).
    pub fn count_receive(&self, empty: bool) {
        let mut s = self.lock();
        s.requests.receive += 1;
        if empty {
            s.requests.receive_empty += 1;
        }
    }

    /// Counts one long-polling `ReceiveMessage` (see [`count_receive`](Self::count_receive)).
    pub fn count_long_poll(&self, empty: bool) {
        self.count_receive(empty);
        if empty {
            self.lock().requests.long_poll_empty += 1;
        }
    }

    /// What a `ReceiveMessage` request returns now, without counting the
    /// request: a long poll asks this again each time a message may have
    /// become visible, and is still one request
    /// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html>:
    /// it returns as soon as a message is available, or empty when the wait
    /// time expires). [`receive`](Self::receive) counts one.
    pub fn take_visible(&self, max: usize) -> Vec<SqsMessage> {
        let now = Instant::now();
        let mut s = self.lock();
        // Received and still hidden (kept as it changes: counting the
        // messages at each receive made a 150,000-message backlog take
        // 15 minutes to simulate).
        s.expire_in_flight(now);
        if s.total_in_flight as usize >= MAX_IN_FLIGHT {
            s.refusals.over_limit += 1;
            return Vec::new();
        }
        let mut out = Vec::new();
        if s.cfg.fair {
            s.expire_processing(now);
            for (t, seq) in s.fair_order(now, max) {
                if out.len() == max {
                    break;
                }
                if let Some((rec, duplicate)) = s.take(t, seq, now) {
                    out.push(rec);
                    if duplicate {
                        break;
                    }
                }
            }
        } else {
            // moto serves the visible messages in the order they were sent
            // (its queue is one list, and a visibility change leaves a
            // message in its place): one hidden and visible again comes
            // before newer ones, whenever it became visible. A fresh copy
            // (a re-enqueue) is a new message, at the end.
            s.sweep_ready(now);
            while out.len() < max {
                let Some(&seq) = s.ready.first() else {
                    break;
                };
                let Some(t) = s.msgs.get(&seq).map(|m| m.visible_at) else {
                    s.ready.remove(&seq);
                    continue;
                };
                if let Some((rec, duplicate)) = s.take(t, seq, now) {
                    out.push(rec);
                    if duplicate {
                        break; // the same message must not come twice in one batch
                    }
                }
            }
        }
        out
    }

    /// `DeleteMessageBatch` (one request).
    pub fn delete_batch(&self, handles: &[String]) {
        if handles.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        s.requests.delete += 1;
        for h in handles {
            let current =
                parse_handle(h).filter(|(seq, r)| s.msgs.get(seq).is_some_and(|m| m.receipt == *r));
            match current {
                Some((seq, _)) => {
                    s.processed(seq, now);
                    s.remove(seq);
                }
                None => s.refusals.stale_deletes += 1,
            }
        }
    }

    /// `ChangeMessageVisibility`.
    pub fn change_visibility(&self, handle: &str, wait: Duration) -> Result<(), QueueError> {
        self.lock().requests.change_visibility += 1;
        self.set_visibility(handle, wait)
    }

    /// `ChangeMessageVisibilityBatch` (one request, up to ten entries, each
    /// succeeding or failing on its own as `ChangeMessageVisibility` would):
    /// how many failed.
    pub fn change_visibility_batch(&self, entries: &[(String, Duration)]) -> usize {
        self.lock().requests.change_visibility += 1;
        entries
            .iter()
            .filter(|(h, w)| self.set_visibility(h, *w).is_err())
            .count()
    }

    /// One entry's visibility change, not counted as a request.
    fn set_visibility(&self, handle: &str, wait: Duration) -> Result<(), QueueError> {
        let now = Instant::now();
        let mut s = self.lock();
        let op = "ChangeMessageVisibility";
        let secs = wait.as_secs();
        let found = parse_handle(handle).and_then(|(seq, r)| {
            let m = s.msgs.get(&seq)?;
            (m.receipt == r && m.visible_at > now).then_some((seq, m.visible_at, m.received_at))
        });
        let Some((seq, old, received_at)) = found else {
            s.refusals.visibility_refused += 1;
            return Err(refused(
                op,
                "message not in flight or receipt handle is not the newest",
            ));
        };
        if secs > u64::from(MAX_VISIBILITY_S) {
            s.refusals.visibility_refused += 1;
            return Err(refused(op, "VisibilityTimeout must be 0-43200"));
        }
        let new = now + Duration::from_secs(secs);
        if received_at.is_some_and(|r| new > r + TWELVE_HOURS) {
            s.refusals.visibility_refused += 1;
            s.refusals.visibility_past_12h += 1;
            return Err(refused(
                op,
                "total visibility would pass 12 hours since the receive",
            ));
        }
        s.processed(seq, now);
        s.unshow(old, seq);
        s.show(new, seq, now);
        s.leave_in_flight(seq, old);
        if let Some(m) = s.msgs.get_mut(&seq) {
            m.visible_at = new;
        }
        s.enter_in_flight(seq, new, now);
        Ok(())
    }

    /// When the next message becomes visible, if any is waiting.
    pub fn next_visible(&self) -> Option<Instant> {
        self.lock().by_time.first().map(|(t, _)| *t)
    }

    /// What `GetQueueAttributes` reports now: `ApproximateNumberOfMessages`
    /// (visible), `…NotVisible` (in flight: received, hidden) and `…Delayed`
    /// (sent with `DelaySeconds`, not visible yet, never received).
    /// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_GetQueueAttributes.html>
    pub fn counts(&self) -> Counts {
        let now = Instant::now();
        let s = self.lock();
        let mut c = Counts::default();
        for m in s.msgs.values() {
            if m.visible_at <= now {
                c.visible += 1;
            } else if m.receipt > 0 {
                c.not_visible += 1;
            } else {
                c.delayed += 1;
            }
        }
        c
    }

    /// Messages still in the queue (visible, delayed or in flight).
    pub fn len(&self) -> usize {
        self.lock().msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bodies still in the queue.
    pub fn remaining_bodies(&self) -> Vec<String> {
        self.lock().msgs.values().map(|m| m.body.clone()).collect()
    }

    pub fn dlq(&self) -> Vec<Dead> {
        self.lock().dlq.clone()
    }

    pub fn expired(&self) -> Vec<String> {
        self.lock().expired.clone()
    }

    pub fn requests(&self) -> Requests {
        self.lock().requests
    }

    pub fn refusals(&self) -> Refusals {
        self.lock().refusals
    }
}

fn to_record(seq: u64, m: &Msg) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(m.sqs_id.clone());
    r.receipt_handle = Some(receipt_handle(seq, m.receipt));
    r.body = Some(m.body.clone());
    let mut attributes = HashMap::new();
    attributes.insert(
        "ApproximateReceiveCount".to_owned(),
        m.receive_count.to_string(),
    );
    r.attributes = attributes;
    r.message_attributes = m
        .attrs
        .iter()
        .map(|(k, v)| {
            let mut a = SqsMessageAttribute::default();
            a.string_value = v.string_value().map(str::to_owned);
            a.data_type = Some(v.data_type().to_owned());
            (k.clone(), a)
        })
        .collect();
    r
}

impl Redeliver for SimQueue {
    async fn defer_batch(&self, entries: &[(String, Duration)]) -> Result<usize, QueueError> {
        Ok(self.change_visibility_batch(entries))
    }

    async fn dead_letter(
        &self,
        body: &str,
        _attributes: Attributes,
        reason: &str,
    ) -> Result<(), QueueError> {
        let mut s = self.lock();
        s.requests.send += 1;
        s.dlq.push(Dead {
            body: body.to_owned(),
            cause: DeadCause::Consumer(reason.to_owned()),
        });
        Ok(())
    }

    async fn requeue(
        &self,
        body: &str,
        attributes: Attributes,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.send(body.to_owned(), attributes, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QueueCfg {
        QueueCfg {
            visibility_timeout_s: 30,
            max_receive_count: 2,
            ..QueueCfg::default()
        }
    }

    fn handle(r: &SqsMessage) -> String {
        r.receipt_handle.clone().unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_receipt_handle_neither_deletes_nor_defers() {
        let q = SimQueue::new(cfg(), 1);
        q.send("a".into(), Attributes::new(), Duration::ZERO)
            .unwrap();
        let first = q.receive(10);
        assert_eq!(first.len(), 1);
        tokio::time::sleep(Duration::from_secs(31)).await;
        let second = q.receive(10);
        assert_eq!(second[0].attributes["ApproximateReceiveCount"], "2");
        assert!(
            q.change_visibility(&handle(&first[0]), Duration::from_secs(5))
                .is_err()
        );
        q.delete_batch(&[handle(&first[0])]);
        assert_eq!(q.len(), 1, "the old handle deleted nothing");
        q.delete_batch(&[handle(&second[0])]);
        assert!(q.is_empty());
        assert_eq!(q.refusals().stale_deletes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn redrive_after_max_receive_count_and_the_12_hour_cap() {
        let q = SimQueue::new(cfg(), 1);
        q.send("a".into(), Attributes::new(), Duration::ZERO)
            .unwrap();
        let r = q.receive(10);
        // 12 h from the receive is allowed, a second later is not.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(q.change_visibility(&handle(&r[0]), TWELVE_HOURS).is_err());
        assert!(
            q.change_visibility(&handle(&r[0]), TWELVE_HOURS - Duration::from_secs(1))
                .is_ok()
        );
        assert_eq!(q.refusals().visibility_past_12h, 1);
        tokio::time::sleep(TWELVE_HOURS).await;
        assert_eq!(q.receive(10).len(), 1); // second receive
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(q.receive(10).is_empty(), "third receive redrives");
        assert_eq!(q.dlq().len(), 1);
        assert_eq!(q.dlq()[0].cause, DeadCause::Redrive);
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_capped_at_900_seconds() {
        let q = SimQueue::new(cfg(), 1);
        assert!(
            q.send("a".into(), Attributes::new(), Duration::from_secs(901))
                .is_err()
        );
        q.send("a".into(), Attributes::new(), Duration::from_secs(900))
            .unwrap();
        assert!(q.receive(10).is_empty());
        tokio::time::sleep(Duration::from_secs(900)).await;
        assert_eq!(q.receive(10).len(), 1);
    }

    /// SQS stops handing out messages at 120,000 in flight (received and
    /// still hidden); deleting one, or a visibility running out, makes room.
    #[tokio::test(start_paused = true)]
    async fn receives_stop_at_the_in_flight_limit_and_resume_as_messages_leave_it() {
        for fair in [false, true] {
            let q = SimQueue::new(QueueCfg { fair, ..cfg() }, 1);
            for _ in 0..=MAX_IN_FLIGHT {
                q.send("a".into(), Attributes::new(), Duration::ZERO)
                    .unwrap();
            }
            let mut held = Vec::new();
            while held.len() < MAX_IN_FLIGHT {
                let got = q.receive(10);
                assert!(!got.is_empty(), "fair {fair}: stopped at {}", held.len());
                held.extend(got);
            }
            assert!(q.receive(10).is_empty(), "fair {fair}: over the limit");
            assert_eq!(q.refusals().over_limit, 1);
            q.delete_batch(&[handle(&held[0])]);
            assert_eq!(q.receive(10).len(), 1, "fair {fair}: the last one");
            tokio::time::sleep(Duration::from_secs(31)).await;
            assert_eq!(q.receive(10).len(), 10, "fair {fair}: visible again");
        }
    }

    fn body(account: &str) -> String {
        format!(r#"{{"accountId":"{account}"}}"#)
    }

    fn accounts_of(rs: &[SqsMessage]) -> Vec<String> {
        rs.iter()
            .map(|r| {
                let b = r.body.as_deref().unwrap_or_default();
                group_of(b).map(|g| g.to_string()).unwrap_or_default()
            })
            .collect()
    }

    /// 40 of one group in flight (deferred), 20 more of it visible, then one
    /// quiet message: a fair receive returns the quiet one first; a queue
    /// that ignores the group (moto) returns the oldest.
    #[tokio::test(start_paused = true)]
    async fn a_fair_queue_serves_a_quiet_group_ahead_of_a_noisy_one() {
        for fair in [true, false] {
            let q = SimQueue::new(QueueCfg { fair, ..cfg() }, 1);
            for _ in 0..60 {
                q.send(body("noisy"), Attributes::new(), Duration::ZERO)
                    .unwrap();
            }
            let mut held = Vec::new();
            for _ in 0..4 {
                held.extend(q.receive(10));
            }
            for r in &held {
                q.change_visibility(&handle(r), Duration::from_secs(600))
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            q.send(body("quiet"), Attributes::new(), Duration::ZERO)
                .unwrap();
            let got = accounts_of(&q.receive(10));
            assert_eq!(got.len(), 10);
            if fair {
                assert_eq!(got[0], "quiet", "fair: the quiet group first");
            } else {
                assert!(got.iter().all(|a| a == "noisy"), "unfair: oldest first");
            }
        }
    }

    /// A queue that ignores the group serves as moto does: the visible
    /// messages in the order they were sent, so one hidden and visible again
    /// comes before newer ones (checked on moto 5.2.5: send A, B, C; receive
    /// one, A, hidden 1 s; 1.5 s later a receive of one returns A again).
    #[tokio::test(start_paused = true)]
    async fn an_unfair_queue_serves_in_send_order_whatever_the_visibility_history() {
        let q = SimQueue::new(
            QueueCfg {
                fair: false,
                ..cfg()
            },
            1,
        );
        for a in ["a", "b", "c"] {
            q.send(body(a), Attributes::new(), Duration::ZERO).unwrap();
        }
        let first = q.receive(1);
        assert_eq!(accounts_of(&first), vec!["a"]);
        q.change_visibility(&handle(&first[0]), Duration::from_secs(1))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(accounts_of(&q.receive(1)), vec!["a"], "a before b");
        assert_eq!(accounts_of(&q.receive(2)), vec!["b", "c"]);
    }

    /// Under 30 in flight a group is not noisy: oldest first, fair or not.
    #[tokio::test(start_paused = true)]
    async fn a_group_with_few_in_flight_is_not_noisy() {
        let q = SimQueue::new(cfg(), 1);
        for _ in 0..39 {
            q.send(body("busy"), Attributes::new(), Duration::ZERO)
                .unwrap();
        }
        let held: Vec<SqsMessage> = (0..2).flat_map(|_| q.receive(10)).collect();
        assert_eq!(held.len(), 20);
        q.send(body("quiet"), Attributes::new(), Duration::ZERO)
            .unwrap();
        let got = accounts_of(&q.receive(10));
        assert!(got.iter().all(|a| a == "busy"), "{got:?}");
        // Deleting and visibility running out both leave the count.
        q.delete_batch(&held.iter().map(handle).collect::<Vec<_>>());
        assert_eq!(q.lock().groups[0].in_flight, 10);
        tokio::time::sleep(Duration::from_secs(31)).await;
        q.receive(0);
        assert_eq!(q.lock().total_in_flight, 0);
        assert_eq!(q.lock().groups[0].in_flight, 0);
    }

    /// Few in flight but most of the recent processing time: noisy too,
    /// until that time leaves the window.
    #[tokio::test(start_paused = true)]
    async fn a_group_taking_most_processing_time_is_noisy_for_the_window() {
        let q = SimQueue::new(cfg(), 1);
        q.send(body("slow"), Attributes::new(), Duration::ZERO)
            .unwrap();
        let r = q.receive(10);
        tokio::time::sleep(Duration::from_secs(10)).await;
        q.delete_batch(&[handle(&r[0])]);
        for _ in 0..5 {
            q.send(body("slow"), Attributes::new(), Duration::ZERO)
                .unwrap();
        }
        q.send(body("quiet"), Attributes::new(), Duration::ZERO)
            .unwrap();
        let got = accounts_of(&q.receive(2));
        assert_eq!(got, ["quiet", "slow"]);
        // Past the window the slow group is quiet again: oldest first.
        tokio::time::sleep(PROCESSING_WINDOW).await;
        q.send(body("quiet"), Attributes::new(), Duration::ZERO)
            .unwrap();
        let got = accounts_of(&q.receive(1));
        assert_eq!(got, ["slow"]);
    }
}
