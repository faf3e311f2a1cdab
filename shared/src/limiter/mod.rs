//! The per-account rate limiter: a token bucket kept in Redis and decided by
//! one Lua script, so every consumer instance shares one bucket and one clock.
//!
//! - Capacity `RATE_LIMIT_BURST`, refill `RATE_LIMIT_PER_MINUTE / 60` per
//!   second, one token per message.
//! - The clock is Redis `TIME`, read inside the script. Where `TIME` is not
//!   allowed in scripts (ElastiCache Serverless), `LIMITER_CLOCK=client`
//!   passes the caller's clock instead; the script never lets a bucket's
//!   time run backwards, so a lagging instance cannot mint tokens.
//! - Priority by reserved headroom: `high` may take all but the guard;
//!   `medium` and `low` only while their reserve stays in the bucket.
//! - The guard: every send leaves what refill adds in
//!   [`bucket::ARRIVAL_SPREAD_US`] (100 ms), since the upstream counts
//!   arrivals and two calls' latencies differ; a bucket drained to zero
//!   would grant sends exactly on the curve, and a call that arrives sooner
//!   than the one before it would break it ([`Rate::guard`]).
//! - A denied message gets the exact wait until it may go, spread one refill
//!   interval behind earlier deferrals of its priority class (the horizon), so
//!   a backlog comes back one message per token instead of all at once.
//! - A 429 from the upstream pauses the account for its `Retry-After`
//!   (a key every instance sees); the script answers `Paused` meanwhile.
//! - Per-account limits: an operator may give an account its own rate and
//!   burst (`PUT /v1/admin/accounts/{a}/limits`), stored in the account's
//!   `limits` hash ([`keys::limits`]). The script reads it in the same call
//!   as the bucket, falling back to the configured defaults, so a change
//!   applies to the account's next decision on every instance; the tokens in
//!   the bucket are kept, capped at the new burst. Priority reserves are
//!   percentages of the burst in force. [`AccountLimits`] is the port that
//!   reads and writes the hash.

pub mod bucket;

pub use bucket::{BucketState, Decision, Rate};

/// Where an account's limit comes from (`GET /v1/limits`' `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `RATE_LIMIT_PER_MINUTE` / `RATE_LIMIT_BURST`.
    Default,
    /// Set for this account by an operator.
    Account,
}

impl LimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Default => "default",
            LimitSource::Account => "account",
        }
    }
}

/// An account's own limit as an operator sets it: whole numbers in the
/// admin API's range. The only constructor checks it, so a stored limit is
/// always one the script uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimit {
    per_minute: u32,
    burst: u32,
}

/// Bounds of an account's own limit (the admin API's contract).
pub const PER_MINUTE_RANGE: std::ops::RangeInclusive<u32> = 1..=600;
pub const BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

impl AccountLimit {
    /// `None` when either value is out of range.
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        (PER_MINUTE_RANGE.contains(&per_minute) && BURST_RANGE.contains(&burst))
            .then_some(Self { per_minute, burst })
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn rate(&self) -> Rate {
        Rate {
            per_minute: f64::from(self.per_minute),
            burst: f64::from(self.burst),
        }
    }
}

/// The limit in force for one account, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitView {
    pub rate: Rate,
    pub source: LimitSource,
}

impl LimitView {
    /// `own` if stored, else the defaults.
    pub fn of(defaults: Rate, own: Option<AccountLimit>) -> Self {
        match own {
            Some(l) => Self {
                rate: l.rate(),
                source: LimitSource::Account,
            },
            None => Self {
                rate: defaults,
                source: LimitSource::Default,
            },
        }
    }
}

/// Reads and writes accounts' own limits (the producer's admin routes and
/// `GET /v1/limits`). The consumer never calls this: the limiter script
/// reads the same hash itself.
pub trait AccountLimits: Send + Sync {
    /// The limit in force for `account` (its own, or the defaults).
    fn limit(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<LimitView, LimiterError>> + Send;

    /// Gives `account` its own limit.
    fn set_limit(
        &self,
        account: &AccountId,
        limit: AccountLimit,
    ) -> impl Future<Output = Result<(), LimiterError>> + Send;

    /// Returns `account` to the defaults; `true` if it had its own limit.
    fn clear_limit(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<bool, LimiterError>> + Send;
}

/// An own limit as stored (hash fields as strings), if it is one the
/// script would use; anything else reads as "no own limit", as in the script.
fn parse_stored(per_minute: Option<String>, burst: Option<String>) -> Option<AccountLimit> {
    let p = per_minute?.trim().parse::<u32>().ok()?;
    let b = burst?.trim().parse::<u32>().ok()?;
    AccountLimit::new(p, b)
}

use crate::clock::Clock;
use crate::config::{LimiterClock, LimiterConfig};
use crate::durability::{Durability, DurabilityError, NotReplicated};
use crate::keys;
use crate::message::{AccountId, Priority};
use crate::redis_conn::RedisConn;
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
    /// A token was taken on the primary but too few replicas confirmed it
    /// ([`crate::durability`]): the message must not go on it.
    #[error(transparent)]
    NotReplicated(#[from] NotReplicated),
}

impl From<DurabilityError> for LimiterError {
    fn from(e: DurabilityError) -> Self {
        match e {
            DurabilityError::Redis(e) => LimiterError::Redis(e),
            DurabilityError::NotReplicated(n) => LimiterError::NotReplicated(n),
        }
    }
}

/// `HMGET bucket tokens ts`, `PTTL pause`, `TIME`, `HMGET limits perMinute burst`.
type ViewReply = (
    (Option<f64>, Option<u64>),
    i64,
    (u64, u64),
    (Option<String>, Option<String>),
);

/// A bucket as `GET /v1/status` shows it, with the limit in force.
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
    /// `held`: the message comes back at a slot an earlier denial gave it,
    /// and takes the token it was promised (denied, it gets the exact wait
    /// and no new slot); otherwise it queues behind the slots still ahead.
    /// `due_us`: when the message was due (accepted, or its `sendAt`), in
    /// microseconds since the Unix epoch, if known ([`Rate::credit`]).
    fn acquire_as(
        &self,
        account: &AccountId,
        priority: Priority,
        held: bool,
        due_us: Option<u64>,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send;

    /// [`Self::acquire_as`] for a message that holds no slot, due time unknown.
    fn acquire(
        &self,
        account: &AccountId,
        priority: Priority,
    ) -> impl Future<Output = Result<Decision, LimiterError>> + Send {
        self.acquire_as(account, priority, false, None)
    }

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
    conn: RedisConn,
    script: redis::Script,
    pause_script: redis::Script,
    config: LimiterConfig,
    /// The client clock (`LIMITER_CLOCK=client`) and the view's "now".
    clock: Clock,
    /// `WAIT` after a token is taken ([`RedisLimiter::confirm`]).
    durability: Durability,
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
    pub fn new(conn: impl Into<RedisConn>, config: LimiterConfig) -> Self {
        Self {
            conn: conn.into(),
            script: redis::Script::new(SCRIPT),
            pause_script: redis::Script::new(PAUSE_SCRIPT),
            config,
            clock: Clock::system(),
            durability: Durability::NONE,
        }
    }

    /// Confirms every token taken with `WAIT` before it is handed out.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// After the script: a granted token counts only once enough replicas
    /// hold it, so a failover cannot hand it back after the message went.
    /// (A denial writes only the horizon, whose loss cannot over-grant.)
    async fn confirm(
        &self,
        account: &AccountId,
        decision: Decision,
    ) -> Result<Decision, LimiterError> {
        if decision.is_allowed() {
            let mut conn = self.conn.clone();
            self.durability
                .confirm(&mut conn, &keys::bucket(account))
                .await?;
        }
        Ok(decision)
    }

    /// Reads the client clock from `clock` (virtual time in the simulation).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The default limit (an account without its own).
    pub fn rate(&self) -> Rate {
        self.config.default_rate()
    }

    /// The share of the burst in force `priority` must leave in the bucket.
    pub fn reserve_percent(&self, priority: Priority) -> u8 {
        match priority {
            Priority::High => 0,
            Priority::Medium => self.config.reserve_medium_percent,
            Priority::Low => self.config.reserve_low_percent,
        }
    }

    fn client_now_us(&self) -> u64 {
        match self.config.clock {
            LimiterClock::Redis => 0,
            LimiterClock::Client => self.clock.now_us().max(1),
        }
    }

    /// Runs the script with an explicit reserve and clock for a message
    /// without a slot.
    pub async fn acquire_raw(
        &self,
        account: &AccountId,
        priority: Priority,
        reserve_percent: u8,
        client_now_us: u64,
    ) -> Result<Decision, LimiterError> {
        self.acquire_with(account, priority, reserve_percent, client_now_us, false)
            .await
    }

    /// Runs the script with an explicit reserve, clock and slot.
    pub async fn acquire_with(
        &self,
        account: &AccountId,
        priority: Priority,
        reserve_percent: u8,
        client_now_us: u64,
        held: bool,
    ) -> Result<Decision, LimiterError> {
        self.acquire_step(account, priority, reserve_percent, client_now_us, held, 0)
            .await
            .map(|(decision, _)| decision)
    }

    /// [`Self::acquire_with`] for a message due at `due_us` (0: unknown;
    /// see [`Rate::credit`]), also returning the limit the script decided
    /// with (tests compare both with the Rust twin).
    pub async fn acquire_step(
        &self,
        account: &AccountId,
        priority: Priority,
        reserve_percent: u8,
        client_now_us: u64,
        held: bool,
        due_us: u64,
    ) -> Result<(Decision, Rate), LimiterError> {
        let mut conn = self.conn.clone();
        let rate = self.rate();
        // invoke_async sends EVALSHA and loads the script on NOSCRIPT.
        let reply: Vec<i64> = self
            .script
            .key(keys::bucket(account))
            .key(keys::horizon(account, priority))
            .key(keys::pause(account))
            .key(keys::limits(account))
            .arg(rate.per_minute)
            .arg(rate.burst)
            .arg(reserve_percent)
            .arg(client_now_us)
            .arg(KEY_TTL_MS)
            .arg(u8::from(held))
            .arg(due_us)
            .invoke_async(&mut conn)
            .await?;
        let [
            allowed,
            wait_us,
            tokens_milli,
            _now,
            reason,
            per_minute_milli,
            burst,
        ] = reply[..]
        else {
            return Err(LimiterError::Reply(format!("{reply:?}")));
        };
        let tokens = tokens_milli as f64 / 1000.0;
        let wait = Duration::from_micros(wait_us.max(0) as u64);
        let in_force = Rate {
            per_minute: per_minute_milli as f64 / 1000.0,
            burst: burst as f64,
        };
        let decision = match (allowed, reason) {
            (1, _) => Decision::Allowed {
                tokens_left: tokens,
            },
            (_, 2) => Decision::Paused { wait },
            _ => Decision::Throttled {
                wait,
                tokens,
                slack: in_force.slack(reserve_percent),
            },
        };
        Ok((decision, in_force))
    }
}

impl Limiter for RedisLimiter {
    async fn acquire_as(
        &self,
        account: &AccountId,
        priority: Priority,
        held: bool,
        due_us: Option<u64>,
    ) -> Result<Decision, LimiterError> {
        let (decision, _) = self
            .acquire_step(
                account,
                priority,
                self.reserve_percent(priority),
                self.client_now_us(),
                held,
                due_us.unwrap_or(0),
            )
            .await?;
        self.confirm(account, decision).await
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
        let ((tokens, ts), pause_ms, (secs, micros), (own_rate, own_burst)): ViewReply =
            redis::pipe()
                .cmd("HMGET")
                .arg(keys::bucket(account))
                .arg("tokens")
                .arg("ts")
                .cmd("PTTL")
                .arg(keys::pause(account))
                .cmd("TIME")
                .cmd("HMGET")
                .arg(keys::limits(account))
                .arg(LIMIT_FIELDS[0])
                .arg(LIMIT_FIELDS[1])
                .query_async(&mut conn)
                .await?;
        let now = match self.config.clock {
            LimiterClock::Redis => secs * 1_000_000 + micros,
            LimiterClock::Client => self.client_now_us(),
        };
        let state = tokens.zip(ts).map(|(tokens, ts_us)| BucketState {
            tokens,
            ts_us,
            credit: 0.0,
        });
        let rate = LimitView::of(self.rate(), parse_stored(own_rate, own_burst)).rate;
        Ok(BucketView {
            // A small bucket's debt (`Rate::need_and_take`) shows as none.
            tokens: rate.tokens_at(state, now).max(0.0),
            per_minute: rate.per_minute,
            burst: rate.burst,
            paused_for: (pause_ms > 0).then(|| Duration::from_millis(pause_ms as u64)),
        })
    }
}

/// The `limits` hash's fields, as `token_bucket.lua` reads them.
const LIMIT_FIELDS: [&str; 2] = ["perMinute", "burst"];

impl AccountLimits for RedisLimiter {
    async fn limit(&self, account: &AccountId) -> Result<LimitView, LimiterError> {
        let mut conn = self.conn.clone();
        let (per_minute, burst): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(keys::limits(account))
            .arg(LIMIT_FIELDS[0])
            .arg(LIMIT_FIELDS[1])
            .query_async(&mut conn)
            .await?;
        Ok(LimitView::of(self.rate(), parse_stored(per_minute, burst)))
    }

    /// One `HSET` of both fields, so the script never sees half a limit.
    /// The hash has no expiry: it is configuration, kept until deleted.
    async fn set_limit(
        &self,
        account: &AccountId,
        limit: AccountLimit,
    ) -> Result<(), LimiterError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("HSET")
            .arg(keys::limits(account))
            .arg(LIMIT_FIELDS[0])
            .arg(limit.per_minute())
            .arg(LIMIT_FIELDS[1])
            .arg(limit.burst())
            .query_async(&mut conn)
            .await?;
        self.durability
            .confirm(&mut conn, &keys::limits(account))
            .await?;
        Ok(())
    }

    async fn clear_limit(&self, account: &AccountId) -> Result<bool, LimiterError> {
        let mut conn = self.conn.clone();
        let removed: u64 = redis::cmd("DEL")
            .arg(keys::limits(account))
            .query_async(&mut conn)
            .await?;
        self.durability
            .confirm(&mut conn, &keys::limits(account))
            .await?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_limit_holds_only_the_admin_range() {
        assert!(AccountLimit::new(1, 1).is_some());
        assert!(AccountLimit::new(600, 1000).is_some());
        for (p, b) in [(0, 1), (601, 1), (1, 0), (1, 1001)] {
            assert_eq!(AccountLimit::new(p, b), None, "{p}/{b}");
        }
    }

    #[test]
    fn a_stored_limit_is_read_as_the_script_reads_it() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(parse_stored(s("120"), s("2")), AccountLimit::new(120, 2));
        assert_eq!(parse_stored(s("120"), None), None);
        assert_eq!(parse_stored(None, s("2")), None);
        assert_eq!(parse_stored(s("0"), s("2")), None);
        assert_eq!(parse_stored(s("abc"), s("2")), None);
        assert_eq!(parse_stored(s("12"), s("2.5")), None);
    }

    #[test]
    fn a_view_says_where_the_limit_comes_from() {
        let d = Rate {
            per_minute: 10.0,
            burst: 10.0,
        };
        assert_eq!(LimitView::of(d, None).source, LimitSource::Default);
        let own = LimitView::of(d, AccountLimit::new(120, 2));
        assert_eq!(own.source, LimitSource::Account);
        assert_eq!(own.rate.per_minute, 120.0);
        assert_eq!(own.rate.burst, 2.0);
    }
}
