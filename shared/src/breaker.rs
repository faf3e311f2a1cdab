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

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// What the breaker says about the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Make the call, then report its result.
    Go,
    /// Do not call; the breaker opens up again after this long.
    Refused { retry_in: Duration },
}

/// The breaker itself; cheap to share behind an `Arc` or in a `static`-like
/// cold-start struct.
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
    pub fn permit(&self) -> Permit {
        self.permit_at(Instant::now())
    }

    pub fn permit_at(&self, now: Instant) -> Permit {
        self.with_state(|s| match *s {
            State::Closed { .. } => Permit::Go,
            State::Open { until } if now < until => Permit::Refused {
                retry_in: until - now,
            },
            State::Open { .. } => {
                *s = State::HalfOpen { probing: true };
                Permit::Go
            }
            State::HalfOpen { probing: false } => {
                *s = State::HalfOpen { probing: true };
                Permit::Go
            }
            // One probe at a time; the others wait a moment.
            State::HalfOpen { probing: true } => Permit::Refused {
                retry_in: Duration::from_secs(1),
            },
        })
    }

    /// Reports a call that reached a healthy dependency.
    pub fn success(&self) {
        self.with_state(|s| *s = State::Closed { failures: 0 });
    }

    /// Reports a call that failed because of the dependency.
    pub fn failure(&self) {
        self.failure_at(Instant::now());
    }

    pub fn failure_at(&self, now: Instant) {
        let open = State::Open {
            until: now + self.config.open_for,
        };
        self.with_state(|s| {
            *s = match *s {
                State::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                    State::Closed {
                        failures: failures + 1,
                    }
                }
                _ => open,
            }
        });
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

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        let t = Instant::now();
        b.failure_at(t);
        b.failure_at(t);
        b.success();
        b.failure_at(t);
        b.failure_at(t);
        assert_eq!(b.permit_at(t), Permit::Go, "a success resets the count");
        b.failure_at(t);
        assert_eq!(
            b.permit_at(t),
            Permit::Refused {
                retry_in: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.failure_at(t);
        }
        let later = t + Duration::from_secs(10);
        assert_eq!(b.permit_at(later), Permit::Go, "the probe");
        assert!(
            matches!(b.permit_at(later), Permit::Refused { .. }),
            "only one probe"
        );
        b.success();
        assert_eq!(b.permit_at(later), Permit::Go);
        assert_eq!(b.permit_at(later), Permit::Go);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.failure_at(t);
        }
        let later = t + Duration::from_secs(11);
        assert_eq!(b.permit_at(later), Permit::Go);
        b.failure_at(later);
        assert_eq!(
            b.permit_at(later),
            Permit::Refused {
                retry_in: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn threshold_zero_means_one() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            open_for: Duration::from_secs(1),
        });
        b.failure();
        assert!(b.is_open());
    }
}
