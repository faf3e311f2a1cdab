//! The Redis model of the limiter: per-account keys as `token_bucket.lua`
//! keeps them (the bucket hash, one horizon per priority class, the pause
//! key), each with the expiry the script gives it, decided by the script's
//! Rust twin [`bucket::decide`] (proven equal to the script in
//! `shared/tests/redis.rs`). The clock is the client clock mode's: the
//! simulation's wall time, which stands in for Redis `TIME` too.

use shared::clock::Clock;
use shared::limiter::bucket::{self, BucketState, Input, Rate};
use shared::limiter::{Decision, Limiter, LimiterError};
use shared::message::{AccountId, Priority};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `KEY_TTL_MS` in shared/src/limiter/mod.rs.
const KEY_TTL_US: u64 = 24 * 3600 * 1_000_000;

#[derive(Debug, Default, Clone, Copy)]
struct Keys {
    /// The bucket hash and when it expires.
    bucket: Option<(BucketState, u64)>,
    /// The horizon per priority (high, medium, low) and when it expires.
    horizon: [Option<(u64, u64)>; 3],
    /// When the pause key expires (ms, as PTTL counts).
    pause_until_ms: Option<u64>,
}

/// The limiter's keys at one moment (a replica's copy).
#[derive(Debug, Clone, Default)]
pub struct LimiterKeys(HashMap<String, Keys>);

/// A priority's index in per-class arrays: high, medium, low.
pub(crate) fn class(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Medium => 1,
        Priority::Low => 2,
    }
}

/// The limiter twin. Cheap to clone; clones share the keys.
#[derive(Clone)]
pub struct TwinLimiter {
    keys: Arc<Mutex<HashMap<String, Keys>>>,
    clock: Clock,
    /// The default rate the script is given.
    rate: Rate,
    /// Accounts' own limits (each account's `limits` hash).
    own: Arc<Mutex<HashMap<String, Rate>>>,
    /// The share of the burst each class must leave (high, medium, low).
    reserve_pct: [u8; 3],
    /// Every bucket one token over its limit (a deliberately broken twin).
    extra_token: bool,
    /// Redis does not answer (a failover in progress).
    pub down: Arc<AtomicBool>,
}

impl TwinLimiter {
    pub fn new(clock: Clock, per_minute: u32, burst: u32, reserve_pct: (u8, u8)) -> Self {
        Self {
            keys: Arc::default(),
            clock,
            rate: Rate {
                per_minute: f64::from(per_minute),
                burst: f64::from(burst),
            },
            own: Arc::default(),
            reserve_pct: [0, reserve_pct.0, reserve_pct.1],
            extra_token: false,
            down: Arc::default(),
        }
    }

    /// A deliberately broken twin: every bucket holds one token more than
    /// the limit (the checker must catch it).
    pub fn with_extra_token(mut self) -> Self {
        self.extra_token = true;
        self
    }

    /// Every key as it is now (what a replica that far behind will have).
    pub fn snapshot(&self) -> LimiterKeys {
        LimiterKeys(self.keys.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// A failover to a replica that had `older`: every key goes back to it,
    /// except, with `keep_waited`, the buckets (a token taken is the only
    /// bucket write, and the adapter `WAIT`s for it), whose state now is on
    /// the replica. Slots (horizons) and pauses are never waited for.
    pub fn fail_over_to(&self, older: &LimiterKeys, keep_waited: bool) {
        let mut now = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let mut promoted = older.0.clone();
        if keep_waited {
            for (account, keys) in now.iter() {
                promoted.entry(account.clone()).or_default().bucket = keys.bucket;
            }
        }
        *now = promoted;
    }

    /// Gives `account` its own limit (`None`: back to the defaults), as
    /// `PUT`/`DELETE /v1/admin/accounts/{a}/limits` write the hash the
    /// script reads.
    pub fn set_limit(&self, account: &AccountId, limit: Option<Rate>) {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        match limit {
            Some(l) => own.insert(account.as_str().to_owned(), l),
            None => own.remove(account.as_str()),
        };
    }

    /// Loses every key (a failover to a replica that had none of them).
    pub fn forget_all(&self) {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn check(&self) -> Result<(), LimiterError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LimiterError::Reply("simulated Redis outage".into()));
        }
        Ok(())
    }
}

impl Limiter for TwinLimiter {
    async fn acquire_as(
        &self,
        account: &AccountId,
        priority: Priority,
        held: bool,
        due_us: Option<u64>,
    ) -> Result<Decision, LimiterError> {
        self.check()?;
        let now_us = self.clock.now_us().max(1);
        let now_ms = now_us / 1000;
        let mut all = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let k = all.entry(account.as_str().to_owned()).or_default();
        let c = class(priority);
        // Expired keys read as missing, as in Redis.
        let bucket = k.bucket.filter(|(_, exp)| *exp > now_us).map(|(b, _)| b);
        let horizon_us = k.horizon[c]
            .filter(|(_, exp)| *exp > now_us)
            .map(|(h, _)| h);
        // PTTL in ms; the script turns it into microseconds.
        let pause_us = k
            .pause_until_ms
            .filter(|until| *until > now_ms)
            .map(|until| (until - now_ms) * 1000);
        let own = self
            .own
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(account.as_str())
            .copied();
        let (mut defaults, mut own) = (self.rate, own);
        if self.extra_token {
            defaults.burst += 1.0;
            if let Some(o) = own.as_mut() {
                o.burst += 1.0;
            }
        }
        let out = bucket::decide(
            defaults,
            Input {
                bucket,
                horizon_us,
                pause_us,
                now_us,
                reserve_percent: self.reserve_pct[c],
                held,
                limit: own,
                due_us,
            },
        );
        if let Some(b) = out.bucket {
            // HSET then PEXPIRE ttl.
            k.bucket = Some((b, now_us + KEY_TTL_US));
        }
        if let Some(next_free) = out.horizon_us {
            // SET horizon PX ceil((next_free - now) / 1000) + ttl, where the
            // script's `now` is the bucket's (never behind its ts).
            let script_now = bucket.map_or(now_us, |b| b.ts_us.max(now_us));
            let px_ms = next_free.saturating_sub(script_now).div_ceil(1000) + KEY_TTL_US / 1000;
            k.horizon[c] = Some((next_free, now_us + px_ms * 1000));
        }
        Ok(out.decision)
    }

    async fn pause(&self, account: &AccountId, wait: Duration) -> Result<(), LimiterError> {
        self.check()?;
        let now_ms = self.clock.now_us() / 1000;
        let ms = wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let mut all = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let k = all.entry(account.as_str().to_owned()).or_default();
        // PAUSE_SCRIPT: set unless a longer pause is in force.
        let pttl = k
            .pause_until_ms
            .filter(|u| *u > now_ms)
            .map_or(-2i64, |u| (u - now_ms) as i64);
        if pttl < ms as i64 {
            k.pause_until_ms = Some(now_ms + ms);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> AccountId {
        AccountId::parse("a").unwrap_or_else(|e| panic!("{}", e.0))
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_slots_one_interval_apart_then_refill() {
        let l = TwinLimiter::new(
            Clock::starting_at(crate::engine::WALL_START),
            10,
            10,
            (10, 20),
        );
        // The burst less the guard (what 100 ms refills): nine at once.
        for _ in 0..9 {
            assert!(
                l.acquire(&acct(), Priority::High)
                    .await
                    .unwrap()
                    .is_allowed()
            );
        }
        let mut waits = Vec::new();
        for _ in 0..3 {
            waits.push(
                l.acquire(&acct(), Priority::High)
                    .await
                    .unwrap()
                    .wait()
                    .as_millis(),
            );
        }
        assert_eq!(waits, vec![100, 6_100, 12_100]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        // A newcomer queues behind the three slots (the next free one is at
        // 18.1 s); the first slot's holder takes its token.
        assert_eq!(
            l.acquire(&acct(), Priority::High)
                .await
                .unwrap()
                .wait()
                .as_millis(),
            12_100
        );
        assert!(
            l.acquire_as(&acct(), Priority::High, true, None)
                .await
                .unwrap()
                .is_allowed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_own_limit_applies_to_the_next_decision() {
        let l = TwinLimiter::new(
            Clock::starting_at(crate::engine::WALL_START),
            600,
            10,
            (10, 20),
        );
        l.set_limit(
            &acct(),
            Some(Rate {
                per_minute: 60.0,
                burst: 2.0,
            }),
        );
        // Low's 20 % of a burst of 2 reserves nothing; it keeps the guard
        // (0.1 of a token at 60/min): one at once, the next 0.1 s later.
        assert!(
            l.acquire(&acct(), Priority::Low)
                .await
                .unwrap()
                .is_allowed()
        );
        assert_eq!(
            l.acquire(&acct(), Priority::Low)
                .await
                .unwrap()
                .wait()
                .as_millis(),
            100
        );
        l.set_limit(&acct(), None);
        // Back to 600/min, where the guard is a whole token: the bucket's
        // one token becomes two after 0.1 s (at 60/min it would take 1 s);
        // high has no slots ahead, so it goes then.
        tokio::time::sleep(Duration::from_millis(99)).await;
        let d = l.acquire(&acct(), Priority::High).await.unwrap();
        assert!(
            !d.is_allowed() && d.wait() <= Duration::from_millis(1),
            "{d:?}"
        );
        // The denied message comes back at the slot it was given.
        tokio::time::sleep(d.wait()).await;
        assert!(
            l.acquire_as(&acct(), Priority::High, true, None)
                .await
                .unwrap()
                .is_allowed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_class_and_the_longer_one_wins() {
        let l = TwinLimiter::new(
            Clock::starting_at(crate::engine::WALL_START),
            10,
            10,
            (10, 20),
        );
        l.pause(&acct(), Duration::from_secs(30)).await.unwrap();
        l.pause(&acct(), Duration::from_secs(10)).await.unwrap();
        let d = l.acquire(&acct(), Priority::High).await.unwrap();
        assert_eq!(
            d,
            Decision::Paused {
                wait: Duration::from_secs(30)
            }
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            l.acquire(&acct(), Priority::Low)
                .await
                .unwrap()
                .is_allowed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_fails_and_lost_keys_refill_the_bucket() {
        // A burst of 2 at 10/min: one at once (the second would leave less
        // than the guard), then nothing.
        let l = TwinLimiter::new(Clock::starting_at(crate::engine::WALL_START), 10, 2, (0, 0));
        assert!(
            l.acquire(&acct(), Priority::High)
                .await
                .unwrap()
                .is_allowed()
        );
        assert!(
            !l.acquire(&acct(), Priority::High)
                .await
                .unwrap()
                .is_allowed()
        );
        l.down.store(true, Ordering::SeqCst);
        assert!(l.acquire(&acct(), Priority::High).await.is_err());
        l.down.store(false, Ordering::SeqCst);
        l.forget_all();
        assert!(
            l.acquire(&acct(), Priority::High)
                .await
                .unwrap()
                .is_allowed()
        );
    }
}
