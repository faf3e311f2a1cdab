//! Delivery policy: what the consumer does next, as pure functions.
//!
//! Every rule of the consumer's walk from a received record to its fate has
//! a name here and a table test below; `consumer::process` only performs what
//! these functions decide (I/O, logs, metrics). Nothing here reads a clock,
//! a random generator or the network: time left, attempt counts and the
//! jitter sample come in as arguments, so the simulation and the tests can
//! replay any decision exactly.
//!
//! The walk, and the rule for each step:
//! 1. A record starts only with enough invocation time left: [`record_fits`].
//! 2. A message another delivery holds waits out the holder's lease:
//!    [`held_claim_wait`]. Redis unreachable: [`UNAVAILABLE_DEFER`].
//! 3. The upstream's circuit open: wait, no token, no attempt.
//! 4. A scheduled message is not due before its `sendAt`: [`due_step`]
//!    (go on, wait here, or hide it again until then: no token, no attempt,
//!    the same chained hiding as a slot). Its first delay at enqueue:
//!    [`enqueue_delay`].
//!    A message given a slot earlier keeps it: [`slot_step`] (ask as its
//!    holder, or hide it again until the slot if it came back early).
//! 5. The limiter's answer: [`after_limiter`] (send, wait in process, defer,
//!    or take a new slot when a holder's token is gone).
//! 6. The upstream's answer: [`after_call`] (sent, pause, retry, dead,
//!    failed) and what the breaker learns from it: [`breaker_report`].
//! 7. A deferral: hidden until its slot, a quarter second ahead
//!    ([`slot_hide`]; [`visibility`], at most
//!    [`MAX_DEFER_VISIBILITY`] at a time), or replaced by a
//!    fresh copy before SQS would dead-letter it for its receive count
//!    ([`reenqueue_before_dlq`], [`reenqueue_delay`]).
//! 8. A `sent` status Redis would not take: tried again after
//!    [`SENT_WRITE_PAUSES`] while [`sent_write_fits`], then recorded by a copy.

use super::Outcome;
use crate::config::DeferralStrategy;
use crate::limiter::Decision;
use crate::queue::{MAX_DELAY, MAX_VISIBILITY};
use crate::store::SlotChange;
use std::time::Duration;
use time::OffsetDateTime;

/// How long a deferral waits while delivery is switched off
/// (`RATE_LIMITER_ENABLED=false`).
pub const PAUSED_DEFER: Duration = Duration::from_secs(60);
/// How long a record waits when Redis cannot be reached: fail closed, look
/// again soon.
pub const UNAVAILABLE_DEFER: Duration = Duration::from_secs(5);
/// A message another delivery holds comes back this long after the holder's
/// lease ends, so the holder's release (or expiry) is over by then.
pub const HELD_CLAIM_GRACE: Duration = Duration::from_secs(1);
/// At most this many waits for a token inside one record's handling; then
/// the message is deferred through SQS (the invocation is not held longer).
pub const MAX_IN_PROCESS_WAITS: u32 = 3;
/// How late a message deferred through the queue may come back after its
/// slot, besides the trigger's batching window ([`queue_lateness`]): its
/// visibility is rounded up to a whole second (< 1 s) and a receive lies
/// between.
pub const QUEUE_LATENESS_MARGIN: Duration = Duration::from_secs(2);

/// How late a deferred message may come back after its slot with the
/// trigger's `batching_window` (`BATCHING_WINDOW_SECONDS`; the template's
/// 1 s gives 3 s). A newcomer whose bucket keeps a token this long for a
/// late holder ([`Decision::Throttled`]'s `slack`) is deferred even when its
/// slot is close enough to wait for in process: it frees the invocation for
/// the other records and costs no budget. With less slack (a small burst or
/// a fast rate: 600/min with a burst of 10 keeps 0.8 s) it waits here, or
/// the account would fall behind its curve.
pub fn queue_lateness(batching_window: Duration) -> Duration {
    batching_window.saturating_add(QUEUE_LATENESS_MARGIN)
}
/// A wait is done in process only if this many times it still fits in the
/// invocation's time left (the call after the wait must fit too).
pub const IN_PROCESS_WAIT_HEADROOM: u32 = 2;
/// The pauses before each try to write a `sent` status. The first write
/// after a Redis restart fails while the client reconnects; two more tries
/// within a second cover a failover.
pub const SENT_WRITE_PAUSES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(200),
    Duration::from_millis(800),
];
/// One `sent` write's worst case: the Redis client's 2 s response timeout
/// and a margin. A try starts only if it can end before the deadline: a
/// function killed at its timeout would have the message delivered again.
pub const SENT_WRITE_BUDGET: Duration = Duration::from_millis(2500);
/// A waiting message is replaced by a fresh copy (receive count 0) once its
/// receive count comes within this many of the queue's `maxReceiveCount`:
/// waiting must never dead-letter it.
pub const REENQUEUE_MARGIN: u32 = 2;
/// Backoff after a transient failure: up to `BACKOFF_BASE × 2^(attempt-1)`...
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// ... never more than this ...
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// ... and never less than this (SQS visibility counts whole seconds).
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(1);
/// The longest visibility a deferral asks for. SQS counts a message's 12
/// hours from its receive and refuses a change past them ("the maximum is 12
/// hours from the time the message was first received", ChangeMessageVisibility
/// in the SQS API reference); the consumer only knows when it asks, and the
/// trigger's batching window (at most 5 minutes) and the function's run (at
/// most 15) lie between. A longer wait is chained: the message comes back
/// early, finds its slot ([`slot_step`]) and is hidden again.
pub const MAX_DEFER_VISIBILITY: Duration = Duration::from_secs(MAX_VISIBILITY.as_secs() - 20 * 60);
/// Why a message waits (logged with each deferral that records `deferred`;
/// a record hidden only for a moment, while Redis does not answer or another
/// delivery holds its claim, logs its own line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferReason {
    /// `RATE_LIMITER_ENABLED=false`.
    DeliveryPaused,
    /// The upstream's circuit breaker is open.
    CircuitOpen,
    /// The account's bucket is empty: the message waits for its slot.
    RateLimited,
    /// The upstream asked the account to wait (an earlier 429).
    AccountPaused,
    /// This call was answered 429.
    Upstream429,
    /// A transient failure, retried after a backoff.
    Retrying,
}

impl DeferReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeferReason::DeliveryPaused => "delivery paused (RATE_LIMITER_ENABLED=false)",
            DeferReason::CircuitOpen => "upstream circuit open",
            DeferReason::RateLimited => "rate limited",
            DeferReason::AccountPaused => "account paused by the upstream's Retry-After",
            DeferReason::Upstream429 => "upstream answered 429",
            DeferReason::Retrying => "retrying after a transient failure",
        }
    }
}

/// Whether a record may start with `time_left` in the invocation: one
/// upstream call at its timeout (and the Redis/SQS calls around it) must fit.
pub fn record_fits(time_left: Duration, record_budget: Duration) -> bool {
    time_left >= record_budget
}

/// How long a message waits when another delivery holds its claim for `left`.
pub fn held_claim_wait(left: Duration) -> Duration {
    left + HELD_CLAIM_GRACE
}

/// What to do after the limiter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStep {
    /// A token was taken: call the upstream.
    Send,
    /// Wait this long in process, then ask again.
    WaitHere(Duration),
    /// Hide the message until its slot.
    Defer(Duration, DeferReason),
    /// The naive baseline: report a batch item failure and let the queue's
    /// visibility timeout bring the message back (benchmark only).
    LeaveToQueue,
    /// The message came back to its slot and its token is not there (a
    /// higher class took it): ask again without the slot, for a new one
    /// behind the slots ahead.
    NewSlot,
}

/// Where a message stands with respect to the slot an earlier denial gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStep {
    /// Ask the limiter; `held`: as the holder of a slot that has come.
    Ask { held: bool },
    /// The slot is this close: wait for it here, then ask as its holder.
    WaitThenAsk(Duration),
    /// Back before its slot (a visibility chained past 12 hours, a crash, a
    /// duplicate delivery, a fresh copy): hidden again until the slot, no
    /// token taken.
    Early(Duration),
}

/// What a message does about its slot, `until_slot` away (zero once it has
/// come; `None` without one).
pub fn slot_step(
    until_slot: Option<Duration>,
    in_process_wait: Duration,
    time_left: Duration,
) -> SlotStep {
    match until_slot {
        None => SlotStep::Ask { held: false },
        Some(w) if w.is_zero() => SlotStep::Ask { held: true },
        Some(w)
            if w <= in_process_wait && w.saturating_mul(IN_PROCESS_WAIT_HEADROOM) < time_left =>
        {
            SlotStep::WaitThenAsk(w)
        }
        Some(w) => SlotStep::Early(w),
    }
}

/// Where a message stands with respect to its `sendAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueStep {
    /// Due (or not scheduled): on to its slot and the limiter.
    Due,
    /// Due this soon: wait for it here, then go on.
    WaitThenGo(Duration),
    /// Not due yet: hidden this long (whole seconds, see [`due_hide`]) and
    /// back then; no token taken, no attempt counted, still `scheduled`.
    NotYet(Duration),
}

/// What a scheduled message does, `until_due` before its `sendAt` (zero
/// once due; `None` if it has none). The same shape as [`slot_step`]: a
/// `sendAt` is a slot the message holds from the start.
pub fn due_step(
    until_due: Option<Duration>,
    in_process_wait: Duration,
    time_left: Duration,
) -> DueStep {
    match until_due {
        None => DueStep::Due,
        Some(w) if w.is_zero() => DueStep::Due,
        Some(w)
            if w <= in_process_wait && w.saturating_mul(IN_PROCESS_WAIT_HEADROOM) < time_left =>
        {
            DueStep::WaitThenGo(w)
        }
        Some(w) => DueStep::NotYet(due_hide(w)),
    }
}

/// How long a message `w` before its `sendAt` is hidden: whole seconds
/// rounded *down* (at least one), so it comes back at most a second early
/// and waits the rest in process ([`due_step`]) instead of up to a second
/// late; at most [`MAX_DEFER_VISIBILITY`] (longer waits are chained).
pub fn due_hide(w: Duration) -> Duration {
    Duration::from_secs(w.as_secs().max(1)).min(MAX_DEFER_VISIBILITY)
}

/// The `DelaySeconds` a message scheduled for `send_at` is enqueued with at
/// `now`: rounded down (it may arrive up to a second early and wait in
/// process), at most SQS's 15 minutes; the consumer hides it for the rest.
pub fn enqueue_delay(send_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Duration {
    let until_due = send_at.map_or(Duration::ZERO, |t| until(t, now));
    Duration::from_secs(until_due.as_secs()).min(MAX_DELAY)
}

/// When a message was due, in microseconds since the Unix epoch, for the
/// limiter's credit (`Rate::credit`): its `sendAt` if it has one and that is
/// later than its acceptance, else its acceptance; `None` before the epoch.
pub fn due_us(created_at: OffsetDateTime, send_at: Option<OffsetDateTime>) -> Option<u64> {
    crate::clock::unix_us(send_at.map_or(created_at, |s| s.max(created_at)))
}

/// How long until a `slot`, at `now` (zero once it has come).
pub fn until(slot: OffsetDateTime, now: OffsetDateTime) -> Duration {
    (slot - now).try_into().unwrap_or(Duration::ZERO)
}

/// What a deferral for `why` does to the message's slot: a slot from the
/// limiter is kept with the status record; a message that used its token
/// (a retry, a 429) asks afresh next time; the other waits keep what it has.
pub fn slot_change(why: DeferReason, now: OffsetDateTime, wait: Duration) -> SlotChange {
    match why {
        DeferReason::RateLimited => SlotChange::Set(now + wait),
        DeferReason::Retrying | DeferReason::Upstream429 => SlotChange::Clear,
        DeferReason::DeliveryPaused | DeferReason::CircuitOpen | DeferReason::AccountPaused => {
            SlotChange::Keep
        }
    }
}

/// Whether a message asks the limiter as a slot's holder (a denial then
/// writes no slot: the exact wait for the next token) rather than as a
/// newcomer (queued behind the slots ahead). The naive baseline keeps no
/// slots, so it always asks as a plain token bucket, as a naive
/// implementation would: as a newcomer each of its retries would take a new
/// slot behind those its own earlier denials took, and nothing would ever
/// be sent again (`make bench`, 2026-12-02: 1,009 of 2,000 delivered, then
/// none for two minutes).
pub fn asks_as_holder(held_slot: bool, strategy: DeferralStrategy) -> bool {
    held_slot || strategy == DeferralStrategy::Naive
}

/// The step after a limiter `decision` for a message that asked as a slot's
/// holder (`held`) or not, given the waits already done in process for this
/// record, how late the queue may bring a deferred message back
/// ([`queue_lateness`]) and the invocation's time left.
pub fn after_limiter(
    decision: &Decision,
    held: bool,
    waits_so_far: u32,
    in_process_wait: Duration,
    queue_lateness: Duration,
    time_left: Duration,
    strategy: DeferralStrategy,
) -> TokenStep {
    let wait = decision.wait();
    let waits_here = waits_so_far < MAX_IN_PROCESS_WAITS
        && wait <= in_process_wait
        && wait.saturating_mul(IN_PROCESS_WAIT_HEADROOM) < time_left
        && needs_the_wait(decision, held, queue_lateness);
    match decision {
        Decision::Allowed { .. } => TokenStep::Send,
        Decision::Throttled { .. }
            if held && !waits_here && strategy != DeferralStrategy::Naive =>
        {
            TokenStep::NewSlot
        }
        _ if waits_here => TokenStep::WaitHere(wait),
        _ if strategy == DeferralStrategy::Naive => TokenStep::LeaveToQueue,
        Decision::Paused { .. } => TokenStep::Defer(wait, DeferReason::AccountPaused),
        Decision::Throttled { .. } => TokenStep::Defer(wait, DeferReason::RateLimited),
    }
}

/// Whether a short wait is worth holding the invocation for: always for a
/// slot's holder (its token is due now) and for a pause; for a newcomer only
/// when its bucket would overflow before the queue brought it back
/// (`queue_lateness`, [`queue_lateness`]).
pub fn needs_the_wait(decision: &Decision, held: bool, queue_lateness: Duration) -> bool {
    match decision {
        Decision::Throttled { slack, .. } if !held => *slack < queue_lateness,
        _ => true,
    }
}

/// What the breaker learns from an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerReport {
    /// The upstream answered as a healthy service does (2xx, 4xx, 429).
    Success,
    /// The upstream failed (5xx, 408, timeout, connection error).
    Failure,
    /// Says nothing about the upstream (401: our credentials).
    Neutral,
}

/// What an answer tells the circuit breaker.
pub fn breaker_report(outcome: &Outcome) -> BreakerReport {
    match outcome {
        Outcome::Transient { .. } => BreakerReport::Failure,
        Outcome::Unauthorized { .. } => BreakerReport::Neutral,
        Outcome::Sent { .. } | Outcome::RateLimited { .. } | Outcome::Permanent { .. } => {
            BreakerReport::Success
        }
    }
}

/// What to do after the upstream answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Delivered: record `sent` with this attempt count.
    Sent {
        attempts: u32,
        upstream_id: Option<String>,
    },
    /// 429: pause the account for every instance, then defer the message
    /// that long. Not an attempt.
    PauseAccount { retry_after: Duration },
    /// A permanent 4xx: `failed`, never retried.
    Fail {
        attempts: u32,
        status: u16,
        reason: String,
    },
    /// A transient failure (or a 401, after re-reading the token): try again
    /// after `wait`.
    Retry {
        attempts: u32,
        wait: Duration,
        reason: String,
        refresh_token: bool,
    },
    /// Out of attempts: to the DLQ, `dead`.
    Dead { attempts: u32, reason: String },
}

/// The plan after an upstream `outcome`, for a message that had
/// `attempts_before` real attempts. `jitter` is a uniform sample in [0, 1)
/// for the backoff.
pub fn after_call(outcome: Outcome, attempts_before: u32, max_attempts: u32, jitter: f64) -> Plan {
    let attempts = attempts_before + 1;
    let (reason, refresh_token) = match outcome {
        Outcome::Sent { upstream_id } => {
            return Plan::Sent {
                attempts,
                upstream_id,
            };
        }
        Outcome::RateLimited { retry_after } => return Plan::PauseAccount { retry_after },
        Outcome::Permanent { status, reason } => {
            return Plan::Fail {
                attempts,
                status,
                reason,
            };
        }
        Outcome::Transient { reason } => (reason, false),
        // The token may have been rotated: read it again, and count the
        // attempt (a token that stays wrong must not retry forever).
        Outcome::Unauthorized { reason } => (reason, true),
    };
    if attempts >= max_attempts {
        return Plan::Dead { attempts, reason };
    }
    Plan::Retry {
        attempts,
        wait: backoff(attempts, jitter),
        reason,
        refresh_token,
    }
}

/// Exponential backoff with full jitter, by attempt number (1-based): a
/// point `jitter` ∈ [0, 1) of the way from [`BACKOFF_FLOOR`] to
/// `BACKOFF_BASE × 2^(attempt-1)` (capped at [`BACKOFF_CAP`]).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP)
        .max(BACKOFF_FLOOR);
    let span = (ceiling - BACKOFF_FLOOR).as_millis() as f64;
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    BACKOFF_FLOOR + Duration::from_millis((span * jitter).round() as u64)
}

/// Whether a deferred message is replaced by a fresh copy instead of being
/// hidden again: its receive count is about to reach `maxReceiveCount`.
pub fn reenqueue_before_dlq(receive_count: u32, max_receive_count: u32) -> bool {
    receive_count.saturating_add(REENQUEUE_MARGIN) >= max_receive_count
}

/// The delay of a fresh copy that replaces a waiting message.
pub fn reenqueue_delay(wait: Duration) -> Duration {
    wait.min(MAX_DELAY)
}

/// How much before its slot a message deferred for a token comes back.
/// SQS hides in whole seconds, so a hide rounded up to the next second
/// brings the message back up to a second after its slot, and the
/// limiter's slots (behind the guard and the reserve) seldom fall on a
/// whole second from the decision: in the simulation nearly every deferred
/// message of a backlog came back 0.9 s after its slot (noisy-10: p50
/// 1.94 s behind the ideal, 0.94 s with this advance). A quarter of a
/// second ahead, the trigger's batching window mostly covers it; a record
/// that is handed out before its slot waits the rest in process
/// ([`slot_step`]), which costs handler time only where batches fill before
/// the window (many accounts backlogged; half a second cost backlog-500-60
/// 41 → 60 handler-ms per message, a quarter 41 → 45).
pub const SLOT_ADVANCE: Duration = Duration::from_millis(250);

/// How long a message is hidden when it waits `wait` for the slot it holds
/// (a [`DeferReason::RateLimited`] deferral, or back early,
/// [`SlotStep::Early`]): [`SLOT_ADVANCE`] less, when waits that short are
/// done in process (`in_process_wait`); otherwise, and for any other
/// deferral, `wait`. A wait is never shortened to nothing: the message
/// stays hidden at least a second ([`visibility`]) rather than coming
/// straight back.
pub fn slot_hide(wait: Duration, in_process_wait: Duration) -> Duration {
    if wait.is_zero() || in_process_wait < SLOT_ADVANCE {
        return wait;
    }
    wait.saturating_sub(SLOT_ADVANCE)
        .max(Duration::from_nanos(1))
}

/// What a deferral for `why` hides the message for ([`slot_hide`] for a
/// slot, the wait itself for the rest).
pub fn defer_hide(why: DeferReason, wait: Duration, in_process_wait: Duration) -> Duration {
    match why {
        DeferReason::RateLimited => slot_hide(wait, in_process_wait),
        _ => wait,
    }
}

/// The visibility timeout that hides a message for `wait`: rounded up to
/// whole seconds (as SQS counts), at most [`MAX_DEFER_VISIBILITY`].
pub fn visibility(wait: Duration) -> Duration {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs).min(MAX_DEFER_VISIBILITY)
}

/// Whether one more `sent` write, after `pause`, can end before the deadline.
pub fn sent_write_fits(pause: Duration, time_left: Duration) -> bool {
    time_left >= pause + SENT_WRITE_BUDGET
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeferralStrategy::{Naive, Spread};

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;
    /// The template's 1 s batching window.
    const LATE: Duration = Duration::from_secs(3);

    fn throttled(wait: Duration) -> Decision {
        throttled_with_slack(wait, Duration::ZERO)
    }

    fn throttled_with_slack(wait: Duration, slack: Duration) -> Decision {
        Decision::Throttled {
            wait,
            tokens: 0.0,
            slack,
        }
    }

    #[test]
    fn after_limiter_table() {
        let allowed = Decision::Allowed { tokens_left: 3.0 };
        let paused = Decision::Paused { wait: S(600) };
        // (decision, waits so far, in-process limit, time left, strategy) -> step
        let cases = [
            (allowed, 0, MS(1500), S(30), Spread, TokenStep::Send),
            (allowed, 3, MS(0), S(0), Naive, TokenStep::Send),
            (
                throttled(MS(900)),
                0,
                MS(1500),
                S(30),
                Spread,
                TokenStep::WaitHere(MS(900)),
            ),
            (
                throttled(MS(1500)),
                2,
                MS(1500),
                S(30),
                Spread,
                TokenStep::WaitHere(MS(1500)),
            ),
            // the fourth wait is a deferral
            (
                throttled(MS(900)),
                3,
                MS(1500),
                S(30),
                Spread,
                TokenStep::Defer(MS(900), DeferReason::RateLimited),
            ),
            // longer than the in-process limit
            (
                throttled(MS(1501)),
                0,
                MS(1500),
                S(30),
                Spread,
                TokenStep::Defer(MS(1501), DeferReason::RateLimited),
            ),
            // twice the wait must fit in the time left
            (
                throttled(S(1)),
                0,
                MS(1500),
                S(2),
                Spread,
                TokenStep::Defer(S(1), DeferReason::RateLimited),
            ),
            (
                throttled(S(1)),
                0,
                MS(1500),
                MS(2001),
                Spread,
                TokenStep::WaitHere(S(1)),
            ),
            (
                paused,
                0,
                MS(1500),
                S(30),
                Spread,
                TokenStep::Defer(S(600), DeferReason::AccountPaused),
            ),
            (
                Decision::Paused { wait: MS(500) },
                0,
                MS(1500),
                S(30),
                Spread,
                TokenStep::WaitHere(MS(500)),
            ),
            // the naive baseline leaves every wait to the queue
            (
                throttled(S(5)),
                0,
                MS(1500),
                S(30),
                Naive,
                TokenStep::LeaveToQueue,
            ),
            (paused, 0, MS(1500), S(30), Naive, TokenStep::LeaveToQueue),
            (
                throttled(MS(10)),
                0,
                MS(0),
                S(30),
                Spread,
                TokenStep::Defer(MS(10), DeferReason::RateLimited),
            ),
        ];
        for (i, (d, waits, limit, left, strategy, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                after_limiter(&d, false, waits, limit, LATE, left, strategy),
                want,
                "case {i}: {d:?}"
            );
        }
    }

    #[test]
    fn a_newcomer_waits_in_process_only_when_its_bucket_has_no_slack() {
        // (slack, held) -> step for a 900 ms wait, in-process limit 1.5 s
        let cases = [
            // 600/min, burst 10: 0.8 s of slack; the account would fall
            // behind its curve if the message went through the queue
            (MS(800), false, TokenStep::WaitHere(MS(900))),
            (MS(2999), false, TokenStep::WaitHere(MS(900))),
            // 60/min, burst 10, medium: 8 s; the queue brings it back in time
            (
                S(3),
                false,
                TokenStep::Defer(MS(900), DeferReason::RateLimited),
            ),
            (
                S(8),
                false,
                TokenStep::Defer(MS(900), DeferReason::RateLimited),
            ),
            // a holder's token is due now, whatever the slack
            (S(8), true, TokenStep::WaitHere(MS(900))),
        ];
        for (i, (slack, held, want)) in cases.into_iter().enumerate() {
            let d = throttled_with_slack(MS(900), slack);
            assert_eq!(
                after_limiter(&d, held, 0, MS(1500), LATE, S(30), Spread),
                want,
                "case {i}"
            );
        }
        // the naive baseline asks as a holder, so it is untouched
        let d = throttled_with_slack(MS(900), S(8));
        assert_eq!(
            after_limiter(
                &d,
                asks_as_holder(false, Naive),
                0,
                MS(1500),
                LATE,
                S(30),
                Naive
            ),
            TokenStep::WaitHere(MS(900))
        );
        // a longer batching window brings it back later: 8 s of slack is
        // then too little, and it waits here
        assert_eq!(queue_lateness(S(1)), LATE);
        let late = queue_lateness(S(10));
        assert_eq!(
            after_limiter(&d, false, 0, MS(1500), late, S(30), Spread),
            TokenStep::WaitHere(MS(900))
        );
        // a pause is waited out here when short, slack or not
        let paused = Decision::Paused { wait: MS(900) };
        assert!(needs_the_wait(&paused, false, LATE));
    }

    #[test]
    fn after_limiter_for_a_slots_holder() {
        // (decision, waits so far, time left) -> step, in-process limit 1.5 s
        let cases = [
            (
                Decision::Allowed { tokens_left: 0.0 },
                0,
                S(30),
                TokenStep::Send,
            ),
            // a clock a little ahead: wait for the token here
            (throttled(MS(300)), 0, S(30), TokenStep::WaitHere(MS(300))),
            // the token went to a higher class: a new slot, not a deferral
            // to "the next token", which is another holder's
            (throttled(S(6)), 0, S(30), TokenStep::NewSlot),
            (throttled(MS(300)), 3, S(30), TokenStep::NewSlot),
            (throttled(MS(300)), 0, MS(500), TokenStep::NewSlot),
            // a pause is the account's, whoever asks
            (
                Decision::Paused { wait: S(600) },
                0,
                S(30),
                TokenStep::Defer(S(600), DeferReason::AccountPaused),
            ),
        ];
        for (i, (d, waits, left, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                after_limiter(&d, true, waits, MS(1500), LATE, left, Spread),
                want,
                "case {i}: {d:?}"
            );
        }
    }

    #[test]
    fn the_naive_baseline_asks_as_a_plain_token_bucket() {
        assert!(!asks_as_holder(false, Spread));
        assert!(asks_as_holder(true, Spread));
        assert!(asks_as_holder(false, Naive));
        // asked as a holder, a denial leaves it to the queue: no new slot,
        // which would queue it behind the slots of its own earlier denials
        for d in [throttled(S(6)), throttled(MS(300))] {
            assert_eq!(
                after_limiter(&d, true, 0, MS(0), LATE, S(30), Naive),
                TokenStep::LeaveToQueue
            );
        }
        assert_eq!(
            after_limiter(&throttled(MS(300)), true, 0, MS(1500), LATE, S(30), Naive),
            TokenStep::WaitHere(MS(300))
        );
    }

    #[test]
    fn slot_step_table() {
        // (until the slot, time left) -> step, in-process limit 1.5 s
        let cases = [
            (None, S(30), SlotStep::Ask { held: false }),
            (Some(Duration::ZERO), S(30), SlotStep::Ask { held: true }),
            (Some(MS(800)), S(30), SlotStep::WaitThenAsk(MS(800))),
            (Some(MS(1500)), S(30), SlotStep::WaitThenAsk(MS(1500))),
            (Some(MS(1501)), S(30), SlotStep::Early(MS(1501))),
            // twice the wait must fit in the time left
            (Some(MS(800)), MS(1600), SlotStep::Early(MS(800))),
            // a slot 20 hours away, after 11 h 40 min of visibility
            (Some(S(20 * 3600)), S(30), SlotStep::Early(S(20 * 3600))),
        ];
        for (until_slot, left, want) in cases {
            assert_eq!(
                slot_step(until_slot, MS(1500), left),
                want,
                "{until_slot:?} {left:?}"
            );
        }
        let t = OffsetDateTime::UNIX_EPOCH + S(1000);
        assert_eq!(until(t, t - S(5)), S(5));
        assert_eq!(until(t, t + S(5)), Duration::ZERO);
    }

    #[test]
    fn due_step_table() {
        let lim = MS(1500);
        // (until sendAt, time left) -> step
        let cases = [
            (None, S(30), DueStep::Due),
            (Some(Duration::ZERO), S(30), DueStep::Due),
            (Some(MS(1)), S(30), DueStep::WaitThenGo(MS(1))),
            (Some(MS(1500)), S(30), DueStep::WaitThenGo(MS(1500))),
            // over the in-process limit: hidden whole seconds, rounded down
            (Some(MS(1501)), S(30), DueStep::NotYet(S(1))),
            (Some(MS(5900)), S(30), DueStep::NotYet(S(5))),
            // near: but the invocation has no room to wait; at least 1 s
            (Some(MS(900)), MS(1800), DueStep::NotYet(S(1))),
            (Some(S(3600)), S(30), DueStep::NotYet(S(3600))),
            // 30 days: chained in MAX_DEFER_VISIBILITY steps
            (
                Some(S(30 * 86_400)),
                S(30),
                DueStep::NotYet(MAX_DEFER_VISIBILITY),
            ),
        ];
        for (until_due, left, want) in cases {
            assert_eq!(
                due_step(until_due, lim, left),
                want,
                "{until_due:?} {left:?}"
            );
        }
    }

    #[test]
    fn due_hide_never_overshoots_the_send_at() {
        for ms in [1, 999, 1000, 1001, 61_999, 900_000, 50_000_000] {
            let w = MS(ms);
            let hide = due_hide(w);
            assert!(hide >= S(1) && hide <= MAX_DEFER_VISIBILITY, "{w:?}");
            // Back no later than a second after it is due (the 1 s floor),
            // never later for anything over a second.
            if w >= S(1) {
                assert!(hide <= w, "{w:?} -> {hide:?}");
                assert!(w - hide < S(1) || hide == MAX_DEFER_VISIBILITY, "{w:?}");
            }
        }
    }

    #[test]
    fn enqueue_delay_table() {
        let now = time::macros::datetime!(2026-12-01 10:00 UTC);
        let cases = [
            (None, Duration::ZERO),
            (Some(now - S(60)), Duration::ZERO),
            (Some(now), Duration::ZERO),
            (Some(now + MS(5_900)), S(5)),
            (Some(now + S(900)), S(900)),
            (Some(now + S(86_400)), MAX_DELAY),
        ];
        for (send_at, want) in cases {
            assert_eq!(enqueue_delay(send_at, now), want, "{send_at:?}");
        }
    }

    #[test]
    fn slot_change_table() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let cases = [
            (DeferReason::RateLimited, SlotChange::Set(now + S(6))),
            (DeferReason::Retrying, SlotChange::Clear),
            (DeferReason::Upstream429, SlotChange::Clear),
            (DeferReason::AccountPaused, SlotChange::Keep),
            (DeferReason::CircuitOpen, SlotChange::Keep),
            (DeferReason::DeliveryPaused, SlotChange::Keep),
        ];
        for (why, want) in cases {
            assert_eq!(slot_change(why, now, S(6)), want, "{why:?}");
        }
    }

    #[test]
    fn after_call_table() {
        let transient = || Outcome::Transient {
            reason: "upstream answered 503".into(),
        };
        let cases = [
            (
                Outcome::Sent {
                    upstream_id: Some("ofm_1".into()),
                },
                0,
                5,
                Plan::Sent {
                    attempts: 1,
                    upstream_id: Some("ofm_1".into()),
                },
            ),
            (
                Outcome::Sent { upstream_id: None },
                2,
                3,
                Plan::Sent {
                    attempts: 3,
                    upstream_id: None,
                },
            ),
            (
                Outcome::RateLimited { retry_after: S(7) },
                4,
                5,
                Plan::PauseAccount { retry_after: S(7) },
            ),
            (
                Outcome::Permanent {
                    status: 403,
                    reason: "blocked".into(),
                },
                0,
                5,
                Plan::Fail {
                    attempts: 1,
                    status: 403,
                    reason: "blocked".into(),
                },
            ),
            (
                transient(),
                0,
                3,
                Plan::Retry {
                    attempts: 1,
                    wait: S(1),
                    reason: "upstream answered 503".into(),
                    refresh_token: false,
                },
            ),
            (
                transient(),
                1,
                3,
                Plan::Retry {
                    attempts: 2,
                    wait: S(1),
                    reason: "upstream answered 503".into(),
                    refresh_token: false,
                },
            ),
            (
                transient(),
                2,
                3,
                Plan::Dead {
                    attempts: 3,
                    reason: "upstream answered 503".into(),
                },
            ),
            (
                transient(),
                7,
                3,
                Plan::Dead {
                    attempts: 8,
                    reason: "upstream answered 503".into(),
                },
            ),
            (
                Outcome::Unauthorized {
                    reason: "401".into(),
                },
                0,
                3,
                Plan::Retry {
                    attempts: 1,
                    wait: S(1),
                    reason: "401".into(),
                    refresh_token: true,
                },
            ),
            (
                Outcome::Unauthorized {
                    reason: "401".into(),
                },
                2,
                3,
                Plan::Dead {
                    attempts: 3,
                    reason: "401".into(),
                },
            ),
        ];
        for (i, (outcome, before, max, want)) in cases.into_iter().enumerate() {
            assert_eq!(after_call(outcome, before, max, 0.0), want, "case {i}");
        }
    }

    #[test]
    fn breaker_report_table() {
        let cases = [
            (Outcome::Sent { upstream_id: None }, BreakerReport::Success),
            (
                Outcome::RateLimited { retry_after: S(1) },
                BreakerReport::Success,
            ),
            (
                Outcome::Permanent {
                    status: 404,
                    reason: String::new(),
                },
                BreakerReport::Success,
            ),
            (
                Outcome::Transient {
                    reason: String::new(),
                },
                BreakerReport::Failure,
            ),
            (
                Outcome::Unauthorized {
                    reason: String::new(),
                },
                BreakerReport::Neutral,
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(breaker_report(&outcome), want, "{outcome:?}");
        }
    }

    #[test]
    fn backoff_table() {
        // (attempt, jitter) -> wait
        let cases = [
            (1, 0.0, S(1)),
            (1, 0.999_999, S(2)),
            (2, 1.0, S(4)),
            (3, 0.5, MS(4500)),
            (8, 1.0, S(256)),
            (9, 1.0, S(300)),
            (40, 1.0, S(300)),
            (0, 1.0, S(2)),
            (3, -1.0, S(1)),
            (3, f64::NAN, S(1)),
        ];
        for (attempt, jitter, want) in cases {
            assert_eq!(
                backoff(attempt, jitter),
                want,
                "attempt {attempt}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn backoff_jitter_spreads_over_the_whole_window() {
        // Full jitter: waits cover [1 s, ceiling], not a fixed point. Attempt
        // 3's ceiling is 8 s; attempt 10's is the 5-minute cap.
        let jitter = crate::delivery::Jitter::seeded(11);
        let third: Vec<Duration> = (0..500).map(|_| backoff(3, jitter.sample())).collect();
        assert!(third.iter().all(|w| *w >= S(1) && *w <= S(8)));
        assert!(third.iter().any(|w| *w < S(2)));
        assert!(third.iter().any(|w| *w > S(7)));
        let tenth: Vec<Duration> = (0..500).map(|_| backoff(10, jitter.sample())).collect();
        assert!(tenth.iter().any(|w| *w < S(30)));
        assert!(tenth.iter().any(|w| *w > S(270)));
    }

    #[test]
    fn reenqueue_table() {
        // (receive count, maxReceiveCount) -> replace by a fresh copy
        let cases = [
            (1, 100, false),
            (97, 100, false),
            (98, 100, true),
            (99, 100, true),
            (1, 3, true),
            (0, 1, true),
            (u32::MAX, 100, true),
        ];
        for (count, max, want) in cases {
            assert_eq!(reenqueue_before_dlq(count, max), want, "{count}/{max}");
        }
        assert_eq!(reenqueue_delay(S(3600)), MAX_DELAY);
        assert_eq!(reenqueue_delay(S(4)), S(4));
    }

    #[test]
    fn a_slot_deferral_comes_back_within_a_second_from_a_quarter_before_its_slot() {
        let ipw = MS(1500);
        // (wait, in-process limit) -> visibility, flushed at once.
        let cases = [
            (S(6), ipw, S(6)),
            // 0.1 s past a whole second: back 0.9 s early, not 0.9 s late.
            (MS(6100), ipw, S(6)),
            (MS(6250), ipw, S(6)),
            (MS(6251), ipw, S(7)),
            // Under the advance: still hidden a second, never zero.
            (MS(200), ipw, S(1)),
            (Duration::ZERO, ipw, Duration::ZERO),
            // No waiting in process: an early return would be hidden again.
            (MS(6100), MS(249), S(7)),
            (MS(6100), Duration::ZERO, S(7)),
        ];
        for (wait, limit, want) in cases {
            assert_eq!(
                visibility(slot_hide(wait, limit)),
                want,
                "{wait:?} {limit:?}"
            );
        }
        for ms in (1..20_000).step_by(37) {
            let wait = MS(ms);
            let back = visibility(slot_hide(wait, ipw));
            assert!(
                back + SLOT_ADVANCE >= wait,
                "{wait:?} -> {back:?}: too early"
            );
            assert!(back < wait + S(1), "{wait:?} -> {back:?}: too late");
            // Early only by what the record waits out in process.
            if back < wait {
                assert!(matches!(
                    slot_step(Some(wait - back), ipw, S(30)),
                    SlotStep::WaitThenAsk(_)
                ));
            }
        }
        // Only a slot's wait is shortened.
        assert_eq!(
            defer_hide(DeferReason::RateLimited, MS(6100), ipw),
            MS(5850)
        );
        for why in [
            DeferReason::DeliveryPaused,
            DeferReason::CircuitOpen,
            DeferReason::AccountPaused,
            DeferReason::Upstream429,
            DeferReason::Retrying,
        ] {
            assert_eq!(defer_hide(why, MS(6100), ipw), MS(6100), "{why:?}");
        }
    }

    #[test]
    fn visibility_table() {
        let cases = [
            (MS(4200), S(5)),
            (S(5), S(5)),
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_nanos(1), S(1)),
            (S(13 * 3600), MAX_DEFER_VISIBILITY),
            (MAX_VISIBILITY, S(11 * 3600 + 40 * 60)),
        ];
        for (wait, want) in cases {
            assert_eq!(visibility(wait), want, "{wait:?}");
        }
    }

    #[test]
    fn time_budget_rules() {
        assert!(record_fits(S(11), S(11)));
        assert!(!record_fits(MS(10_999), S(11)));
        assert!(sent_write_fits(Duration::ZERO, MS(2500)));
        assert!(!sent_write_fits(MS(800), MS(3299)));
        assert!(sent_write_fits(MS(800), MS(3300)));
        assert_eq!(held_claim_wait(S(3)), S(4));
    }
}
