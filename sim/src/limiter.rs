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

fn class(p: Priority) -> usize {
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
    /// The rate the script is given.
    rate: Rate,
    /// Tokens each class must leave (high, medium, low).
    reserve: [f64; 3],
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
            reserve: [
                0.0,
                bucket::reserve_tokens(burst, reserve_pct.0),
                bucket::reserve_tokens(burst, reserve_pct.1),
            ],
            down: Arc::default(),
        }
    }

    /// A deliberately broken twin: every bucket holds one token more than
    /// the limit (the checker must catch it).
    pub fn with_extra_token(mut self) -> Self {
        self.rate.burst += 1.0;
        self
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
    async fn acquire(
        &self,
        account: &AccountId,
        priority: Priority,
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
        let out = bucket::decide(
            self.rate,
            Input {
                bucket,
                horizon_us,
                pause_us,
                now_us,
                reserve: self.reserve[c],
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
        for _ in 0..10 {
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
                    .as_secs(),
            );
        }
        assert_eq!(waits, vec![6, 12, 18]);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(
            l.acquire(&acct(), Priority::High)
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
        let l = TwinLimiter::new(Clock::starting_at(crate::engine::WALL_START), 10, 2, (0, 0));
        assert!(
            l.acquire(&acct(), Priority::High)
                .await
                .unwrap()
                .is_allowed()
        );
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
