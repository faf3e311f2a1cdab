//! [`TriggerConfig`]: what to poll, what to invoke, and how (the knobs of an
//! event source mapping), read from the environment and validated up front.

use std::time::Duration;

use crate::TriggerError;
use crate::event::queue_arn_from_url;

/// Default invoke URL: the `consumer` function under `cargo lambda watch`.
pub const DEFAULT_INVOKE_URL: &str =
    "http://127.0.0.1:9000/2015-03-31/functions/consumer/invocations";
/// Default records per invocation (Lambda's default `BatchSize` for SQS).
pub const DEFAULT_BATCH_SIZE: usize = 10;
/// Largest `BatchSize` Lambda accepts for a standard queue.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// Default cap on concurrent invocations (`ScalingConfig.MaximumConcurrency`).
pub const DEFAULT_MAX_CONCURRENCY: usize = 2;
/// Largest accepted `max_concurrency` (Lambda's `MaximumConcurrency` upper bound).
pub const MAX_CONCURRENCY: usize = 1_000;
/// Default long-poll wait; short so that a shutdown is quick.
pub const DEFAULT_WAIT_TIME_SECONDS: u32 = 1;
/// Largest `WaitTimeSeconds` SQS accepts.
pub const MAX_WAIT_TIME_SECONDS: u32 = 20;
/// Largest batching window Lambda accepts (`MaximumBatchingWindowInSeconds` = 300).
pub const MAX_BATCH_WINDOW: Duration = Duration::from_secs(300);
/// Default time one invocation may take before it counts as failed.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_millis(120_000);

/// How the trigger polls the queue and invokes the function.
///
/// Build it with [`TriggerConfig::new`] (defaults for everything but the queue)
/// or [`TriggerConfig::from_env`], then adjust the public fields.
/// [`crate::run`] validates it before doing anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerConfig {
    /// URL of the queue to poll, `http(s)://host/<account id>/<queue name>` (`QUEUE_URL`,
    /// required). The record's `eventSourceARN` is derived from it.
    pub queue_url: String,
    /// Where the function is invoked: `POST` of the SQS event as JSON (`CONSUMER_INVOKE_URL`,
    /// default [`DEFAULT_INVOKE_URL`], cargo-lambda's invoke API).
    pub invoke_url: String,
    /// Most records in one invocation, 1..=10000 (`BATCH_SIZE`, default 10). Above 10,
    /// several receives fill a batch, but only within [`batch_window`](Self::batch_window).
    pub batch_size: usize,
    /// How long to keep gathering records after the first one arrived before invoking
    /// (`BATCH_WINDOW_MS`, default 0: invoke as soon as a receive returns records), at most 300 s.
    pub batch_window: Duration,
    /// Most invocations in flight at once, 1..=1000 (`MAX_CONCURRENCY`, default 2), like the
    /// event source mapping's `ScalingConfig.MaximumConcurrency`.
    pub max_concurrency: usize,
    /// `WaitTimeSeconds` of each `ReceiveMessage` long poll, 0..=20 (`WAIT_TIME_SECONDS`,
    /// default 1). A receive in progress is allowed to finish on shutdown, so this bounds
    /// how long stopping can take when idle.
    pub wait_time_seconds: u32,
    /// Time one invocation may take, response body included (`INVOKE_TIMEOUT_MS`, default
    /// 120000). A timed-out invocation counts as failed: none of its records are deleted.
    pub invoke_timeout: Duration,
}

impl TriggerConfig {
    /// The defaults for everything but the queue.
    pub fn new(queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            invoke_url: DEFAULT_INVOKE_URL.to_owned(),
            batch_size: DEFAULT_BATCH_SIZE,
            batch_window: Duration::ZERO,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            wait_time_seconds: DEFAULT_WAIT_TIME_SECONDS,
            invoke_timeout: DEFAULT_INVOKE_TIMEOUT,
        }
    }

    /// Reads `QUEUE_URL` (required), `CONSUMER_INVOKE_URL`, `BATCH_SIZE`, `BATCH_WINDOW_MS`,
    /// `MAX_CONCURRENCY`, `WAIT_TIME_SECONDS` and `INVOKE_TIMEOUT_MS`; an empty variable
    /// counts as unset. The result is validated.
    pub fn from_env() -> Result<Self, TriggerError> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(raw)) => Err(TriggerError::InvalidEnv {
                name,
                value: raw.to_string_lossy().into_owned(),
                reason: "not valid UTF-8".to_owned(),
            }),
        })
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    pub(crate) fn from_lookup(
        get: impl Fn(&'static str) -> Result<Option<String>, TriggerError>,
    ) -> Result<Self, TriggerError> {
        let get = |name: &'static str| -> Result<Option<String>, TriggerError> {
            Ok(get(name)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let queue_url = get("QUEUE_URL")?.ok_or(TriggerError::MissingEnv("QUEUE_URL"))?;
        let mut config = Self::new(queue_url);
        if let Some(url) = get("CONSUMER_INVOKE_URL")? {
            config.invoke_url = url;
        }
        if let Some(v) = get("BATCH_SIZE")? {
            config.batch_size = parse_number("BATCH_SIZE", &v)?;
        }
        if let Some(v) = get("BATCH_WINDOW_MS")? {
            config.batch_window = Duration::from_millis(parse_number("BATCH_WINDOW_MS", &v)?);
        }
        if let Some(v) = get("MAX_CONCURRENCY")? {
            config.max_concurrency = parse_number("MAX_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("WAIT_TIME_SECONDS")? {
            config.wait_time_seconds = parse_number("WAIT_TIME_SECONDS", &v)?;
        }
        if let Some(v) = get("INVOKE_TIMEOUT_MS")? {
            config.invoke_timeout = Duration::from_millis(parse_number("INVOKE_TIMEOUT_MS", &v)?);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; [`crate::run`] calls this first.
    pub fn validate(&self) -> Result<(), TriggerError> {
        let invalid =
            |field: &'static str, reason: String| TriggerError::InvalidConfig { field, reason };
        // The region does not matter for the shape check.
        if queue_arn_from_url(&self.queue_url, "us-east-1").is_none() {
            return Err(invalid(
                "queue_url",
                format!(
                    "{:?} is not a queue URL of the form http(s)://host/<account id>/<queue name>",
                    self.queue_url
                ),
            ));
        }
        match reqwest::Url::parse(&self.invoke_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            Ok(_) => {
                return Err(invalid(
                    "invoke_url",
                    format!("{:?} is not an http(s) URL", self.invoke_url),
                ));
            }
            Err(e) => {
                return Err(invalid(
                    "invoke_url",
                    format!("{:?} is not a URL: {e}", self.invoke_url),
                ));
            }
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(invalid(
                "batch_size",
                format!("must be 1..={MAX_BATCH_SIZE}, got {}", self.batch_size),
            ));
        }
        if self.batch_window > MAX_BATCH_WINDOW {
            return Err(invalid(
                "batch_window",
                format!("must be at most 300 s, got {:?}", self.batch_window),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(invalid(
                "max_concurrency",
                format!(
                    "must be 1..={MAX_CONCURRENCY}, got {}",
                    self.max_concurrency
                ),
            ));
        }
        if self.wait_time_seconds > MAX_WAIT_TIME_SECONDS {
            return Err(invalid(
                "wait_time_seconds",
                format!(
                    "must be 0..={MAX_WAIT_TIME_SECONDS}, got {}",
                    self.wait_time_seconds
                ),
            ));
        }
        if self.invoke_timeout.is_zero() {
            return Err(invalid("invoke_timeout", "must be positive".to_owned()));
        }
        Ok(())
    }
}

fn parse_number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, TriggerError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| TriggerError::InvalidEnv {
        name,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<TriggerConfig, TriggerError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TriggerConfig::from_lookup(|name| Ok(vars.get(name).cloned()))
    }

    const QUEUE: &str = "http://127.0.0.1:4566/123456789012/outbound-messages";

    #[test]
    fn defaults() {
        let config = from(&[("QUEUE_URL", QUEUE)]).expect("valid");
        assert_eq!(config, TriggerConfig::new(QUEUE));
        assert_eq!(config.batch_size, 10);
        assert_eq!(config.batch_window, Duration::ZERO);
        assert_eq!(config.max_concurrency, 2);
        assert_eq!(config.wait_time_seconds, 1);
        assert_eq!(config.invoke_timeout, Duration::from_secs(120));
        assert_eq!(config.invoke_url, DEFAULT_INVOKE_URL);
    }

    #[test]
    fn reads_every_variable() {
        let config = from(&[
            ("QUEUE_URL", QUEUE),
            ("CONSUMER_INVOKE_URL", "http://127.0.0.1:1/x"),
            ("BATCH_SIZE", "100"),
            ("BATCH_WINDOW_MS", "1500"),
            ("MAX_CONCURRENCY", "5"),
            ("WAIT_TIME_SECONDS", "20"),
            ("INVOKE_TIMEOUT_MS", " 3000 "),
        ])
        .expect("valid");
        assert_eq!(config.invoke_url, "http://127.0.0.1:1/x");
        assert_eq!(config.batch_size, 100);
        assert_eq!(config.batch_window, Duration::from_millis(1500));
        assert_eq!(config.max_concurrency, 5);
        assert_eq!(config.wait_time_seconds, 20);
        assert_eq!(config.invoke_timeout, Duration::from_secs(3));
    }

    #[test]
    fn empty_counts_as_unset() {
        let config = from(&[("QUEUE_URL", QUEUE), ("BATCH_SIZE", "")]).expect("valid");
        assert_eq!(config.batch_size, 10);
        assert!(matches!(
            from(&[("QUEUE_URL", "  ")]),
            Err(TriggerError::MissingEnv("QUEUE_URL"))
        ));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(matches!(
            from(&[]),
            Err(TriggerError::MissingEnv("QUEUE_URL"))
        ));
        assert!(matches!(
            from(&[("QUEUE_URL", QUEUE), ("BATCH_SIZE", "ten")]),
            Err(TriggerError::InvalidEnv {
                name: "BATCH_SIZE",
                ..
            })
        ));
        for (name, value, field) in [
            ("BATCH_SIZE", "0", "batch_size"),
            ("BATCH_SIZE", "10001", "batch_size"),
            ("MAX_CONCURRENCY", "0", "max_concurrency"),
            ("WAIT_TIME_SECONDS", "21", "wait_time_seconds"),
            ("BATCH_WINDOW_MS", "300001", "batch_window"),
            ("INVOKE_TIMEOUT_MS", "0", "invoke_timeout"),
            ("CONSUMER_INVOKE_URL", "ftp://x/y", "invoke_url"),
            ("CONSUMER_INVOKE_URL", "not a url", "invoke_url"),
        ] {
            match from(&[("QUEUE_URL", QUEUE), (name, value)]) {
                Err(TriggerError::InvalidConfig { field: f, .. }) => {
                    assert_eq!(f, field, "{name}={value}");
                }
                other => panic!("{name}={value}: expected InvalidConfig, got {other:?}"),
            }
        }
        for url in [
            "http://127.0.0.1:4566/",
            "http://127.0.0.1:4566/123",
            "queue",
        ] {
            assert!(
                matches!(
                    from(&[("QUEUE_URL", url)]),
                    Err(TriggerError::InvalidConfig {
                        field: "queue_url",
                        ..
                    })
                ),
                "{url}"
            );
        }
    }
}
