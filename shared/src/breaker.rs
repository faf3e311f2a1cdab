//! A circuit breaker: closed, open, half-open.
//!
//! One per warm Lambda instance, in memory. Why not shared in Redis: the
//! breakers guard SQS (producer) and the OnlyFans API (consumer) against
//! piling calls onto a dependency that is failing. Each instance learns
//! that within `failure_threshold` calls, which costs a handful of failed
//! calls per instance; a shared breaker would add a Redis round trip to
//! every call on the hot path, and would itself depend on Redis, which is
//! exactly what the producer's outbox must not need while SQS is down.
//!
//! - Closed: calls go through; `failure_threshold` consecutive failures open it.
//! - Open: calls are refused for `open_for`.
//! - Half-open: after that, one probe call goes through; its success closes
//!   the breaker, its failure opens it again.
//!
//! A permit to call is a [`Call`] that must be settled: [`Call::success`],
//! [`Call::failure`] or [`Call::neutral`]. One that is dropped unsettled (the
//! caller returned early, or its future was cancelled) gives the half-open
//! probe back, so an abandoned probe can never leave the breaker refusing
//! every later call for the life of the instance.
//!
//! Time is tokio's ([`tokio::time::Instant`]): on a paused runtime the
//! breaker runs on virtual time with everything else.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Thresholds of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (≥ 1).
    pub failure_threshold: u32,
    /// How long it stays open before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// How long a caller waits while another call is the half-open probe.
pub const PROBE_BUSY_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// What the breaker says about the next call.
#[derive(Debug)]
#[must_use = "a permit to call must be settled (or dropped, which gives a probe back)"]
pub enum Permit<'a> {
    /// Make the call, then settle it.
    Go(Call<'a>),
    /// Do not call; the breaker opens up again after this long.
    Refused { retry_in: Duration },
}

/// A call the breaker let through. Settle it with what the call showed
/// about the dependency; dropping it unsettled counts as neither a success
/// nor a failure, and hands the half-open probe back.
#[derive(Debug)]
#[must_use = "settle the call: success(), failure() or neutral()"]
pub struct Call<'a> {
    breaker: &'a Breaker,
    /// This call is the half-open probe.
    probe: bool,
}

impl Call<'_> {
    /// The call reached a healthy dependency.
    pub fn success(self) {
        self.breaker
            .with_state(|s| *s = State::Closed { failures: 0 });
        std::mem::forget(self);
    }

    /// The call failed because of the dependency.
    pub fn failure(self) {
        self.failure_at(Instant::now());
    }

    pub fn failure_at(self, now: Instant) {
        let open = State::Open {
            until: now + self.breaker.config.open_for,
        };
        let threshold = self.breaker.config.failure_threshold;
        self.breaker.with_state(|s| {
            *s = match *s {
                State::Closed { failures } if failures + 1 < threshold => State::Closed {
                    failures: failures + 1,
                },
                _ => open,
            }
        });
        std::mem::forget(self);
    }

    /// The call said nothing about the dependency's health (for example our
    /// own credentials were refused): the probe, if this was it, is given back.
    pub fn neutral(self) {
        // Drop does it.
    }

    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.with_state(|s| {
                if *s == (State::HalfOpen { probing: true }) {
                    *s = State::HalfOpen { probing: false };
                }
            });
        }
    }
}

/// The breaker itself; cheap to share behind an `Arc` or in a cold-start struct.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config: BreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of a
        // plain enum; its value is still a valid state.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Asks whether a call may be made now.
    pub fn permit(&self) -> Permit<'_> {
        self.permit_at(Instant::now())
    }

    pub fn permit_at(&self, now: Instant) -> Permit<'_> {
        let go = |probe| {
            Permit::Go(Call {
                breaker: self,
                probe,
            })
        };
        self.with_state(|s| match *s {
            State::Closed { .. } => Ok(false),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Ok(true)
            }
            // One probe at a time; the others wait a moment.
            State::HalfOpen { probing: true } => Err(PROBE_BUSY_RETRY),
        })
        .map_or_else(|retry_in| Permit::Refused { retry_in }, go)
    }

    /// How long calls would be refused now, without taking a permit (a
    /// caller checks this before spending anything on a call it may not
    /// make, and takes the permit right before the call).
    pub fn refusing(&self) -> Option<Duration> {
        self.refusing_at(Instant::now())
    }

    pub fn refusing_at(&self, now: Instant) -> Option<Duration> {
        self.with_state(|s| match *s {
            State::Open { until } if now < until => Some(until - now),
            State::HalfOpen { probing: true } => Some(PROBE_BUSY_RETRY),
            _ => None,
        })
    }

    /// Whether calls are being refused right now (for logs and `/health`).
    pub fn is_open(&self) -> bool {
        self.with_state(|s| matches!(s, State::Open { until } if Instant::now() < *until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        })
    }

    fn go(p: Permit<'_>) -> Call<'_> {
        match p {
            Permit::Go(c) => c,
            Permit::Refused { retry_in } => panic!("refused for {retry_in:?}"),
        }
    }

    fn refused(p: Permit<'_>) -> Duration {
        match p {
            Permit::Go(c) => panic!("let through (probe: {})", c.is_probe()),
            Permit::Refused { retry_in } => retry_in,
        }
    }

    /// Opens the breaker at `t`: three failed calls.
    fn open(b: &Breaker, t: Instant) {
        for _ in 0..3 {
            go(b.permit_at(t)).failure_at(t);
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        let t = Instant::now();
        go(b.permit_at(t)).failure_at(t);
        go(b.permit_at(t)).failure_at(t);
        go(b.permit_at(t)).success();
        go(b.permit_at(t)).failure_at(t);
        go(b.permit_at(t)).failure_at(t);
        assert!(!go(b.permit_at(t)).is_probe(), "a success resets the count");
        go(b.permit_at(t)).failure_at(t);
        assert_eq!(refused(b.permit_at(t)), Duration::from_secs(10));
        assert_eq!(b.refusing_at(t), Some(Duration::from_secs(10)));
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let b = breaker();
        let t = Instant::now();
        open(&b, t);
        let later = t + Duration::from_secs(10);
        assert_eq!(b.refusing_at(later), None, "a probe may go");
        let probe = go(b.permit_at(later));
        assert!(probe.is_probe());
        assert_eq!(
            refused(b.permit_at(later)),
            PROBE_BUSY_RETRY,
            "only one probe"
        );
        assert_eq!(b.refusing_at(later), Some(PROBE_BUSY_RETRY));
        probe.success();
        assert!(!go(b.permit_at(later)).is_probe());
        assert!(!go(b.permit_at(later)).is_probe());
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker();
        let t = Instant::now();
        open(&b, t);
        let later = t + Duration::from_secs(11);
        go(b.permit_at(later)).failure_at(later);
        assert_eq!(refused(b.permit_at(later)), Duration::from_secs(10));
    }

    #[test]
    fn an_abandoned_probe_is_given_back() {
        let b = breaker();
        let t = Instant::now();
        open(&b, t);
        let later = t + Duration::from_secs(10);
        // The probe's caller returns without calling (throttled, paused,
        // limiter down...): dropping the permit frees the probe.
        drop(go(b.permit_at(later)));
        let probe = go(b.permit_at(later));
        assert!(probe.is_probe(), "the next caller is the probe");
        // A neutral answer (a 401: our token, not their health) also frees it.
        probe.neutral();
        let probe = go(b.permit_at(later));
        assert!(probe.is_probe());
        probe.success();
        assert_eq!(b.refusing_at(later), None);
        assert!(!go(b.permit_at(later)).is_probe(), "closed");
    }

    #[test]
    fn a_probe_abandoned_by_a_cancelled_future_is_given_back() {
        let b = breaker();
        let t = Instant::now();
        open(&b, t);
        let later = t + Duration::from_secs(10);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let call = go(b.permit_at(later));
            // The call never finishes: the invocation ran out of time.
            let stuck = async move {
                std::future::pending::<()>().await;
                call.success();
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), stuck).await;
        });
        assert!(go(b.permit_at(later)).is_probe(), "probe given back");
    }

    #[test]
    fn dropping_a_closed_state_call_changes_nothing() {
        let b = breaker();
        let t = Instant::now();
        go(b.permit_at(t)).failure_at(t);
        go(b.permit_at(t)).failure_at(t);
        drop(go(b.permit_at(t)));
        go(b.permit_at(t)).failure_at(t);
        assert!(
            matches!(b.permit_at(t), Permit::Refused { .. }),
            "the dropped call neither reset nor added to the count"
        );
    }

    #[test]
    fn a_stale_probe_does_not_reopen_a_breaker_closed_since() {
        // Only the probe's own half-open state is given back on drop.
        let b = breaker();
        let t = Instant::now();
        open(&b, t);
        let later = t + Duration::from_secs(10);
        let probe = go(b.permit_at(later));
        drop(probe);
        go(b.permit_at(later)).success();
        assert_eq!(b.refusing_at(later), None);
    }

    #[test]
    fn threshold_zero_means_one() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            open_for: Duration::from_secs(1),
        });
        go(b.permit()).failure();
        assert!(b.is_open());
    }
}
