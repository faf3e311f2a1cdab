//! The token bucket's arithmetic in Rust: the twin of `token_bucket.lua`.
//!
//! Production decisions are made by the Lua script inside Redis (one clock,
//! one atomic step for every Lambda instance). This twin exists so the
//! arithmetic's edge cases can be tested with a fake clock, without sleeping,
//! and so `GET /v1/status` can show a bucket's tokens without writing to it.
//! `tests::script_matches_twin` (against a real Redis) keeps the two in step.

use std::time::Duration;

/// Microseconds in a minute: the bucket refills `rate_per_minute` per this.
const US_PER_MINUTE: f64 = 60_000_000.0;

/// The bucket's stored state: `tokens` as of time `ts_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    /// Tokens at `ts_us` (fractional: refill is continuous).
    pub tokens: f64,
    /// Microseconds since the Unix epoch on the limiter's clock.
    pub ts_us: u64,
}

/// Rate and capacity of every account's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained messages per minute (> 0).
    pub per_minute: f64,
    /// Capacity: the most messages that may go at once after an idle spell (≥ 1).
    pub burst: f64,
}

impl Rate {
    /// Tokens added per microsecond.
    fn per_us(&self) -> f64 {
        self.per_minute / US_PER_MINUTE
    }

    /// One refill interval in microseconds: the spacing of deferral slots.
    pub fn interval_us(&self) -> u64 {
        (1.0 / self.per_us()).ceil() as u64
    }

    /// Tokens in a bucket at `now_us`, refilled and capped, without taking any.
    pub fn tokens_at(&self, state: Option<BucketState>, now_us: u64) -> f64 {
        match state {
            None => self.burst,
            Some(s) => {
                let now = now_us.max(s.ts_us);
                (s.tokens + (now - s.ts_us) as f64 * self.per_us()).min(self.burst)
            }
        }
    }
}

/// What the limiter says about one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Send now; `tokens_left` remain in the bucket.
    Allowed { tokens_left: f64 },
    /// Not yet: the bucket has too few tokens. Try again after `wait`
    /// (the message's reserved slot, spread behind earlier deferrals).
    Throttled { wait: Duration, tokens: f64 },
    /// The upstream asked this account to wait (429 `Retry-After`).
    Paused { wait: Duration },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// How long until the message may be tried again (zero when allowed).
    pub fn wait(&self) -> Duration {
        match *self {
            Decision::Allowed { .. } => Duration::ZERO,
            Decision::Throttled { wait, .. } | Decision::Paused { wait } => wait,
        }
    }
}

/// Everything one decision reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    pub bucket: Option<BucketState>,
    /// The next free deferral slot of this priority class, if any.
    pub horizon_us: Option<u64>,
    /// Remaining upstream pause, if the account is paused.
    pub pause_us: Option<u64>,
    pub now_us: u64,
    /// Tokens that must remain after this take (0 for `high`).
    pub reserve: f64,
}

/// Everything one decision writes (`None`: left as it was).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    pub bucket: Option<BucketState>,
    pub horizon_us: Option<u64>,
}

/// Decides one message exactly as the Lua script does.
pub fn decide(rate: Rate, input: Input) -> Outcome {
    let now = match input.bucket {
        Some(s) if input.now_us < s.ts_us => s.ts_us,
        _ => input.now_us,
    };
    let tokens = rate.tokens_at(input.bucket, now);
    if let Some(p) = input.pause_us.filter(|p| *p > 0) {
        return Outcome {
            decision: Decision::Paused {
                wait: Duration::from_micros(p),
            },
            bucket: None,
            horizon_us: None,
        };
    }
    let need = 1.0 + input.reserve;
    if tokens >= need {
        let left = tokens - 1.0;
        return Outcome {
            decision: Decision::Allowed { tokens_left: left },
            bucket: Some(BucketState {
                tokens: left,
                ts_us: now,
            }),
            horizon_us: None,
        };
    }
    let wait = ((need - tokens) / rate.per_us()).ceil() as u64;
    let slot = input.horizon_us.map_or(now + wait, |h| h.max(now + wait));
    Outcome {
        decision: Decision::Throttled {
            wait: Duration::from_micros(slot - now),
            tokens,
        },
        bucket: None,
        horizon_us: Some(slot + rate.interval_us()),
    }
}

/// Tokens a priority class must leave in the bucket: a whole number of
/// tokens, and never so many that the class could not be served at all.
pub fn reserve_tokens(burst: u32, percent: u8) -> f64 {
    let r = (f64::from(burst) * f64::from(percent) / 100.0).floor();
    r.min(f64::from(burst.saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000_000;
    const SEC: u64 = 1_000_000;

    /// A fake-clock simulation of one account's bucket and one horizon.
    struct Sim {
        rate: Rate,
        bucket: Option<BucketState>,
        horizon: Option<u64>,
        now: u64,
    }

    impl Sim {
        fn new(per_minute: f64, burst: f64) -> Self {
            Self {
                rate: Rate { per_minute, burst },
                bucket: None,
                horizon: None,
                now: T0,
            }
        }
        fn advance(&mut self, us: u64) {
            self.now += us;
        }
        fn take(&mut self, reserve: f64) -> Decision {
            let out = decide(
                self.rate,
                Input {
                    bucket: self.bucket,
                    horizon_us: self.horizon,
                    pause_us: None,
                    now_us: self.now,
                    reserve,
                },
            );
            if let Some(b) = out.bucket {
                self.bucket = Some(b);
            }
            if let Some(h) = out.horizon_us {
                self.horizon = Some(h);
            }
            out.decision
        }
    }

    #[test]
    fn full_bucket_allows_burst_then_throttles_for_one_interval() {
        let mut s = Sim::new(10.0, 10.0);
        for _ in 0..10 {
            assert!(s.take(0.0).is_allowed());
        }
        // Empty: the next token is 6 s away (10 per minute).
        assert_eq!(s.take(0.0).wait(), Duration::from_secs(6));
    }

    #[test]
    fn exactly_one_token_is_enough_and_leaves_zero() {
        let mut s = Sim::new(60.0, 1.0);
        assert_eq!(s.take(0.0), Decision::Allowed { tokens_left: 0.0 });
        s.advance(SEC);
        assert_eq!(s.take(0.0), Decision::Allowed { tokens_left: 0.0 });
    }

    #[test]
    fn denied_call_does_not_touch_the_bucket() {
        let rate = Rate {
            per_minute: 10.0,
            burst: 1.0,
        };
        let bucket = Some(BucketState {
            tokens: 0.5,
            ts_us: T0,
        });
        let out = decide(
            rate,
            Input {
                bucket,
                horizon_us: None,
                pause_us: None,
                now_us: T0,
                reserve: 0.0,
            },
        );
        assert!(!out.decision.is_allowed());
        assert_eq!(out.bucket, None);
        assert_eq!(out.decision.wait(), Duration::from_secs(3));
    }

    #[test]
    fn long_idle_refills_only_to_capacity() {
        let mut s = Sim::new(10.0, 3.0);
        for _ in 0..3 {
            assert!(s.take(0.0).is_allowed());
        }
        s.advance(24 * 3600 * SEC);
        for _ in 0..3 {
            assert!(s.take(0.0).is_allowed());
        }
        assert!(!s.take(0.0).is_allowed());
    }

    #[test]
    fn burst_of_one_spaces_every_message() {
        let mut s = Sim::new(10.0, 1.0);
        assert!(s.take(0.0).is_allowed());
        s.advance(6 * SEC - 1);
        assert!(!s.take(0.0).is_allowed());
        s.advance(1);
        // The horizon from the denial above does not block a message that
        // finds a token: the bucket is the authority, the horizon a hint.
        assert!(s.take(0.0).is_allowed());
    }

    #[test]
    fn very_high_rates_do_not_overflow_or_round_to_zero() {
        let mut s = Sim::new(6_000_000.0, 1000.0); // 100 000 per second
        for _ in 0..1000 {
            assert!(s.take(0.0).is_allowed());
        }
        let d = s.take(0.0);
        assert_eq!(d.wait(), Duration::from_micros(10));
        s.advance(10);
        assert!(s.take(0.0).is_allowed());
        assert_eq!(s.rate.interval_us(), 10);
    }

    #[test]
    fn a_clock_that_does_not_advance_mints_nothing() {
        let mut s = Sim::new(600.0, 2.0);
        assert!(s.take(0.0).is_allowed());
        assert!(s.take(0.0).is_allowed());
        for _ in 0..100 {
            assert!(!s.take(0.0).is_allowed());
        }
    }

    #[test]
    fn a_clock_that_runs_backwards_mints_nothing() {
        let mut s = Sim::new(600.0, 1.0);
        s.advance(10 * SEC);
        assert!(s.take(0.0).is_allowed());
        s.now -= 5 * SEC; // a skewed instance (client clock mode)
        assert!(!s.take(0.0).is_allowed());
        s.now += 5 * SEC + 100_000; // 0.1 s after the last take: one token at 600/min
        assert!(s.take(0.0).is_allowed());
    }

    #[test]
    fn deferrals_are_spread_one_interval_apart() {
        let mut s = Sim::new(10.0, 1.0);
        assert!(s.take(0.0).is_allowed());
        let waits: Vec<u64> = (0..5).map(|_| s.take(0.0).wait().as_secs()).collect();
        assert_eq!(waits, vec![6, 12, 18, 24, 30]);
    }

    #[test]
    fn paused_account_waits_for_the_upstream() {
        let rate = Rate {
            per_minute: 10.0,
            burst: 10.0,
        };
        let out = decide(
            rate,
            Input {
                bucket: None,
                horizon_us: None,
                pause_us: Some(2 * SEC),
                now_us: T0,
                reserve: 0.0,
            },
        );
        assert_eq!(
            out.decision,
            Decision::Paused {
                wait: Duration::from_secs(2)
            }
        );
        assert_eq!(out.bucket, None);
    }

    #[test]
    fn reserve_leaves_headroom_for_high_priority() {
        // Burst 10 with 20 % reserved: low stops at 2 tokens left.
        let low = reserve_tokens(10, 20);
        assert_eq!(low, 2.0);
        let mut s = Sim::new(10.0, 10.0);
        let mut sent = 0;
        while s.take(low).is_allowed() {
            sent += 1;
        }
        assert_eq!(sent, 8);
        // A high message behind that low backlog goes at once.
        assert!(s.take(0.0).is_allowed());
        assert!(s.take(0.0).is_allowed());
        assert!(!s.take(0.0).is_allowed());
    }

    #[test]
    fn low_alone_still_gets_the_full_rate() {
        let low = reserve_tokens(10, 20);
        let mut s = Sim::new(60.0, 10.0);
        let mut sent = 0;
        // One minute of a low-only backlog, tried every 10 ms.
        for _ in 0..6000 {
            if s.take(low).is_allowed() {
                sent += 1;
            }
            s.advance(10_000);
        }
        // 8 from the burst (2 stay reserved) + the 59 whole tokens refilled
        // in the 59.99 s the loop covers: exactly the full rate.
        assert_eq!(sent, 67);
    }

    #[test]
    fn reserve_never_starves_a_class() {
        assert_eq!(reserve_tokens(1, 50), 0.0);
        assert_eq!(reserve_tokens(2, 100), 1.0);
        assert_eq!(reserve_tokens(10, 0), 0.0);
        assert_eq!(reserve_tokens(10, 15), 1.0);
    }

    proptest! {
        /// Whatever the arrival pattern, the allowed messages never exceed
        /// burst + rate * t / 60 in any interval of t seconds.
        #[test]
        fn allowed_messages_respect_the_arrival_curve(
            per_minute in 1.0f64..100_000.0,
            burst in 1u32..20,
            gaps in proptest::collection::vec(0u64..2_000_000, 1..300),
            reserves in proptest::collection::vec(0u8..3, 300),
        ) {
            let mut s = Sim::new(per_minute, f64::from(burst));
            let mut sent: Vec<u64> = Vec::new();
            for (i, gap) in gaps.iter().enumerate() {
                s.advance(*gap);
                let reserve = reserve_tokens(burst, [0, 10, 20][reserves[i] as usize]);
                if s.take(reserve).is_allowed() {
                    sent.push(s.now);
                }
            }
            for i in 0..sent.len() {
                for j in i..sent.len() {
                    let t = (sent[j] - sent[i]) as f64 / 1e6;
                    let count = (j - i + 1) as f64;
                    // 1e-6 absorbs float rounding of the refill.
                    prop_assert!(count <= f64::from(burst) + per_minute * t / 60.0 + 1e-6,
                        "{count} sends in {t}s");
                }
            }
        }
    }
}
