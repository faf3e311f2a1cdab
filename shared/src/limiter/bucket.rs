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
/// How late a message may come back to its slot (SQS counts visibility in
/// whole seconds, and the trigger batches for up to a second): the tokens
/// that accrue meanwhile still belong to the slots' holders.
pub const LATE_US: u64 = 2_000_000;

/// How far apart the upstream may see two sends whose grants were an exact
/// interval apart: their latencies (the limiter's reply, the HTTP call, the
/// network) differ by up to this much, and the upstream counts arrivals.
/// Every send leaves this much refill in the bucket ([`Rate::guard`]), so
/// arrivals up to this much closer than their grants still keep the curve.
pub const ARRIVAL_SPREAD_US: u64 = 100_000;

/// The bucket's stored state: `tokens` as of time `ts_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    /// Tokens at `ts_us` (fractional: refill is continuous).
    pub tokens: f64,
    /// Microseconds since the Unix epoch on the limiter's clock.
    pub ts_us: u64,
    /// Refill this bucket lost while it stood full after the message that
    /// drained it was due ([`Rate::credit`]): the reserving classes may keep
    /// that much less of their reserve until the bucket is full again.
    pub credit: f64,
}

/// Rate and capacity of an account's bucket: the defaults
/// (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`) or the account's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained messages per minute (> 0).
    pub per_minute: f64,
    /// Capacity: the most messages that may go at once after an idle spell (≥ 1).
    pub burst: f64,
}

impl Rate {
    /// Whether a stored limit is one the script uses: a rate above zero and
    /// a whole burst of at least one (anything else falls back to the
    /// defaults, as `token_bucket.lua` does).
    pub fn is_usable(&self) -> bool {
        self.per_minute > 0.0 && self.burst >= 1.0 && self.burst == self.burst.floor()
    }

    /// The limit in force: the account's own when it is usable, else the
    /// defaults (`self`).
    pub fn in_force(self, own: Option<Rate>) -> Rate {
        own.filter(Rate::is_usable).unwrap_or(self)
    }

    /// Tokens a priority class with `percent` reserved must leave in this
    /// bucket: a whole number, and never so many that the class could not
    /// be served at all (at most `burst - 1`). Computed from the burst in
    /// force, so a small per-account burst never starves `low`.
    pub fn reserve(&self, percent: u8) -> f64 {
        (self.burst * f64::from(percent) / 100.0)
            .floor()
            .min(self.burst - 1.0)
    }

    /// Tokens every send leaves in the bucket whatever its class, so that
    /// arrivals spread by up to [`ARRIVAL_SPREAD_US`] against their grants
    /// stay within the limit the upstream counts: what refill adds in that
    /// time. A send that drains a bucket to zero is granted exactly on the
    /// curve, and a later call that arrives a few milliseconds sooner than
    /// the one before it breaks it.
    pub fn guard(&self) -> f64 {
        ARRIVAL_SPREAD_US as f64 * self.per_us()
    }

    /// Tokens a class with `percent` reserved leaves after a send: its
    /// reserve, and at least the [`Rate::guard`].
    pub fn kept(&self, percent: u8) -> f64 {
        self.kept_with(percent, 0.0)
    }

    /// [`Rate::kept`] in a bucket holding `credit`: the reserve less the
    /// credit, and still at least the guard, so every send keeps the curve.
    pub fn kept_with(&self, percent: u8, credit: f64) -> f64 {
        (self.reserve(percent) - credit).max(self.guard())
    }

    /// The credit a send from a full bucket leaves it: the refill the bucket
    /// lost to its cap between the moment the message was due (`due_us`:
    /// accepted, or its `sendAt`) and `now_us`, while it stood full, at most
    /// what the class keeps beyond the guard. A backlog's first message
    /// reaches the limiter a batching window and a receive after it was
    /// accepted, and a bucket that waits full meanwhile loses that refill;
    /// without the credit every later slot of the backlog carries the delay.
    /// The contract's curve is kept (every send still leaves the guard);
    /// what shrinks, by that refill and until the bucket is full again, is
    /// the reserve `high` finds.
    pub fn credit(
        &self,
        percent: u8,
        bucket: Option<BucketState>,
        due_us: Option<u64>,
        now_us: u64,
    ) -> f64 {
        let Some(due) = due_us.filter(|d| *d > 0) else {
            return 0.0;
        };
        let per_us = self.per_us();
        // When the stored tokens reached the cap (a missing bucket has
        // always been full).
        let start = match bucket {
            Some(s) => (s.ts_us as f64 + (self.burst - s.tokens).max(0.0) / per_us).max(due as f64),
            None => due as f64,
        };
        if start >= now_us as f64 {
            return 0.0;
        }
        ((now_us as f64 - start) * per_us).min((self.reserve(percent) - self.guard()).max(0.0))
    }

    /// What a send of a class with `percent` reserved needs in the bucket,
    /// and what it takes: one token and what it must leave. A bucket too
    /// small to hold both (a burst of 1; a small burst at a fast rate) is
    /// asked for what it holds when full, and the rest is owed (the tokens go
    /// below zero): such an account's sends are spaced by the spread beyond
    /// an interval, which is what keeps their arrivals on its curve.
    pub fn need_and_take(&self, percent: u8) -> (f64, f64) {
        self.need_and_take_with(percent, 0.0)
    }

    /// [`Rate::need_and_take`] in a bucket holding `credit`.
    pub fn need_and_take_with(&self, percent: u8, credit: f64) -> (f64, f64) {
        let need = 1.0 + self.kept_with(percent, credit);
        if need > self.burst {
            (self.burst, 1.0 + need - self.burst)
        } else {
            (need, 1.0)
        }
    }

    /// How long a token may wait for a holder who comes back late before
    /// the bucket overflows: the time refill takes from the tokens a class
    /// with `percent` reserved needs for a send (one plus what it keeps) to a
    /// full bucket. A message deferred through the queue comes back up to
    /// a few seconds after its slot; within this slack its token is still
    /// there and nothing of the budget is lost.
    pub fn slack(&self, percent: u8) -> Duration {
        let tokens = (self.burst - 1.0 - self.kept(percent)).max(0.0);
        Duration::from_micros((tokens * US_PER_MINUTE / self.per_minute).round() as u64)
    }

    /// Tokens added per microsecond.
    fn per_us(&self) -> f64 {
        self.per_minute / US_PER_MINUTE
    }

    /// What refill takes to give back `take` tokens, in microseconds: the
    /// spacing of deferral slots (one refill interval for a take of one).
    pub fn spacing_us(&self, take: f64) -> u64 {
        (take / self.per_us()).ceil() as u64
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
    /// `slack`: how long a token may wait in the bucket for its holder
    /// before the bucket is full and refill is lost ([`Rate::slack`]).
    Throttled {
        wait: Duration,
        tokens: f64,
        slack: Duration,
    },
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
    /// The share of the burst in force this class must leave (0 for `high`).
    pub reserve_percent: u8,
    /// The message holds a slot this class's horizon gave it earlier.
    pub held: bool,
    /// The account's own limit (its `limits` hash), if one is stored.
    pub limit: Option<Rate>,
    /// When the message was due (accepted, or its `sendAt`), on the
    /// limiter's clock, if known: what a send from a full bucket is credited
    /// from ([`Rate::credit`]).
    pub due_us: Option<u64>,
}

/// Everything one decision writes (`None`: left as it was).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    pub bucket: Option<BucketState>,
    pub horizon_us: Option<u64>,
    /// The limit the decision was made with.
    pub limit: Rate,
}

/// Decides one message exactly as the Lua script does. `defaults` is the
/// limit of an account without its own.
pub fn decide(defaults: Rate, input: Input) -> Outcome {
    let rate = defaults.in_force(input.limit);
    let now = match input.bucket {
        Some(s) if input.now_us < s.ts_us => s.ts_us,
        _ => input.now_us,
    };
    let tokens = rate.tokens_at(input.bucket, now);
    // A full bucket holds no credit: it has nothing left to make up.
    let full = tokens >= rate.burst;
    let credit = match input.bucket {
        Some(s) if !full => s.credit,
        _ => 0.0,
    };
    if let Some(p) = input.pause_us.filter(|p| *p > 0) {
        return Outcome {
            decision: Decision::Paused {
                wait: Duration::from_micros(p),
            },
            bucket: None,
            horizon_us: None,
            limit: rate,
        };
    }
    let (need, take) = rate.need_and_take_with(input.reserve_percent, credit);
    // First come, first served: a message without a slot queues behind the
    // slots still ahead, unless the bucket holds more than their holders can
    // use (slots nobody came for).
    let spare = tokens - need - 1.0 - LATE_US as f64 * rate.per_us();
    let queued = !input.held && input.horizon_us.is_some_and(|h| h > now) && spare < 0.0;
    if tokens >= need && !queued {
        let left = tokens - take;
        let credit = if full {
            rate.credit(input.reserve_percent, input.bucket, input.due_us, now)
        } else {
            credit
        };
        return Outcome {
            decision: Decision::Allowed { tokens_left: left },
            bucket: Some(BucketState {
                tokens: left,
                ts_us: now,
                credit,
            }),
            horizon_us: None,
            limit: rate,
        };
    }
    let wait = ((need - tokens).max(0.0) / rate.per_us()).ceil() as u64;
    if input.held {
        // Its slot came and the token is not there yet: the exact wait, and
        // no new slot.
        return Outcome {
            decision: Decision::Throttled {
                wait: Duration::from_micros(wait),
                tokens,
                slack: rate.slack(input.reserve_percent),
            },
            bucket: None,
            horizon_us: None,
            limit: rate,
        };
    }
    let slot = input.horizon_us.map_or(now + wait, |h| h.max(now + wait));
    Outcome {
        decision: Decision::Throttled {
            wait: Duration::from_micros(slot - now),
            tokens,
            slack: rate.slack(input.reserve_percent),
        },
        bucket: None,
        horizon_us: Some(slot + rate.spacing_us(take)),
        limit: rate,
    }
}

/// Tokens a priority class must leave in a bucket of `burst`
/// ([`Rate::reserve`]).
pub fn reserve_tokens(burst: u32, percent: u8) -> f64 {
    Rate {
        per_minute: 1.0,
        burst: f64::from(burst),
    }
    .reserve(percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000_000;
    const SEC: u64 = 1_000_000;

    /// The first run of sorted `times` (µs) that holds more than
    /// `burst + per_minute * t / 60` in its `t` seconds, as (count, t).
    /// 1e-6 absorbs float rounding of the refill.
    fn over_the_curve(times: &[u64], per_minute: f64, burst: f64) -> Option<(f64, f64)> {
        (0..times.len()).find_map(|i| {
            (i..times.len()).find_map(|j| {
                let t = (times[j] - times[i]) as f64 / 1e6;
                let count = (j - i + 1) as f64;
                (count > burst + per_minute * t / 60.0 + 1e-6).then_some((count, t))
            })
        })
    }

    /// `d` is `ms` milliseconds, give or take the microsecond a wait is
    /// rounded up by when the tokens it waits for are a float.
    fn about(d: Duration, ms: u64) -> bool {
        d.as_micros().abs_diff(u128::from(ms) * 1000) <= 1
    }

    /// A fake-clock simulation of one account's bucket and its horizons
    /// (one per priority class, told apart by their reserve here).
    struct Sim {
        rate: Rate,
        /// The account's own limit, when one is stored.
        own: Option<Rate>,
        bucket: Option<BucketState>,
        horizons: Vec<(u8, u64)>,
        now: u64,
        /// When the next message asks, when it was due (none: unknown).
        due: Option<u64>,
    }

    impl Sim {
        fn new(per_minute: f64, burst: f64) -> Self {
            Self {
                rate: Rate { per_minute, burst },
                own: None,
                bucket: None,
                horizons: Vec::new(),
                now: T0,
                due: None,
            }
        }
        fn horizon(&self, class: u8) -> Option<u64> {
            self.horizons
                .iter()
                .find(|(c, _)| *c == class)
                .map(|(_, h)| *h)
        }
        fn advance(&mut self, us: u64) {
            self.now += us;
        }
        /// A message of the class that reserves `pct` percent of the burst.
        fn take(&mut self, pct: u8) -> Decision {
            self.take_as(pct, false)
        }
        /// A message that holds a slot (`held`) or asks for the first time.
        fn take_as(&mut self, pct: u8, held: bool) -> Decision {
            let out = decide(
                self.rate,
                Input {
                    bucket: self.bucket,
                    horizon_us: self.horizon(pct),
                    pause_us: None,
                    now_us: self.now,
                    reserve_percent: pct,
                    held,
                    limit: self.own,
                    due_us: self.due,
                },
            );
            if let Some(b) = out.bucket {
                self.bucket = Some(b);
            }
            if let Some(h) = out.horizon_us {
                let class = pct;
                self.horizons.retain(|(c, _)| *c != class);
                self.horizons.push((class, h));
            }
            out.decision
        }
    }

    #[test]
    fn slack_is_refill_from_a_send_to_a_full_bucket() {
        let r = |per_minute, burst| Rate { per_minute, burst };
        let ms = |d: Duration| d.as_millis();
        // medium (10 % reserved): one token to send and one kept back
        assert_eq!(ms(r(60.0, 10.0).slack(10)), 8_000);
        assert_eq!(ms(r(10.0, 10.0).slack(10)), 48_000);
        assert_eq!(ms(r(600.0, 10.0).slack(10)), 800);
        // high: only the guard kept back (at 600/min, 100 ms is a token)
        assert_eq!(ms(r(600.0, 10.0).slack(0)), 800);
        assert_eq!(ms(r(10.0, 10.0).slack(0)), 53_900);
        // a burst of one has none
        assert_eq!(r(60.0, 1.0).slack(50), Duration::ZERO);
        // the decision carries it
        let out = decide(
            r(60.0, 10.0),
            Input {
                bucket: Some(BucketState {
                    tokens: 0.0,
                    ts_us: T0,
                    credit: 0.0,
                }),
                horizon_us: None,
                pause_us: None,
                now_us: T0,
                reserve_percent: 10,
                held: false,
                limit: None,
                due_us: None,
            },
        );
        assert!(
            matches!(out.decision, Decision::Throttled { slack, .. } if slack == Duration::from_secs(8)),
            "{out:?}"
        );
    }

    /// Callers that never come back to the slots their denials took (the
    /// naive baseline: 990 retries every 5 s) starve as newcomers once a
    /// horizon is ahead and a full bucket holds less than 2 s of tokens
    /// (600/min, burst 10): each denial pushes the horizon on. Asking as
    /// holders (a plain token bucket) they get a full bucket every round.
    #[test]
    fn callers_that_keep_no_slot_must_ask_as_holders() {
        // Nine a round: a full bucket less the guard (a token at 600/min).
        for (held, want_at_least) in [(false, 0), (true, 108)] {
            let mut s = Sim::new(600.0, 10.0);
            let mut sent = 0;
            for _round in 0..12 {
                for _ in 0..990 {
                    sent += usize::from(s.take_as(0, held).is_allowed());
                }
                s.advance(5 * SEC);
            }
            if held {
                assert!(sent >= want_at_least, "{sent} in 60 s");
            } else {
                assert_eq!(sent, 9, "the burst but the guard, then nothing: {sent}");
            }
        }
    }

    #[test]
    fn full_bucket_allows_burst_then_throttles_for_one_interval() {
        let mut s = Sim::new(10.0, 10.0);
        // Nine at once; the tenth needs the guard (what 100 ms refills) on top.
        for _ in 0..9 {
            assert!(s.take(0).is_allowed());
        }
        assert!(about(s.take(0).wait(), 100));
        s.advance(100_000);
        assert!(s.take_as(0, true).is_allowed());
        // Then one per interval: the next slot is 6 s after the tenth's.
        assert_eq!(s.take(0).wait(), Duration::from_secs(6));
    }

    #[test]
    fn a_burst_of_one_owes_the_guard() {
        // 60/min, burst 1: a send takes the token and owes the guard (what
        // 100 ms refills), so sends are 1.1 s apart, never closer than an
        // interval at the upstream when a call's latency is up to 100 ms
        // shorter than the one before it.
        let mut s = Sim::new(60.0, 1.0);
        let Decision::Allowed { tokens_left } = s.take(0) else {
            panic!("a full bucket of one sends");
        };
        assert!((tokens_left + 0.1).abs() < 1e-9, "{tokens_left}");
        s.advance(SEC);
        let wait = s.take_as(0, true).wait();
        assert!(about(wait, 100), "{wait:?}");
        s.advance(wait.as_micros() as u64);
        assert!(s.take_as(0, true).is_allowed());
    }

    /// A medium backlog of 10/min (burst 10, one token reserved) reaching
    /// the limiter `late_s` after it was accepted: the sends of its burst,
    /// then how long its next message waits.
    fn backlog_reaching_the_limiter_late(late_s: Option<u64>) -> (usize, Duration) {
        let mut s = Sim::new(10.0, 10.0);
        s.advance(60 * SEC); // idle: the bucket has long been full
        s.due = late_s.map(|l| s.now - l * SEC);
        let sent = (0..9).filter(|_| s.take(10).is_allowed()).count();
        s.due = None;
        (sent, s.take(10).wait())
    }

    #[test]
    fn a_backlog_that_reaches_the_limiter_late_is_credited_the_refill_it_lost() {
        // Nine go at once either way; the tenth's slot is an interval (6 s)
        // after them, less the second the full bucket lost before the
        // first send: what a bucket counting from the acceptance gives.
        assert_eq!(backlog_reaching_the_limiter_late(None).0, 9);
        assert!(about(backlog_reaching_the_limiter_late(None).1, 6_000));
        assert!(about(backlog_reaching_the_limiter_late(Some(0)).1, 6_000));
        assert!(about(backlog_reaching_the_limiter_late(Some(1)).1, 5_000));
        assert!(about(backlog_reaching_the_limiter_late(Some(3)).1, 3_000));
        // At most what the class keeps beyond the guard (0.1 s at 10/min):
        // one token, 6 s, less the guard.
        assert!(about(backlog_reaching_the_limiter_late(Some(30)).1, 100));
    }

    #[test]
    fn the_credit_counts_only_time_the_bucket_stood_full() {
        let mut s = Sim::new(10.0, 10.0);
        assert!(s.take(10).is_allowed());
        assert!(s.take(10).is_allowed());
        // Full again 12 s after those two; the message was due at 0 s and
        // asks at 13 s: one second of refill was lost, not thirteen.
        s.due = Some(s.now);
        s.advance(13 * SEC);
        assert!(s.take(10).is_allowed());
        let credit = s.bucket.map(|b| b.credit);
        assert!(
            credit.is_some_and(|c| (c - 1.0 / 6.0).abs() < 1e-9),
            "{credit:?}"
        );
    }

    #[test]
    fn the_credit_lasts_until_the_bucket_is_full_again_and_high_keeps_the_guard() {
        // 60/min, burst 10, medium keeps one token; due 2 s before its first
        // send: credited 0.9 (the one token less the guard, 0.1).
        let mut s = Sim::new(60.0, 10.0);
        s.due = Some(s.now - 2 * SEC);
        assert!(s.take(10).is_allowed());
        s.due = None;
        let drained = |s: &mut Sim| (0..20).take_while(|_| s.take(10).is_allowed()).count();
        assert_eq!(drained(&mut s), 8, "down to one token");
        // Half a second later 1.5 tokens: the holder of the slot the last
        // denial gave keeps max(1 - 0.9, 0.1), so it sends; without the
        // credit it would wait 500 ms.
        s.advance(SEC / 2);
        assert!(s.take_as(10, true).is_allowed());
        // `high` finds 0.5 and needs one plus the guard: 600 ms.
        let high = s.take(0);
        assert!(!high.is_allowed() && about(high.wait(), 600), "{high:?}");
        // Full again: the credit is gone, medium keeps its whole token.
        s.advance(10 * SEC);
        assert_eq!(drained(&mut s), 9);
        s.advance(SEC / 2);
        let medium = s.take_as(10, true);
        assert!(
            !medium.is_allowed() && about(medium.wait(), 500),
            "{medium:?}"
        );
    }

    #[test]
    fn high_gives_no_credit() {
        let mut s = Sim::new(10.0, 10.0);
        s.due = Some(s.now - 3 * SEC);
        assert!(s.take(0).is_allowed());
        assert_eq!(s.bucket.map(|b| b.credit), Some(0.0));
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
            credit: 0.0,
        });
        let out = decide(
            rate,
            Input {
                bucket,
                horizon_us: None,
                pause_us: None,
                now_us: T0,
                reserve_percent: 0,
                held: false,
                limit: None,
                due_us: None,
            },
        );
        assert!(!out.decision.is_allowed());
        assert_eq!(out.bucket, None);
        assert_eq!(out.decision.wait(), Duration::from_secs(3));
    }

    #[test]
    fn long_idle_refills_only_to_capacity() {
        // Burst 3: two at once (the third would leave less than the guard),
        // and after a day no more than that again.
        let mut s = Sim::new(10.0, 3.0);
        let at_once = |s: &mut Sim| (0..5).filter(|_| s.take(0).is_allowed()).count();
        assert_eq!(at_once(&mut s), 2);
        s.advance(24 * 3600 * SEC);
        assert_eq!(at_once(&mut s), 2);
    }

    #[test]
    fn burst_of_one_spaces_every_message() {
        // 10/min, burst 1: one interval (6 s) and the guard's 100 ms apart.
        let mut s = Sim::new(10.0, 1.0);
        assert!(s.take(0).is_allowed());
        s.advance(STEP_10 - 1);
        assert!(!s.take(0).is_allowed());
        s.advance(1);
        // The denied message comes back at its slot and takes its token.
        assert!(s.take_as(0, true).is_allowed());
    }

    /// Sends of a burst of one at 10/min: one interval and the guard apart.
    const STEP_10: u64 = 6 * SEC + 100_000;

    #[test]
    fn a_newcomer_queues_behind_the_slots_ahead() {
        let mut s = Sim::new(10.0, 1.0);
        assert!(s.take(0).is_allowed());
        // A is given the slot at one step.
        assert_eq!(s.take(0).wait(), Duration::from_micros(STEP_10));
        s.advance(STEP_10);
        // B arrives as A's token does: B queues (slot two steps in)...
        assert_eq!(s.take(0).wait(), Duration::from_micros(STEP_10));
        // ... and A, back at its slot, takes the token it was promised.
        assert!(s.take_as(0, true).is_allowed());
    }

    #[test]
    fn a_holder_denied_gets_the_exact_wait_and_no_new_slot() {
        let mut s = Sim::new(10.0, 1.0);
        assert!(s.take(0).is_allowed());
        assert_eq!(s.take(0).wait(), Duration::from_micros(STEP_10));
        let horizon = s.horizon(0);
        // Back half a second early (a clock ahead): wait the half second.
        s.advance(STEP_10 - 500_000);
        assert_eq!(s.take_as(0, true).wait(), Duration::from_millis(500));
        assert_eq!(s.horizon(0), horizon, "no slot taken");
        s.advance(500_000);
        assert!(s.take_as(0, true).is_allowed());
    }

    #[test]
    fn tokens_of_slots_nobody_came_for_go_to_newcomers() {
        let mut s = Sim::new(10.0, 10.0);
        for _ in 0..9 {
            assert!(s.take(0).is_allowed());
        }
        // Three slots handed out (0.1, 6.1, 12.1 s: the first waits for
        // the guard); their messages never come (cancelled, say). At 11 s the
        // horizon (18.1 s) is still ahead, but the bucket holds 2.83
        // tokens: more than a holder due now can use, with the guard and
        // what accrues while it is up to 2 s late, so a newcomer takes one.
        let waits: Vec<u64> = (0..3)
            .map(|_| s.take(0).wait().as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![100, 6_100, 12_100]);
        s.advance(5 * SEC);
        assert!(!s.take(0).is_allowed(), "1.83 tokens: the holders'");
        s.advance(6 * SEC);
        assert!(s.take(0).is_allowed(), "2.83 tokens: one is spare");
    }

    #[test]
    fn very_high_rates_do_not_overflow_or_round_to_zero() {
        // 100 000 per second; the guard (100 ms) is 10 000 tokens.
        let mut s = Sim::new(6_000_000.0, 100_000.0);
        for _ in 0..90_000 {
            assert!(s.take(0).is_allowed());
        }
        let d = s.take(0);
        assert_eq!(d.wait(), Duration::from_micros(10));
        s.advance(10);
        assert!(s.take_as(0, true).is_allowed());
        assert_eq!(s.rate.spacing_us(1.0), 10);
    }

    #[test]
    fn a_clock_that_does_not_advance_mints_nothing() {
        // 600/min, burst 2: one send (the guard is a token), then nothing.
        let mut s = Sim::new(600.0, 2.0);
        assert!(s.take(0).is_allowed());
        for _ in 0..100 {
            assert!(!s.take(0).is_allowed());
        }
    }

    #[test]
    fn a_clock_that_runs_backwards_mints_nothing() {
        let mut s = Sim::new(600.0, 1.0);
        s.advance(10 * SEC);
        assert!(s.take(0).is_allowed());
        s.now -= 5 * SEC; // a skewed instance (client clock mode)
        assert!(!s.take(0).is_allowed());
        // 0.2 s after the last take: at 600/min a burst of 1 owes the guard,
        // a whole token, so its sends are two intervals apart.
        s.now += 5 * SEC + 200_000;
        assert!(s.take_as(0, true).is_allowed(), "back at its slot");
    }

    #[test]
    fn deferrals_are_spread_one_interval_apart() {
        let mut s = Sim::new(10.0, 1.0);
        assert!(s.take(0).is_allowed());
        let waits: Vec<u64> = (0..5)
            .map(|_| s.take(0).wait().as_micros() as u64)
            .collect();
        assert_eq!(waits, (1..=5).map(|k| k * STEP_10).collect::<Vec<_>>());
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
                reserve_percent: 0,
                held: false,
                limit: None,
                due_us: None,
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
        assert_eq!(reserve_tokens(10, 20), 2.0);
        let low = 20;
        let mut s = Sim::new(10.0, 10.0);
        let mut sent = 0;
        while s.take(low).is_allowed() {
            sent += 1;
        }
        assert_eq!(sent, 8);
        // A high message behind that low backlog goes at once; the next
        // high one waits only for the guard (its 100 ms of refill).
        assert!(s.take(0).is_allowed());
        assert!(about(s.take(0).wait(), 100));
    }

    #[test]
    fn low_alone_still_gets_the_full_rate() {
        let low = 20;
        let mut s = Sim::new(60.0, 10.0);
        let mut sent = 0;
        // One minute of a low-only backlog, each message tried every 10 ms
        // from its first denial (which gave it a slot) until it goes.
        let mut held = false;
        for _ in 0..6000 {
            held = !s.take_as(low, held).is_allowed();
            sent += usize::from(!held);
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

    #[test]
    fn an_own_limit_replaces_the_defaults() {
        let mut s = Sim::new(600.0, 10.0);
        s.own = Some(Rate {
            per_minute: 120.0,
            burst: 2.0,
        });
        // Burst 2 less the guard (0.2 of a token at 120/min): one at once.
        assert!(s.take(0).is_allowed());
        // 120 per minute: the guard is 0.1 s away, slots 0.5 s apart.
        assert_eq!(s.take(0).wait(), Duration::from_millis(100));
        assert_eq!(s.take(0).wait(), Duration::from_millis(600));
    }

    #[test]
    fn a_change_keeps_the_tokens_capped_at_the_new_burst() {
        let mut s = Sim::new(10.0, 10.0);
        assert_eq!(s.take(0), Decision::Allowed { tokens_left: 9.0 });
        s.own = Some(Rate {
            per_minute: 60.0,
            burst: 2.0,
        });
        // 9 tokens kept, capped at the new burst of 2.
        assert_eq!(s.take(0), Decision::Allowed { tokens_left: 1.0 });
        // One token left is less than one and the guard (0.1 at 60/min).
        assert!(about(s.take(0).wait(), 100));
        // Back to the defaults: the bucket is kept (one token), refilled at
        // 10/min: 0.9 s later it holds 1.15, enough with the guard.
        s.own = None;
        s.advance(900_000);
        let Decision::Allowed { tokens_left } = s.take_as(0, true) else {
            panic!("1.15 tokens are enough");
        };
        assert!((tokens_left - 0.15).abs() < 1e-9, "{tokens_left}");
        // A larger burst does not mint tokens: refill still counts from ts.
        s.own = Some(Rate {
            per_minute: 60.0,
            burst: 100.0,
        });
        s.advance(SEC);
        assert!(
            s.take_as(0, true).is_allowed(),
            "1 s at 60/min is one token"
        );
        assert!(!s.take(0).is_allowed());
    }

    #[test]
    fn reserves_come_from_the_burst_in_force() {
        // Default burst 10 reserves 2 for low; an own burst of 2 reserves
        // min(floor(0.4), 1) = 0, so low is still served (keeping only the
        // guard, a token at 600/min).
        let mut s = Sim::new(600.0, 10.0);
        s.own = Some(Rate {
            per_minute: 600.0,
            burst: 2.0,
        });
        assert!(s.take(20).is_allowed());
        assert!(!s.take(20).is_allowed());
        // Burst 5 at 50 %: low leaves 2.
        let mut s = Sim::new(600.0, 10.0);
        s.own = Some(Rate {
            per_minute: 600.0,
            burst: 5.0,
        });
        let sent = (0..10).filter(|_| s.take(50).is_allowed()).count();
        assert_eq!(sent, 3);
    }

    #[test]
    fn an_unusable_own_limit_falls_back_to_the_defaults() {
        let defaults = Rate {
            per_minute: 10.0,
            burst: 3.0,
        };
        for (per_minute, burst) in [(0.0, 2.0), (-5.0, 2.0), (60.0, 0.0), (60.0, 2.5)] {
            let own = Rate { per_minute, burst };
            assert_eq!(defaults.in_force(Some(own)), defaults, "{own:?}");
        }
        let own = Rate {
            per_minute: 0.5,
            burst: 1.0,
        };
        assert_eq!(defaults.in_force(Some(own)), own);
        assert_eq!(defaults.in_force(None), defaults);
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
                if s.take([0, 10, 20][reserves[i] as usize]).is_allowed() {
                    sent.push(s.now);
                }
            }
            let over = over_the_curve(&sent, per_minute, f64::from(burst));
            prop_assert!(over.is_none(), "{over:?}: (sends, in seconds)");
        }

        /// The guard's promise: within the contract's limits (1-600 a minute,
        /// a burst of 1-1000), however the calls' latencies differ (up to
        /// [`ARRIVAL_SPREAD_US`]), their arrivals at the upstream never
        /// exceed burst + rate * t / 60 in any interval of t seconds. Each
        /// message asks at its arrival, and a denied one comes back at its
        /// slot as a holder, as the consumer does.
        #[test]
        fn arrivals_keep_the_curve_whatever_the_latency_spread(
            per_minute in 1.0f64..=600.0,
            burst in 1u32..30,
            gaps in proptest::collection::vec(0u64..3_000_000, 1..200),
            latencies in proptest::collection::vec(0u64..=ARRIVAL_SPREAD_US, 400),
            reserves in proptest::collection::vec(0u8..4, 200),
            dues in proptest::collection::vec(proptest::option::of(0u64..120_000_000), 200),
        ) {
            let mut s = Sim::new(per_minute, f64::from(burst));
            let mut arrivals: Vec<u64> = Vec::new();
            let mut calls = latencies.iter();
            for (i, gap) in gaps.iter().enumerate() {
                s.advance(*gap);
                // Each message was due some time before it first asks (the
                // credit), and keeps that due time when it comes back.
                s.due = dues[i].map(|d| s.now - d);
                let pct = [0, 10, 20, 50][reserves[i] as usize];
                let mut held = false;
                loop {
                    let d = s.take_as(pct, held);
                    if d.is_allowed() {
                        arrivals.push(s.now + calls.next().copied().unwrap_or(0));
                        break;
                    }
                    s.advance(d.wait().as_micros() as u64);
                    held = true;
                }
            }
            arrivals.sort_unstable();
            let over = over_the_curve(&arrivals, per_minute, f64::from(burst));
            prop_assert!(over.is_none(), "{over:?}: (arrivals, in seconds)");
        }
    }
}
