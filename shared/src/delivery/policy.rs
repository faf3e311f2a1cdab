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
//! 4. The limiter's answer: [`after_limiter`] (send, wait in process, defer).
//! 5. The upstream's answer: [`after_call`] (sent, pause, retry, dead,
//!    failed) and what the breaker learns from it: [`breaker_report`].
//! 6. A deferral: hidden until its slot ([`visibility`]), or replaced by a
//!    fresh copy before SQS would dead-letter it for its receive count
//!    ([`reenqueue_before_dlq`], [`reenqueue_delay`]).
//! 7. A `sent` status Redis would not take: tried again after
//!    [`SENT_WRITE_PAUSES`] while [`sent_write_fits`], then recorded by a copy.

use super::Outcome;
use crate::config::DeferralStrategy;
use crate::limiter::Decision;
use crate::queue::{MAX_DELAY, MAX_VISIBILITY};
use std::time::Duration;

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
}

/// The step after a limiter `decision`, given the waits already done in
/// process for this record and the invocation's time left.
pub fn after_limiter(
    decision: &Decision,
    waits_so_far: u32,
    in_process_wait: Duration,
    time_left: Duration,
    strategy: DeferralStrategy,
) -> TokenStep {
    let wait = decision.wait();
    match decision {
        Decision::Allowed { .. } => TokenStep::Send,
        _ if waits_so_far < MAX_IN_PROCESS_WAITS
            && wait <= in_process_wait
            && wait.saturating_mul(IN_PROCESS_WAIT_HEADROOM) < time_left =>
        {
            TokenStep::WaitHere(wait)
        }
        _ if strategy == DeferralStrategy::Naive => TokenStep::LeaveToQueue,
        Decision::Paused { .. } => TokenStep::Defer(wait, DeferReason::AccountPaused),
        Decision::Throttled { .. } => TokenStep::Defer(wait, DeferReason::RateLimited),
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

/// The visibility timeout that hides a message for `wait`: rounded up to
/// whole seconds (as SQS counts), at most 12 hours.
pub fn visibility(wait: Duration) -> Duration {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(secs).min(MAX_VISIBILITY)
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

    fn throttled(wait: Duration) -> Decision {
        Decision::Throttled { wait, tokens: 0.0 }
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
                after_limiter(&d, waits, limit, left, strategy),
                want,
                "case {i}: {d:?}"
            );
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
    fn visibility_table() {
        let cases = [
            (MS(4200), S(5)),
            (S(5), S(5)),
            (Duration::ZERO, Duration::ZERO),
            (Duration::from_nanos(1), S(1)),
            (S(13 * 3600), MAX_VISIBILITY),
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
