//! Typed settings, read from the environment once at cold start.
//!
//! A bad value stops the function at start-up with a message naming the
//! variable, instead of surfacing later as a confusing runtime error.
//! Defaults are the contract's (`../shared/CONTRACT.md`), which suit the
//! local stack; `template.yaml` sets the AWS values.
//!
//! [`VARS`] is the one list of what `Config` reads and of each default:
//! `from_lookup` takes its defaults from it, a unit test checks that it reads
//! exactly those names, `devctl config-vars` prints them for
//! `scripts/stack.sh` (which passes every one that is set on to the
//! functions), and `tools/devctl/tests/config_vars.rs` holds the README's
//! configuration table and the stack to it.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// A secret value: its `Debug` never shows it, so it cannot reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which clock the limiter script uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterClock {
    /// Redis `TIME` inside the script: one clock for every instance (default).
    Redis,
    /// The caller's clock, for Redis flavours that refuse `TIME` in scripts
    /// (ElastiCache Serverless). The script never lets a bucket's time run
    /// backwards, but instances with skewed clocks share the bucket less fairly.
    Client,
}

/// Settings of the per-account token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Sustained messages per minute per account (`RATE_LIMIT_PER_MINUTE`).
    pub per_minute: NonZeroU32,
    /// Bucket capacity (`RATE_LIMIT_BURST`).
    pub burst: NonZeroU32,
    /// Share of the burst `medium` must leave for `high` (`RATE_LIMIT_RESERVE_MEDIUM_PERCENT`).
    pub reserve_medium_percent: u8,
    /// Share of the burst `low` must leave (`RATE_LIMIT_RESERVE_LOW_PERCENT`).
    pub reserve_low_percent: u8,
    /// `LIMITER_CLOCK`: `redis` (default) or `client`.
    pub clock: LimiterClock,
}

impl LimiterConfig {
    /// The limit of an account without its own (`RATE_LIMIT_PER_MINUTE`,
    /// `RATE_LIMIT_BURST`).
    pub fn default_rate(&self) -> crate::limiter::Rate {
        crate::limiter::Rate {
            per_minute: f64::from(self.per_minute.get()),
            burst: f64::from(self.burst.get()),
        }
    }
}

/// What the consumer does with a message the limiter denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferralStrategy {
    /// Hide it until its slot (spread behind earlier deferrals): the default.
    Spread,
    /// Report it as a batch item failure and let the queue's visibility
    /// timeout bring it back: the naive baseline the benchmark compares with.
    Naive,
}

/// Where the OnlyFans API token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `ONLYFANS_API_TOKEN` (local development).
    Plain(Secret),
    /// `ONLYFANS_API_TOKEN_SECRET_ARN`: read from Secrets Manager at cold start.
    SecretsManager(String),
    /// `ONLYFANS_API_TOKEN_PARAMETER`: an SSM `SecureString` parameter, read
    /// at cold start (the template's small profile; `crate::ssm`).
    SsmParameter(String),
}

/// Everything both functions read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `REDIS_URL`: buckets, status records, idempotency keys, claims.
    pub redis_url: Secret,
    /// `REDIS_CLUSTER`: `true` when `REDIS_URL` is a Redis Cluster's
    /// configuration endpoint (ElastiCache cluster mode enabled), `false`
    /// (default) for one Redis ([`crate::redis_conn`]).
    pub redis_topology: crate::redis_conn::Topology,
    /// `REDIS_AUTH_SECRET_ARN`: in AWS, the ElastiCache AUTH token's secret.
    pub redis_auth_secret_arn: Option<String>,
    /// `REDIS_AUTH_PARAMETER`: the Redis password's SSM `SecureString`
    /// parameter (small profile); the secret ARN wins when both are set.
    pub redis_auth_parameter: Option<String>,
    /// `QUEUE_URL`: the main queue.
    pub queue_url: Option<String>,
    /// `DLQ_URL`: the dead-letter queue.
    pub dlq_url: Option<String>,
    pub limiter: LimiterConfig,
    /// `RATE_LIMITER_ENABLED`: `false` closes intake (503) and pauses delivery.
    pub enabled: bool,
    /// `RATE_LIMITER_ROLLOUT_PERCENT`: accounts (by stable hash) for which intake is open.
    pub rollout_percent: u8,
    /// `ONLYFANS_API_URL`: base URL of the OnlyFans API.
    pub onlyfans_api_url: url::Url,
    pub onlyfans_token: TokenSource,
    /// `MAX_ATTEMPTS`: upstream attempts for transient failures before `dead`.
    pub max_attempts: NonZeroU32,
    /// `MAX_RECEIVE_COUNT`: the queue's redrive `maxReceiveCount`; the consumer
    /// re-enqueues a message that keeps waiting before it gets there.
    pub max_receive_count: u32,
    /// `AUTH_JWT_SECRET`: HS256 secret for tokens no API Gateway authorizer verified.
    pub auth_jwt_secret: Secret,
    /// `AUTH_REQUIRE_AUTHORIZER`: refuse requests whose claims did not come from
    /// an API Gateway authorizer (set in AWS, so the local secret is never trusted there).
    pub auth_require_authorizer: bool,
    /// `STATUS_TTL_SECONDS`: how long status records are kept (default 7 days).
    pub status_ttl: Duration,
    /// `UPSTREAM_TIMEOUT_MS`: total timeout of one OnlyFans call.
    pub upstream_timeout: Duration,
    /// `UPSTREAM_CONNECT_TIMEOUT_MS`: connect timeout of one OnlyFans call.
    pub upstream_connect_timeout: Duration,
    /// `METRICS_NAMESPACE`: CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// `DEFERRAL_STRATEGY`: `spread` (default) or `naive` (benchmark baseline).
    pub deferral: DeferralStrategy,
    /// `IN_PROCESS_WAIT_MS`: limiter waits up to this long are waited out in
    /// the invocation instead of deferred through SQS (default 1500).
    pub in_process_wait: Duration,
    /// `BATCHING_WINDOW_SECONDS`: the trigger's
    /// `MaximumBatchingWindowInSeconds` (default 1; the template passes its
    /// `BatchingWindowSeconds`), how much later than its slot a deferred
    /// message may come back ([`crate::delivery::policy::queue_lateness`]).
    pub batching_window: Duration,
    /// `BREAKER_FAILURE_THRESHOLD` (default 5) and `BREAKER_OPEN_SECS`
    /// (default 30): the circuit breakers around SQS and the OnlyFans API.
    pub breaker: crate::breaker::BreakerConfig,
    /// `FUNCTION_TIMEOUT_SECS` (default 30): the consumer's deadline when the
    /// runtime gives none it can read (`cargo lambda watch` sends a relative
    /// number); in AWS the runtime's deadline is used.
    pub function_timeout: Duration,
    /// `REDIS_WAIT_REPLICAS` (default 0: off) and `REDIS_WAIT_TIMEOUT_MS`
    /// (default 100): replicas that must confirm a token, a claim, a
    /// terminal status or an idempotency reservation before it counts
    /// ([`crate::durability`]).
    pub durability: crate::durability::Durability,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// One environment variable [`Config`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// What an unset or blank variable means, as the text it would hold;
    /// `None`: it stays unset (optional, or derived from another).
    pub default: Option<&'static str>,
}

const fn var(name: &'static str, default: &'static str) -> Var {
    Var {
        name,
        default: Some(default),
    }
}

const fn optional(name: &'static str) -> Var {
    Var {
        name,
        default: None,
    }
}

/// The local development defaults (dummy secrets that only the local stack uses).
pub const LOCAL_JWT_SECRET: &str = "local-dev-jwt-secret-change-me";
pub const LOCAL_ONLYFANS_TOKEN: &str = "local-dev-onlyfans-token";

/// Every variable [`Config::from_env`] reads, with its default.
pub const VARS: &[Var] = &[
    var("REDIS_URL", "redis://127.0.0.1:6379"),
    var("REDIS_CLUSTER", "false"),
    optional("REDIS_AUTH_SECRET_ARN"),
    optional("QUEUE_URL"),
    optional("DLQ_URL"),
    var("RATE_LIMIT_PER_MINUTE", "10"),
    var("RATE_LIMIT_BURST", "10"),
    var("RATE_LIMIT_RESERVE_MEDIUM_PERCENT", "10"),
    var("RATE_LIMIT_RESERVE_LOW_PERCENT", "20"),
    var("LIMITER_CLOCK", "redis"),
    var("RATE_LIMITER_ENABLED", "true"),
    var("RATE_LIMITER_ROLLOUT_PERCENT", "100"),
    var("ONLYFANS_API_URL", "http://127.0.0.1:8787"),
    var("ONLYFANS_API_TOKEN", LOCAL_ONLYFANS_TOKEN),
    // When set, wins over ONLYFANS_API_TOKEN.
    optional("ONLYFANS_API_TOKEN_SECRET_ARN"),
    // When set (and no secret ARN is), the token's SSM SecureString parameter.
    optional("ONLYFANS_API_TOKEN_PARAMETER"),
    optional("REDIS_AUTH_PARAMETER"),
    var("MAX_ATTEMPTS", "5"),
    var("MAX_RECEIVE_COUNT", "100"),
    var("AUTH_JWT_SECRET", LOCAL_JWT_SECRET),
    var("AUTH_REQUIRE_AUTHORIZER", "false"),
    var("STATUS_TTL_SECONDS", "604800"),
    var("UPSTREAM_TIMEOUT_MS", "10000"),
    var("UPSTREAM_CONNECT_TIMEOUT_MS", "2000"),
    var("METRICS_NAMESPACE", "OutboundMessages"),
    var("DEFERRAL_STRATEGY", "spread"),
    var("IN_PROCESS_WAIT_MS", "1500"),
    var("BATCHING_WINDOW_SECONDS", "1"),
    var("BREAKER_FAILURE_THRESHOLD", "5"),
    var("BREAKER_OPEN_SECS", "30"),
    var("FUNCTION_TIMEOUT_SECS", "30"),
    var("REDIS_WAIT_REPLICAS", "0"),
    var("REDIS_WAIT_TIMEOUT_MS", "100"),
];

/// The default [`VARS`] gives `name` (`None` for an optional variable, and
/// for a name not in the list, which a unit test rules out).
pub fn default_of(name: &str) -> Option<&'static str> {
    VARS.iter().find(|v| v.name == name).and_then(|v| v.default)
}

struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable's value; unset or blank is `None`.
    fn get(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// The variable's value, or its default from [`VARS`].
    fn value(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .or_else(|| default_of(name).map(str::to_owned))
            .ok_or(ConfigError::Missing { name })
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let v = self.value(name)?;
        v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: format!("{e} (got {v:?})"),
        })
    }

    fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.value(name)?.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            v => Err(ConfigError::Invalid {
                name,
                reason: format!("expected true or false (got {v:?})"),
            }),
        }
    }

    fn percent(&self, name: &'static str) -> Result<u8, ConfigError> {
        let v: u8 = self.parse(name)?;
        if v > 100 {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("must be 0 to 100 (got {v})"),
            });
        }
        Ok(v)
    }
}

/// The database a `redis://host:port/<db>` URL names, if not 0. (Never the
/// URL itself in an error: it may hold the password.)
fn url_database(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let db = parsed.path().trim_start_matches('/');
    (!db.is_empty() && db != "0").then(|| db.to_owned())
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let clock = match env.value("LIMITER_CLOCK")?.to_ascii_lowercase().as_str() {
            "redis" => LimiterClock::Redis,
            "client" => LimiterClock::Client,
            other => {
                return Err(ConfigError::Invalid {
                    name: "LIMITER_CLOCK",
                    reason: format!("expected redis or client (got {other:?})"),
                });
            }
        };
        let limiter = LimiterConfig {
            per_minute: env.parse("RATE_LIMIT_PER_MINUTE")?,
            burst: env.parse("RATE_LIMIT_BURST")?,
            reserve_medium_percent: env.percent("RATE_LIMIT_RESERVE_MEDIUM_PERCENT")?,
            reserve_low_percent: env.percent("RATE_LIMIT_RESERVE_LOW_PERCENT")?,
            clock,
        };
        let api_url = env.value("ONLYFANS_API_URL")?;
        let onlyfans_api_url = url::Url::parse(&api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ConfigError::Invalid {
                name: "ONLYFANS_API_URL",
                reason: format!("expected an http(s) URL (got {api_url:?})"),
            })?;
        let onlyfans_token = match (
            env.get("ONLYFANS_API_TOKEN_SECRET_ARN"),
            env.get("ONLYFANS_API_TOKEN_PARAMETER"),
        ) {
            (Some(arn), _) => TokenSource::SecretsManager(arn),
            (None, Some(name)) => TokenSource::SsmParameter(name),
            (None, None) => TokenSource::Plain(Secret::new(env.value("ONLYFANS_API_TOKEN")?)),
        };
        let redis_url = env.value("REDIS_URL")?;
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(ConfigError::Invalid {
                name: "REDIS_URL",
                reason: "expected redis:// or rediss://".into(),
            });
        }
        let redis_topology = if env.bool("REDIS_CLUSTER")? {
            crate::redis_conn::Topology::Cluster
        } else {
            crate::redis_conn::Topology::Single
        };
        if redis_topology == crate::redis_conn::Topology::Cluster
            && let Some(db) = url_database(&redis_url)
        {
            return Err(ConfigError::Invalid {
                name: "REDIS_URL",
                reason: format!("a Redis Cluster has only database 0 (the URL names {db})"),
            });
        }
        let max_receive_count: u32 = env.parse("MAX_RECEIVE_COUNT")?;
        if max_receive_count < 3 {
            return Err(ConfigError::Invalid {
                name: "MAX_RECEIVE_COUNT",
                reason: "must be at least 3 (deferrals count as receives)".into(),
            });
        }
        let ms = |name| env.parse::<u64>(name).map(Duration::from_millis);
        let deferral = match env
            .value("DEFERRAL_STRATEGY")?
            .to_ascii_lowercase()
            .as_str()
        {
            "spread" => DeferralStrategy::Spread,
            "naive" => DeferralStrategy::Naive,
            other => {
                return Err(ConfigError::Invalid {
                    name: "DEFERRAL_STRATEGY",
                    reason: format!("expected spread or naive (got {other:?})"),
                });
            }
        };
        let wait_timeout = ms("REDIS_WAIT_TIMEOUT_MS")?;
        if wait_timeout.is_zero() || wait_timeout > crate::durability::MAX_TIMEOUT {
            return Err(ConfigError::Invalid {
                name: "REDIS_WAIT_TIMEOUT_MS",
                reason: format!(
                    "must be 1 to {} (got {})",
                    crate::durability::MAX_TIMEOUT.as_millis(),
                    wait_timeout.as_millis()
                ),
            });
        }
        let window: u64 = env.parse("BATCHING_WINDOW_SECONDS")?;
        if window > 300 {
            return Err(ConfigError::Invalid {
                name: "BATCHING_WINDOW_SECONDS",
                reason: format!("must be 0 to 300, as SQS's batching window (got {window})"),
            });
        }
        let batching_window = Duration::from_secs(window);
        let durability = crate::durability::Durability {
            replicas: env.parse("REDIS_WAIT_REPLICAS")?,
            timeout: wait_timeout,
        };
        Ok(Self {
            redis_url: Secret::new(redis_url),
            redis_topology,
            redis_auth_secret_arn: env.get("REDIS_AUTH_SECRET_ARN"),
            redis_auth_parameter: env.get("REDIS_AUTH_PARAMETER"),
            queue_url: env.get("QUEUE_URL"),
            dlq_url: env.get("DLQ_URL"),
            limiter,
            enabled: env.bool("RATE_LIMITER_ENABLED")?,
            rollout_percent: env.percent("RATE_LIMITER_ROLLOUT_PERCENT")?,
            onlyfans_api_url,
            onlyfans_token,
            max_attempts: env.parse("MAX_ATTEMPTS")?,
            max_receive_count,
            auth_jwt_secret: Secret::new(env.value("AUTH_JWT_SECRET")?),
            auth_require_authorizer: env.bool("AUTH_REQUIRE_AUTHORIZER")?,
            status_ttl: Duration::from_secs(env.parse("STATUS_TTL_SECONDS")?),
            upstream_timeout: ms("UPSTREAM_TIMEOUT_MS")?,
            upstream_connect_timeout: ms("UPSTREAM_CONNECT_TIMEOUT_MS")?,
            metrics_namespace: env.value("METRICS_NAMESPACE")?,
            deferral,
            in_process_wait: ms("IN_PROCESS_WAIT_MS")?,
            batching_window,
            breaker: crate::breaker::BreakerConfig {
                failure_threshold: env.parse("BREAKER_FAILURE_THRESHOLD")?,
                open_for: Duration::from_secs(env.parse("BREAKER_OPEN_SECS")?),
            },
            function_timeout: Duration::from_secs(env.parse("FUNCTION_TIMEOUT_SECS")?),
            durability,
        })
    }

    /// The main queue URL, required by both functions.
    pub fn require_queue_url(&self) -> Result<&str, ConfigError> {
        self.queue_url
            .as_deref()
            .ok_or(ConfigError::Missing { name: "QUEUE_URL" })
    }

    /// The DLQ URL, required by the consumer (poison goes there directly).
    pub fn require_dlq_url(&self) -> Result<&str, ConfigError> {
        self.dlq_url
            .as_deref()
            .ok_or(ConfigError::Missing { name: "DLQ_URL" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.limiter.per_minute.get(), 10);
        assert_eq!(c.limiter.burst.get(), 10);
        assert!(c.enabled);
        assert_eq!(c.rollout_percent, 100);
        assert_eq!(c.max_attempts.get(), 5);
        assert_eq!(c.onlyfans_api_url.as_str(), "http://127.0.0.1:8787/");
        assert_eq!(c.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.limiter.clock, LimiterClock::Redis);
        assert_eq!(c.status_ttl, Duration::from_secs(604_800));
        assert!(matches!(c.onlyfans_token, TokenSource::Plain(_)));
    }

    /// `VARS` is the list of what `Config` reads: every name read is in it,
    /// every name in it is read (both sides of the token's branch), once.
    #[test]
    fn config_reads_exactly_the_listed_variables() {
        let read = std::sync::Mutex::new(std::collections::BTreeSet::new());
        let lookup = |with_arn: bool| {
            let read = &read;
            move |name: &str| {
                read.lock().unwrap().insert(name.to_owned());
                (with_arn && name == "ONLYFANS_API_TOKEN_SECRET_ARN").then(|| "arn:x".to_owned())
            }
        };
        Config::from_lookup(lookup(false)).unwrap();
        Config::from_lookup(lookup(true)).unwrap();
        let listed: std::collections::BTreeSet<String> =
            VARS.iter().map(|v| v.name.to_owned()).collect();
        assert_eq!(listed.len(), VARS.len(), "a name is listed twice");
        assert_eq!(*read.lock().unwrap(), listed);
    }

    #[test]
    fn a_listed_default_is_what_an_unset_variable_means() {
        assert_eq!(default_of("STATUS_TTL_SECONDS"), Some("604800"));
        assert_eq!(default_of("QUEUE_URL"), None);
        // Setting each variable to its listed default changes nothing.
        let explicit: Vec<(&str, &str)> = VARS
            .iter()
            .filter_map(|v| v.default.map(|d| (v.name, d)))
            .collect();
        let (a, b) = (cfg(&explicit).unwrap(), cfg(&[]).unwrap());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(a.auth_jwt_secret, b.auth_jwt_secret);
        assert_eq!(a.onlyfans_token, b.onlyfans_token);
        assert_eq!(b.upstream_timeout, Duration::from_secs(10));
        assert_eq!(b.breaker.failure_threshold, 5);
        assert!(!b.durability.enabled());
        assert_eq!(b.durability.timeout, Duration::from_millis(100));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("RATE_LIMIT_PER_MINUTE", "0"),
            ("RATE_LIMIT_BURST", "-1"),
            ("RATE_LIMITER_ENABLED", "maybe"),
            ("RATE_LIMITER_ROLLOUT_PERCENT", "101"),
            ("ONLYFANS_API_URL", "ftp://x"),
            ("MAX_ATTEMPTS", "zero"),
            ("LIMITER_CLOCK", "sundial"),
            ("REDIS_URL", "http://x"),
            ("REDIS_CLUSTER", "sometimes"),
            ("MAX_RECEIVE_COUNT", "2"),
            ("DEFERRAL_STRATEGY", "later"),
            ("IN_PROCESS_WAIT_MS", "soon"),
            ("BATCHING_WINDOW_SECONDS", "301"),
            ("BATCHING_WINDOW_SECONDS", "1.5"),
            ("REDIS_WAIT_REPLICAS", "-1"),
            ("REDIS_WAIT_TIMEOUT_MS", "0"),
            ("REDIS_WAIT_TIMEOUT_MS", "5000"),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err();
            assert!(err.to_string().starts_with(k), "{k}: {err}");
        }
    }

    #[test]
    fn cluster_mode_is_chosen_by_redis_cluster() {
        use crate::redis_conn::Topology;
        assert_eq!(cfg(&[]).unwrap().redis_topology, Topology::Single);
        let c = cfg(&[
            ("REDIS_CLUSTER", "true"),
            ("REDIS_URL", "rediss://:pw@clustercfg.example:6379"),
        ])
        .unwrap();
        assert_eq!(c.redis_topology, Topology::Cluster);
        assert!(
            cfg(&[
                ("REDIS_CLUSTER", "true"),
                ("REDIS_URL", "redis://127.0.0.1:7230/0")
            ])
            .is_ok()
        );
        // A cluster has one database: another is refused at start, without the password.
        let err = cfg(&[
            ("REDIS_CLUSTER", "true"),
            ("REDIS_URL", "redis://:hunter2@127.0.0.1:7230/8"),
        ])
        .unwrap_err();
        assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // One Redis keeps its database.
        assert!(cfg(&[("REDIS_URL", "redis://127.0.0.1:6379/8")]).is_ok());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let c = cfg(&[
            ("AUTH_JWT_SECRET", "hunter2"),
            ("ONLYFANS_API_TOKEN", "tok-xyz"),
        ])
        .unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("tok-xyz"));
    }

    #[test]
    fn secret_arn_wins_over_plain_token() {
        let c = cfg(&[
            ("ONLYFANS_API_TOKEN_SECRET_ARN", "arn:aws:secretsmanager:x"),
            ("ONLYFANS_API_TOKEN", "t"),
        ])
        .unwrap();
        assert!(matches!(c.onlyfans_token, TokenSource::SecretsManager(_)));
    }

    /// Where each secret comes from: a Secrets Manager ARN, else an SSM
    /// parameter (small profile), else the plain local value.
    #[test]
    fn secret_sources_in_order() {
        let token = |vars: &[(&str, &str)]| cfg(vars).unwrap().onlyfans_token;
        let param = (
            "ONLYFANS_API_TOKEN_PARAMETER",
            "/om/test/onlyfans-api-token",
        );
        let arn = ("ONLYFANS_API_TOKEN_SECRET_ARN", "arn:aws:secretsmanager:x");
        let plain = ("ONLYFANS_API_TOKEN", "t");
        assert_eq!(
            token(&[param, plain]),
            TokenSource::SsmParameter("/om/test/onlyfans-api-token".into())
        );
        assert!(matches!(
            token(&[param, arn]),
            TokenSource::SecretsManager(_)
        ));
        assert_eq!(token(&[plain]), TokenSource::Plain(Secret::new("t")));

        let c = cfg(&[("REDIS_AUTH_PARAMETER", "/om/test/redis-password")]).unwrap();
        assert_eq!(
            c.redis_auth_parameter.as_deref(),
            Some("/om/test/redis-password")
        );
        assert_eq!(c.redis_auth_secret_arn, None);
    }
}
