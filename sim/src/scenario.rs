//! Scenario files (`sim/scenarios/*.toml`): what runs, for how long, on what
//! settings, and the traffic. Every value a file controls is checked here, so
//! a bad file is a clear error and never a panic further on.

use serde::Deserialize;
use shared::message::Priority;
use std::path::Path;

/// One scenario as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Seeds every random choice of the run (traffic, latencies, SQS
    /// duplicates, the consumer's backoff jitter).
    pub seed: u64,
    /// Simulated seconds during which traffic arrives.
    pub duration_s: u64,
    /// Simulated seconds after that for the backlog to go out; what is still
    /// queued then is reported as `pending`.
    #[serde(default = "defaults::drain_s")]
    pub drain_s: u64,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub queue: QueueCfg,
    #[serde(default)]
    pub lambda: LambdaCfg,
    #[serde(default)]
    pub upstream: UpstreamCfg,
    #[serde(default)]
    pub consumer: ConsumerCfg,
    #[serde(default)]
    pub redis: RedisCfg,
    #[serde(default)]
    pub faults: Faults,
    pub traffic: Vec<Traffic>,
}

/// The Redis deployment the functions run against.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisCfg {
    /// `REDIS_WAIT_REPLICAS` (shared/src/durability.rs): with 1 or more, the
    /// writes the adapters follow with `WAIT` (a token taken, a claim, a
    /// terminal status, an idempotency reservation) are on the replica before
    /// the caller goes on, so a failover cannot lose them; every other write
    /// (a denial's slot, a pause, a `queued` or `deferred` status) it can.
    /// The template sets 1 in production (NumCacheClusters - 1).
    pub wait_replicas: u32,
}

mod defaults {
    pub fn drain_s() -> u64 {
        3600
    }
}

/// The default per-account limit, and accounts with a limit of their own
/// (as `PUT /v1/admin/accounts/{a}/limits` gives one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub per_minute: u32,
    pub burst: u32,
    pub reserve_medium_percent: u8,
    pub reserve_low_percent: u8,
    /// `[[limits.accounts]]`: an account (by its workload name, such as
    /// `vip_0`) and its own limit.
    pub accounts: Vec<OwnLimit>,
}

/// One account's own limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnLimit {
    pub account: String,
    pub per_minute: u32,
    pub burst: u32,
}

impl Limits {
    /// The limit in force for `account`: (per minute, burst).
    pub fn of(&self, account: &str) -> (f64, f64) {
        let (p, b) = self
            .accounts
            .iter()
            .find(|o| o.account == account)
            .map_or((self.per_minute, self.burst), |o| (o.per_minute, o.burst));
        (f64::from(p), f64::from(b))
    }
}

impl Default for Limits {
    fn default() -> Self {
        // shared/src/config.rs defaults
        Self {
            per_minute: 10,
            burst: 10,
            reserve_medium_percent: 10,
            reserve_low_percent: 20,
            accounts: Vec::new(),
        }
    }
}

/// The main queue and its redrive policy (template.yaml's values by default).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueCfg {
    pub visibility_timeout_s: u32,
    pub max_receive_count: u32,
    /// Share of receives that leave the message visible for a second
    /// receiver at once (SQS's at-least-once delivery).
    pub duplicate_rate: f64,
    pub retention_s: u64,
    /// SQS fair queues: every send carries `MessageGroupId = accountId`
    /// (`shared::queue`), which makes a standard queue fair in AWS; a
    /// receive then serves quiet groups ahead of noisy ones
    /// (`crate::queue`'s module doc). `false` models a queue that ignores
    /// the group, as the local SQS server (moto) does.
    pub fair: bool,
}

impl Default for QueueCfg {
    fn default() -> Self {
        Self {
            visibility_timeout_s: 390,
            max_receive_count: 100,
            duplicate_rate: 0.0,
            retention_s: 14 * 24 * 3600,
            fair: true,
        }
    }
}

/// The consumer function and its event source mapping.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaCfg {
    pub max_concurrency: u32,
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`: a batch short of `batch_size` is
    /// held this long for more records (template.yaml's default 1 s).
    pub batching_window_s: u64,
    pub timeout_s: u64,
    pub memory_mb: u32,
}

impl Default for LambdaCfg {
    fn default() -> Self {
        Self {
            max_concurrency: 2,
            batch_size: 10,
            batching_window_s: 1,
            timeout_s: 60,
            memory_mb: 256,
        }
    }
}

/// The OnlyFans API model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamCfg {
    /// Spells during which every request is answered 429 with `Retry-After`.
    pub storm: Vec<Storm>,
    /// Spells during which every request is answered 503 (a 5xx storm).
    pub outage: Vec<UpstreamOutage>,
    pub latency_ms: u64,
    /// Uniform extra latency in [0, jitter_ms).
    pub jitter_ms: u64,
    /// Share of calls answered 503 (transient).
    pub error_rate: f64,
}

impl Default for UpstreamCfg {
    fn default() -> Self {
        Self {
            storm: Vec::new(),
            outage: Vec::new(),
            latency_ms: 150,
            jitter_ms: 100,
            error_rate: 0.0,
        }
    }
}

/// A 429 storm: from `at_s` for `for_s` seconds the upstream answers every
/// request 429 with `Retry-After: retry_after_s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storm {
    pub at_s: u64,
    pub for_s: u64,
    pub retry_after_s: u64,
}

/// A 5xx storm: from `at_s` for `for_s` seconds every request is answered 503.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOutage {
    pub at_s: u64,
    pub for_s: u64,
}

/// Consumer settings a scenario may change.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerCfg {
    pub deferral: Deferral,
    pub in_process_wait_ms: u64,
    pub max_attempts: u32,
    pub upstream_timeout_ms: u64,
}

impl Default for ConsumerCfg {
    fn default() -> Self {
        Self {
            deferral: Deferral::Spread,
            in_process_wait_ms: 1500,
            max_attempts: 5,
            upstream_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deferral {
    Spread,
    Naive,
}

/// Deliberate defects and injected hardship.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// The limiter twin's buckets hold one token more than the limit (a
    /// defect, to prove the checker catches it).
    pub limiter_extra_token: bool,
    /// Spells during which Redis answers nothing (a failover).
    pub redis_outage: Vec<Outage>,
    /// Share of invocations whose process dies at a random moment in their
    /// first `crash_within_ms` (nothing of the batch is deleted, no claim
    /// released, no status written after that moment).
    pub crash_rate: f64,
    pub crash_within_ms: u64,
    /// A defect, to prove the checker catches it: the first half-open probe
    /// of the upstream's circuit breaker is taken and never settled (its
    /// permit leaked with `mem::forget`), as a copy of the delivery policy
    /// that forgot to settle the probe on one path would do. The breaker then
    /// refuses every call for the instance's life.
    pub breaker_probe_leak: bool,
}

/// Redis unreachable from `at_s` for `for_s` seconds. With `loses_ms` it is
/// a failover to a replica `loses_ms` behind (asynchronous replication): the
/// promoted replica has the data as it was `loses_ms` before `at_s`, except
/// what `[redis] wait_replicas` had it acknowledge. With
/// `loses_limiter_keys` the promoted replica has none of the limiter's keys:
/// every bucket is full again afterwards.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub at_s: u64,
    pub for_s: u64,
    #[serde(default)]
    pub loses_ms: u64,
    #[serde(default)]
    pub loses_limiter_keys: bool,
}

/// Where messages come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Traffic {
    /// A Poisson stream of `per_hour` messages over `accounts` accounts,
    /// each message's account drawn by Zipf's law with exponent `zipf`
    /// (0: uniform).
    Steady {
        prefix: String,
        accounts: u32,
        per_hour: f64,
        #[serde(default)]
        zipf: f64,
        #[serde(default)]
        priority: Priority,
    },
    /// `messages` per account, arriving uniformly in `[at_s, at_s + over_s]`.
    Burst {
        prefix: String,
        accounts: u32,
        messages: u32,
        #[serde(default)]
        at_s: f64,
        #[serde(default)]
        over_s: f64,
        #[serde(default)]
        priority: Priority,
        /// Enqueued as `POST /v1/campaigns` enqueues: `SendMessageBatch`,
        /// ten messages to a request (consecutive messages of this source).
        #[serde(default)]
        campaign: bool,
    },
}

/// SQS's limits on a visibility timeout, in seconds (0 to 12 hours).
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html>
pub const MAX_VISIBILITY_S: u32 = 43_200;
/// SQS keeps a message at most 14 days (`MessageRetentionPeriod` 60 s to 1,209,600 s).
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html>
pub const MAX_RETENTION_S: u64 = 1_209_600;

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let bad = |what: &str| Err(anyhow::anyhow!("{what}"));
        if self.name.is_empty() {
            return bad("name must not be empty");
        }
        if self.duration_s == 0 {
            return bad("duration_s must be at least 1");
        }
        let l = &self.limits;
        if !(1..=600).contains(&l.per_minute) || !(1..=1000).contains(&l.burst) {
            return bad(
                "limits: per_minute must be 1-600 and burst 1-1000 (the admin API's range)",
            );
        }
        for o in &l.accounts {
            if !(1..=600).contains(&o.per_minute) || !(1..=1000).contains(&o.burst) {
                return bad("limits.accounts: per_minute must be 1-600 and burst 1-1000");
            }
        }
        if l.reserve_medium_percent > 100 || l.reserve_low_percent > 100 {
            return bad("limits: reserve percentages must be 0-100");
        }
        let q = &self.queue;
        if q.visibility_timeout_s > MAX_VISIBILITY_S {
            return bad("queue.visibility_timeout_s must be 0-43200 (SQS's limit)");
        }
        if !(1..=1000).contains(&q.max_receive_count) {
            return bad("queue.max_receive_count must be 1-1000 (SQS's redrive limit)");
        }
        if !(0.0..=1.0).contains(&q.duplicate_rate) {
            return bad("queue.duplicate_rate must be in [0, 1]");
        }
        if !(60..=MAX_RETENTION_S).contains(&q.retention_s) {
            return bad("queue.retention_s must be 60-1209600 (SQS's limits)");
        }
        let f = &self.lambda;
        if !(2..=1000).contains(&f.max_concurrency) {
            return bad("lambda.max_concurrency must be 2-1000 (SQS event source limits)");
        }
        if !(1..=10_000).contains(&f.batch_size) || (f.batch_size > 10 && f.batching_window_s == 0)
        {
            return bad(
                "lambda.batch_size must be 1-10, or up to 10,000 with a batching window of at least 1 s (Lambda's limits for a standard queue)",
            );
        }
        if f.batching_window_s > 300 {
            return bad("lambda.batching_window_s must be 0-300 (Lambda's limit)");
        }
        if !(1..=900).contains(&f.timeout_s) {
            return bad("lambda.timeout_s must be 1-900");
        }
        if !(128..=10_240).contains(&f.memory_mb) {
            return bad("lambda.memory_mb must be 128-10240");
        }
        let u = &self.upstream;
        if !(0.0..=1.0).contains(&u.error_rate) {
            return bad("upstream.error_rate must be in [0, 1]");
        }
        if u.latency_ms + u.jitter_ms > 60_000 {
            return bad("upstream latency plus jitter must stay under 60 s");
        }
        for (i, st) in u.storm.iter().enumerate() {
            if st.for_s == 0 || st.retry_after_s == 0 || st.retry_after_s > 3600 {
                return bad(&format!(
                    "upstream.storm[{i}]: for_s must be positive and retry_after_s 1-3600"
                ));
            }
        }
        for (i, o) in u.outage.iter().enumerate() {
            if o.for_s == 0 {
                return bad(&format!("upstream.outage[{i}]: for_s must be positive"));
            }
        }
        let c = &self.consumer;
        if c.max_attempts == 0 || c.upstream_timeout_ms == 0 {
            return bad("consumer.max_attempts and upstream_timeout_ms must be at least 1");
        }
        for (i, o) in self.faults.redis_outage.iter().enumerate() {
            if o.for_s == 0 || o.at_s + o.for_s > self.duration_s + self.drain_s {
                return bad(&format!(
                    "faults.redis_outage[{i}]: for_s must be positive and the outage end within the run"
                ));
            }
            if o.loses_ms > o.at_s.saturating_mul(1000) || o.loses_ms > 3_600_000 {
                return bad(&format!(
                    "faults.redis_outage[{i}]: loses_ms must be at most an hour and no earlier than the run's start"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.faults.crash_rate) {
            return bad("faults.crash_rate must be in [0, 1]");
        }
        if self.faults.crash_rate > 0.0 && self.faults.crash_within_ms == 0 {
            return bad("faults.crash_within_ms must be positive when crash_rate is");
        }
        if self.traffic.is_empty() {
            return bad("traffic: at least one source");
        }
        for (i, t) in self.traffic.iter().enumerate() {
            match t {
                Traffic::Steady {
                    prefix,
                    accounts,
                    per_hour,
                    zipf,
                    ..
                } => {
                    check_prefix(i, prefix)?;
                    if *accounts == 0 || !per_hour.is_finite() || *per_hour <= 0.0 {
                        return bad(&format!(
                            "traffic[{i}]: accounts and per_hour must be positive"
                        ));
                    }
                    if !zipf.is_finite() || *zipf < 0.0 {
                        return bad(&format!("traffic[{i}]: zipf must be >= 0"));
                    }
                }
                Traffic::Burst {
                    prefix,
                    accounts,
                    messages,
                    at_s,
                    over_s,
                    ..
                } => {
                    check_prefix(i, prefix)?;
                    if *accounts == 0 || *messages == 0 {
                        return bad(&format!(
                            "traffic[{i}]: accounts and messages must be positive"
                        ));
                    }
                    if !(at_s.is_finite() && over_s.is_finite() && *at_s >= 0.0 && *over_s >= 0.0)
                        || at_s + over_s > self.duration_s as f64
                    {
                        return bad(&format!(
                            "traffic[{i}]: at_s and over_s must be >= 0 and end within duration_s"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_prefix(i: usize, prefix: &str) -> anyhow::Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "traffic[{i}]: prefix must be 1-64 characters of [A-Za-z0-9_-]"
        ))
    }
}
