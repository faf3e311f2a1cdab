//! The per-account rate limiter: a token bucket kept in Redis and decided by
//! one Lua script, so every consumer instance shares one bucket and one clock.
//!
//! - Capacity `RATE_LIMIT_BURST`, refill `RATE_LIMIT_PER_MINUTE / 60` per
//!   second, one token per message.
//! - The clock is Redis `TIME`, read inside the script. Where `TIME` is not
//!   allowed in scripts (ElastiCache Serverless), `LIMITER_CLOCK=client`
//!   passes the caller's clock instead; the script never lets a bucket's
//!   time run backwards, so a lagging instance cannot mint tokens.
//! - Priority by reserved headroom: `high` may take the last token; `medium`
//!   and `low` only while their reserve stays in the bucket.
//! - A denied message gets the exact wait until it may go, spread one refill
//!   interval behind earlier deferrals of its priority class (the horizon), so
//!   a backlog comes back one message per token instead of all at once.
//! - A 429 from the upstream pauses the account for its `Retry-After`
//!   (a key every instance sees); the script answers `Paused` meanwhile.

pub mod bucket;

pub use bucket::{BucketState, Decision, Rate};

use crate::clock::Clock;
use crate::config::{LimiterClock, LimiterConfig};
use crate::keys;
use crate::message::{AccountId, Priority};
use redis::aio::ConnectionManager;
use std::time::Duration;

/// The Lua source; also read by the benchmark to drive `redis-benchmark`.
pub const SCRIPT: &str = include_str!("token_bucket.lua");

/// Keys live a day past their last use; an idle bucket is full again long
/// before that, so expiring it loses nothing.
const KEY_TTL_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the limiter script: {0}")]
    Reply(String),
}

/// `HMGET bucket tokens ts`, `PTTL pause`, `TIME`.
type ViewReply = ((Option<f64>, Option<u64>), i64, (u64, u64));

/// A bucket as `GET /v1/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketView {
    pub tokens: f64,
    pub per_minute: f64,
    pub burst: f64,
    /// Remaining upstream pause, if any.
    pub paused_for: Option<Duration>,
}

/// The port the consumer's delivery logic needs from a limiter.
pub trait Limiter: Send + Sync {
    /// Takes a token for one message of `account`, or says how long to wait.
    fn acquire(
        &self,
        account: &AccountId,
        priority: Priority,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send;

    /// Pauses `account` for `wait` (the upstream's `Retry-After`).
    fn pause(
        &self,
        account: &AccountId,
        wait: Duration,
    ) -> impl Future<Output = Result<(), LimiterError>> + Send;
}

/// Read-only access to an account's token bucket (`GET /v1/status`).
pub trait BucketViewer: Send + Sync {
    fn view(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<BucketView, LimiterError>> + Send;
}

/// The Redis limiter. Built once at cold start; cheap to clone.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    pause_script: redis::Script,
    config: LimiterConfig,
    /// The client clock (`LIMITER_CLOCK=client`) and the view's "now".
    clock: Clock,
}

/// Sets the pause unless a longer one is already in force: two instances
/// seeing different `Retry-After`s keep the longer.
const PAUSE_SCRIPT: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
";

impl RedisLimiter {
    pub fn new(conn: ConnectionManager, config: LimiterConfig) -> Self {
        Self {
            conn,
            script: redis::Script::new(SCRIPT),
            pause_script: redis::Script::new(PAUSE_SCRIPT),
            config,
            clock: Clock::system(),
        }
    }

    /// Reads the client clock from `clock` (virtual time in the simulation).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn rate(&self) -> Rate {
        Rate {
            per_minute: f64::from(self.config.per_minute.get()),
            burst: f64::from(self.config.burst.get()),
        }
    }

    /// Tokens `priority` must leave in the bucket.
    pub fn reserve(&self, priority: Priority) -> f64 {
        let pct = match priority {
            Priority::High => 0,
            Priority::Medium => self.config.reserve_medium_percent,
            Priority::Low => self.config.reserve_low_percent,
        };
        bucket::reserve_tokens(self.config.burst.get(), pct)
    }

    fn client_now_us(&self) -> u64 {
        match self.config.clock {
            LimiterClock::Redis => 0,
            LimiterClock::Client => self.clock.now_us().max(1),
        }
    }

    /// Runs the script with an explicit reserve and clock (tests compare this
    /// with the Rust twin).
    pub async fn acquire_raw(
        &self,
        account: &AccountId,
        priority: Priority,
        reserve: f64,
        client_now_us: u64,
    ) -> Result<Decision, LimiterError> {
        let mut conn = self.conn.clone();
        let rate = self.rate();
        // invoke_async sends EVALSHA and loads the script on NOSCRIPT.
        let reply: Vec<i64> = self
            .script
            .key(keys::bucket(account))
            .key(keys::horizon(account, priority))
            .key(keys::pause(account))
            .arg(rate.per_minute)
            .arg(rate.burst)
            .arg(reserve)
            .arg(client_now_us)
            .arg(KEY_TTL_MS)
            .invoke_async(&mut conn)
            .await?;
        let [allowed, wait_us, tokens_milli, _now, reason] = reply[..] else {
            return Err(LimiterError::Reply(format!("{reply:?}")));
        };
        let tokens = tokens_milli as f64 / 1000.0;
        let wait = Duration::from_micros(wait_us.max(0) as u64);
        Ok(match (allowed, reason) {
            (1, _) => Decision::Allowed {
                tokens_left: tokens,
            },
            (_, 2) => Decision::Paused { wait },
            _ => Decision::Throttled { wait, tokens },
        })
    }
}

impl Limiter for RedisLimiter {
    async fn acquire(
        &self,
        account: &AccountId,
        priority: Priority,
    ) -> Result<Decision, LimiterError> {
        self.acquire_raw(
            account,
            priority,
            self.reserve(priority),
            self.client_now_us(),
        )
        .await
    }

    async fn pause(&self, account: &AccountId, wait: Duration) -> Result<(), LimiterError> {
        let mut conn = self.conn.clone();
        let ms = wait.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let _: () = self
            .pause_script
            .key(keys::pause(account))
            .arg(ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

impl BucketViewer for RedisLimiter {
    /// Reads an account's bucket without taking from it.
    async fn view(&self, account: &AccountId) -> Result<BucketView, LimiterError> {
        let mut conn = self.conn.clone();
        let ((tokens, ts), pause_ms, (secs, micros)): ViewReply = redis::pipe()
            .cmd("HMGET")
            .arg(keys::bucket(account))
            .arg("tokens")
            .arg("ts")
            .cmd("PTTL")
            .arg(keys::pause(account))
            .cmd("TIME")
            .query_async(&mut conn)
            .await?;
        let now = match self.config.clock {
            LimiterClock::Redis => secs * 1_000_000 + micros,
            LimiterClock::Client => self.client_now_us(),
        };
        let state = tokens
            .zip(ts)
            .map(|(tokens, ts_us)| BucketState { tokens, ts_us });
        let rate = self.rate();
        Ok(BucketView {
            tokens: rate.tokens_at(state, now),
            per_minute: rate.per_minute,
            burst: rate.burst,
            paused_for: (pause_ms > 0).then(|| Duration::from_millis(pause_ms as u64)),
        })
    }
}
