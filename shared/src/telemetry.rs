//! Structured JSON logs and CloudWatch Embedded Metric Format (EMF) metrics.
//!
//! Logs go through `tracing` as one JSON object per line (Lambda ships stdout
//! to CloudWatch Logs). Metrics are EMF lines on stdout too: CloudWatch turns
//! them into metrics with no `PutMetricData` call on the hot path. EMF is a
//! small JSON document, so it is written here directly rather than through a
//! metrics facade crate: one `serde_json::json!` per metric is simpler than
//! wiring a global recorder, and keeps the binaries small.
//!
//! # Lambda's log-level filtering
//!
//! With `LoggingConfig.LogFormat: JSON`, Lambda reads two fields of every
//! JSON line a function writes: `level` and `timestamp`. A line whose
//! `timestamp` is missing or not RFC 3339, or whose `level` is missing or
//! unknown, is taken as INFO, and a line below `ApplicationLogLevel` is
//! dropped (AWS Lambda developer guide, "Log-level filtering"). So:
//!
//! - every log line carries an RFC 3339 UTC `timestamp` and tracing's
//!   `level` (`TRACE`..`ERROR`, the names Lambda reads);
//! - `AWS_LAMBDA_LOG_LEVEL` (what Lambda sets from `ApplicationLogLevel`)
//!   comes before `RUST_LOG`: it is the default level and a cap, and
//!   `RUST_LOG` can only make targets quieter (`aws_smithy_runtime=error`).
//!   Lines the threshold would drop are not even formatted;
//! - EMF lines carry a `timestamp` and, as `level`, the least severe level
//!   the threshold in force lets through, never below INFO (see
//!   [`LambdaLevel::emf_level`]). Metrics are not logs: a line without a
//!   `level` would count as INFO and vanish under `ApplicationLogLevel: WARN`,
//!   taking the metrics (and the alarms on them) with it. Nothing else
//!   keeps them: stdout and stderr go through the same filter, and the docs
//!   name no exemption for EMF. The price is that under WARN or ERROR a
//!   metric line reads as that level; a query for error lines leaves them out
//!   with ``not ispresent(`_aws.Timestamp`)`` (`docs/logging.md`).

use crate::config::Var;
use crate::message::Priority;
use std::io::Write;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::level_filters::LevelFilter;

/// The environment variables this module reads, beside
/// [`crate::config::VARS`] (`devctl config-vars` lists both).
pub const VARS: &[Var] = &[
    // Set by Lambda from LoggingConfig.ApplicationLogLevel (JSON format).
    Var {
        name: "AWS_LAMBDA_LOG_LEVEL",
        default: None,
    },
    Var {
        name: "RUST_LOG",
        default: Some("info"),
    },
    Var {
        name: "METRICS_DISABLED",
        default: Some("false"),
    },
    Var {
        name: "METRICS_BY_PRIORITY",
        default: Some("true"),
    },
];

/// Lambda's application log levels, least severe first
/// (`AWS_LAMBDA_LOG_LEVEL`, from `LoggingConfig.ApplicationLogLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LambdaLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LambdaLevel {
    /// Reads a level name as Lambda spells it, in any case; `None` for
    /// anything else (an unknown value must not silence the logs).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Self::Trace,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "WARN" => Self::Warn,
            "ERROR" => Self::Error,
            "FATAL" => Self::Fatal,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }

    /// The `tracing` filter for this threshold. tracing has no FATAL: under
    /// FATAL Lambda would drop every line tracing can write, so none is.
    pub fn filter(self) -> LevelFilter {
        match self {
            Self::Trace => LevelFilter::TRACE,
            Self::Debug => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warn => LevelFilter::WARN,
            Self::Error => LevelFilter::ERROR,
            Self::Fatal => LevelFilter::OFF,
        }
    }

    /// The `level` an EMF line carries under this threshold: the least
    /// severe level that still passes it, and INFO when the threshold is
    /// lower (a metric is not a debug line). Every threshold lets its own
    /// level through, so no `ApplicationLogLevel` drops a metric.
    pub fn emf_level(threshold: Option<Self>) -> Self {
        threshold.map_or(Self::Info, |t| t.max(Self::Info))
    }
}

/// `AWS_LAMBDA_LOG_LEVEL` of this process, if set to a level Lambda knows.
fn lambda_level_from_env() -> Option<LambdaLevel> {
    std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .as_deref()
        .and_then(LambdaLevel::parse)
}

/// Initialises JSON logging once: `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`
/// (see [`log_filter`]).
pub fn init() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = log_filter(lambda_level_from_env(), rust_log.as_deref());
    try_init(subscriber(std::io::stdout, filter));
}

/// [`init`] with another writer and a `RUST_LOG` filter, no Lambda level (the
/// benchmark logs into a sink, to time the handler with the production log
/// format).
pub fn init_with<W>(writer: W, rust_log: Option<&str>)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    try_init(subscriber(writer, log_filter(None, rust_log)));
}

fn try_init(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
    use tracing_subscriber::util::SubscriberInitExt;
    // Ignore the error of a second init (tests call this more than once).
    let _ = subscriber.try_init();
}

/// Writes the time as RFC 3339 in UTC (`2026-12-01T22:40:05.123456789Z`),
/// the `timestamp` Lambda's JSON log format reads. (tracing-subscriber's
/// own `UtcTime` does the same behind a feature; this is the few lines it
/// would add, over the `time` crate the library already uses.)
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc3339Time;

impl tracing_subscriber::fmt::time::FormatTime for Rfc3339Time {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|_| std::fmt::Error)?;
        w.write_str(&now)
    }
}

/// The log pipeline: one JSON object per event with an RFC 3339
/// `timestamp`, `level`, the fields, and the current span's fields (a span
/// whose fields must be on every line, such as the consumer's request id,
/// is repeated by the spans inside it: see the consumer's handler),
/// filtered by `filter` ([`log_filter`]) as [`LogFilter`] applies it.
pub fn subscriber<W>(
    writer: W,
    filter: tracing_subscriber::filter::Targets,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::fmt()
        // The builder's own default is INFO, which hid every DEBUG and TRACE
        // line whatever RUST_LOG said; `LogFilter` alone decides.
        .with_max_level(LevelFilter::TRACE)
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_timer(Rfc3339Time)
        .with_ansi(false)
        .with_writer(writer)
        .finish()
        .with(LogFilter(filter))
}

/// Applies [`log_filter`]'s levels to events, and keeps every span at INFO
/// or above whatever the level: under `ApplicationLogLevel: WARN` an
/// `info_span!` filtered out would take its fields (request id, message id)
/// off the ERROR lines logged inside it. Spans below INFO (the SDK's and
/// hyper's, many per request) follow the level like events.
struct LogFilter(tracing_subscriber::filter::Targets);

impl LogFilter {
    fn enables(&self, meta: &tracing::Metadata<'_>) -> bool {
        (meta.is_span() && LevelFilter::INFO >= *meta.level())
            || self.0.would_enable(meta.target(), meta.level())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogFilter {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enables(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.enables(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let events = self.0.iter().map(|(_, level)| level);
        Some(
            events
                .chain(self.0.default_level())
                .chain([LevelFilter::INFO])
                .max()
                .unwrap_or(LevelFilter::INFO),
        )
    }
}

/// The filter: `lambda_level` (from `AWS_LAMBDA_LOG_LEVEL`), when set, is
/// the default level and caps every target; `rust_log` gives the default
/// otherwise, and its `target=level` directives apply either way (under the
/// cap). `rust_log` is `level` or
/// `target=level` directives, comma separated (`info,shared=debug`), as
/// `tracing_subscriber::filter::Targets` reads them; unset or unreadable
/// means `info`. (EnvFilter's span and field directives would bring a regex
/// engine into both functions.)
pub fn log_filter(
    lambda_level: Option<LambdaLevel>,
    rust_log: Option<&str>,
) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::Targets;
    let info = || Targets::new().with_default(tracing::Level::INFO);
    let targets = match rust_log.map(str::trim) {
        None | Some("") => info(),
        Some(spec) => spec.parse().unwrap_or_else(|_| info()),
    };
    match lambda_level {
        // Rebuilt rather than `targets.with_default(..)`: replacing the
        // default in place would leave the filter's max-level hint at the
        // old, possibly more verbose, default.
        // A directive may make its target quieter, never louder than what
        // Lambda keeps: nothing is written for Lambda to drop.
        Some(level) => Targets::new()
            .with_targets(
                targets
                    .into_iter()
                    .map(|(target, l)| (target, l.min(level.filter()))),
            )
            .with_default(level.filter()),
        None => targets,
    }
}

/// A CloudWatch metric this service emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    MessagesQueued,
    MessagesSent,
    MessagesDeferred,
    MessagesFailed,
    MessagesDead,
    DeliveryLatency,
    UpstreamLatency,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::MessagesQueued => "MessagesQueued",
            Metric::MessagesSent => "MessagesSent",
            Metric::MessagesDeferred => "MessagesDeferred",
            Metric::MessagesFailed => "MessagesFailed",
            Metric::MessagesDead => "MessagesDead",
            Metric::DeliveryLatency => "DeliveryLatency",
            Metric::UpstreamLatency => "UpstreamLatency",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::DeliveryLatency | Metric::UpstreamLatency => "Milliseconds",
            _ => "Count",
        }
    }
}

/// Writes EMF lines. Built once at cold start.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    service: &'static str,
    enabled: bool,
    /// The `level` each EMF line carries, so that Lambda's log-level
    /// filtering never drops it ([`LambdaLevel::emf_level`]).
    level: LambdaLevel,
    /// `METRICS_BY_PRIORITY` (default `true`): also send each metric by
    /// `Priority`. Every dimension combination is a CloudWatch custom metric
    /// billed by the month (7 names x 4 = 28 with it, 7 without); the
    /// template's small profile turns it off (docs/cost.md).
    by_priority: bool,
}

impl Metrics {
    pub fn new(namespace: impl Into<String>, service: &'static str) -> Self {
        Self {
            namespace: namespace.into(),
            service,
            // EMF lines are noise outside Lambda and in tests.
            enabled: std::env::var("METRICS_DISABLED")
                .map(|v| v != "true")
                .unwrap_or(true),
            level: LambdaLevel::emf_level(lambda_level_from_env()),
            by_priority: std::env::var("METRICS_BY_PRIORITY")
                .map(|v| v != "false")
                .unwrap_or(true),
        }
    }

    /// The same metrics with or without the `Priority` dimension set.
    pub fn with_priority_dimension(self, by_priority: bool) -> Self {
        Self {
            by_priority,
            ..self
        }
    }

    /// The EMF document for one value: [`Self::document_all`] of one.
    pub fn document(
        &self,
        metric: Metric,
        value: f64,
        priority: Priority,
        now_ms: u64,
    ) -> serde_json::Value {
        self.document_all(&[(metric, value)], priority, now_ms)
    }

    /// One EMF document for several values of the same event. Two dimension
    /// sets: by `Priority`, and none (the aggregate the alarms watch).
    /// `level` and `timestamp` (the same instant as `_aws.Timestamp`) are for
    /// Lambda's log-level filtering (see the module doc); CloudWatch ignores
    /// members no metric or dimension names. One line for a delivery's three
    /// values instead of three: the envelope is most of each line, and log
    /// ingestion is billed by the byte (docs/cost.md).
    pub fn document_all(
        &self,
        values: &[(Metric, f64)],
        priority: Priority,
        now_ms: u64,
    ) -> serde_json::Value {
        // RFC 3339 can only fail for years past 9999; the line then goes
        // without a timestamp (Lambda takes it as INFO) rather than not at all.
        let timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok());
        let metrics: Vec<serde_json::Value> = values
            .iter()
            .map(|(m, _)| serde_json::json!({ "Name": m.name(), "Unit": m.unit() }))
            .collect();
        let mut doc = serde_json::json!({
            "timestamp": timestamp,
            "level": self.level.as_str(),
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": if self.by_priority {
                        serde_json::json!([["Priority"], []])
                    } else {
                        serde_json::json!([[]])
                    },
                    "Metrics": metrics,
                }],
            },
            "Priority": priority.as_str(),
            "Service": self.service,
        });
        if let Some(obj) = doc.as_object_mut() {
            for (m, v) in values {
                obj.insert(m.name().to_owned(), serde_json::json!(v));
            }
        }
        doc
    }

    /// A `Metrics` that writes nothing: unit tests, whose output EMF lines
    /// would only clutter (`METRICS_DISABLED` is process-wide).
    pub fn disabled(namespace: impl Into<String>, service: &'static str) -> Self {
        Self {
            enabled: false,
            ..Self::new(namespace, service)
        }
    }

    pub fn count(&self, metric: Metric, priority: Priority) {
        self.emit(&[(metric, 1.0)], priority);
    }

    /// `n` events in one line (a campaign call's messages, all of one
    /// priority): CloudWatch sums the value as it sums `n` lines of 1.
    pub fn count_n(&self, metric: Metric, n: u64, priority: Priority) {
        if n > 0 {
            self.emit(&[(metric, n as f64)], priority);
        }
    }

    pub fn latency(&self, metric: Metric, d: Duration, priority: Priority) {
        self.emit(&[(metric, millis(d))], priority);
    }

    /// A delivered message, in one EMF line: `MessagesSent` 1, its
    /// `DeliveryLatency` (accepted to sent) and the call's `UpstreamLatency`.
    pub fn sent(&self, delivery: Duration, upstream: Duration, priority: Priority) {
        self.emit(
            &[
                (Metric::MessagesSent, 1.0),
                (Metric::DeliveryLatency, millis(delivery)),
                (Metric::UpstreamLatency, millis(upstream)),
            ],
            priority,
        );
    }

    fn emit(&self, values: &[(Metric, f64)], priority: Priority) {
        if !self.enabled {
            return;
        }
        let line = self
            .document_all(values, priority, crate::now_ms())
            .to_string();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing::level_filters::LevelFilter;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(buf: &Buf) -> String {
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    /// Lambda's reading of one line under `ApplicationLogLevel: threshold`,
    /// as the developer guide ("Log-level filtering") describes it: a line
    /// without a valid RFC 3339 `timestamp`, or without a known `level`, is
    /// INFO; a line below the threshold is dropped.
    fn lambda_keeps(line: &str, threshold: LambdaLevel) -> bool {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let valid_time = v["timestamp"]
            .as_str()
            .is_some_and(|t| OffsetDateTime::parse(t, &Rfc3339).is_ok());
        let level = v["level"].as_str().and_then(LambdaLevel::parse);
        let level = match (valid_time, level) {
            (true, Some(l)) => l,
            _ => LambdaLevel::Info,
        };
        level >= threshold
    }

    const ALL: [LambdaLevel; 6] = [
        LambdaLevel::Trace,
        LambdaLevel::Debug,
        LambdaLevel::Info,
        LambdaLevel::Warn,
        LambdaLevel::Error,
        LambdaLevel::Fatal,
    ];

    #[test]
    fn logs_are_json_lines_with_an_rfc_3339_timestamp_filtered_by_rust_log() {
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = subscriber(move || writer.clone(), log_filter(None, Some("info")));
        let before = OffsetDateTime::now_utc();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("message", account = "acct_1");
            let _guard = span.enter();
            tracing::info!(outcome = "sent", "delivered");
            tracing::debug!("not shown at info");
        });
        let text = text(&buf);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "delivered");
        assert_eq!(v["fields"]["outcome"], "sent");
        assert_eq!(v["span"]["account"], "acct_1");
        let ts = v["timestamp"].as_str().unwrap_or_default();
        let ts = OffsetDateTime::parse(ts, &Rfc3339).unwrap_or_else(|e| panic!("{ts:?}: {e}"));
        assert_eq!(ts.offset(), time::UtcOffset::UTC, "{v}");
        assert!(ts >= before - Duration::from_secs(1), "{v}");
        assert!(
            ts <= OffsetDateTime::now_utc() + Duration::from_secs(1),
            "{v}"
        );
    }

    #[test]
    fn every_level_tracing_writes_is_one_lambda_reads() {
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = subscriber(move || writer.clone(), log_filter(None, Some("trace")));
        tracing::subscriber::with_default(sub, || {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let levels: Vec<LambdaLevel> = text(&buf)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v["level"].as_str().and_then(LambdaLevel::parse))
            .collect();
        assert_eq!(levels, ALL[..5]);
    }

    #[test]
    fn under_every_application_log_level_lambda_keeps_what_it_should() {
        for threshold in ALL {
            let buf = Buf::default();
            let writer = buf.clone();
            // RUST_LOG says debug; the Lambda level comes first.
            let sub = subscriber(
                move || writer.clone(),
                log_filter(Some(threshold), Some("debug")),
            );
            tracing::subscriber::with_default(sub, || {
                tracing::debug!("d");
                tracing::info!("i");
                tracing::warn!("w");
                tracing::error!("e");
            });
            let text = text(&buf);
            let written: Vec<&str> = text.lines().collect();
            // Nothing written that Lambda drops, and Lambda drops nothing written.
            assert!(
                written.iter().all(|l| lambda_keeps(l, threshold)),
                "{threshold:?}: {text}"
            );
            let expected = [
                LambdaLevel::Debug,
                LambdaLevel::Info,
                LambdaLevel::Warn,
                LambdaLevel::Error,
            ]
            .iter()
            .filter(|l| **l >= threshold)
            .count();
            assert_eq!(written.len(), expected, "{threshold:?}: {text}");

            // The metrics always get through.
            let mut m = Metrics::new("NS", "consumer");
            m.level = LambdaLevel::emf_level(Some(threshold));
            let emf = m
                .document(Metric::MessagesSent, 1.0, Priority::Low, 1_000)
                .to_string();
            assert!(lambda_keeps(&emf, threshold), "{threshold:?}: {emf}");
        }
    }

    #[test]
    fn under_a_warn_threshold_error_lines_keep_their_info_spans_fields() {
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = subscriber(
            move || writer.clone(),
            log_filter(Some(LambdaLevel::Warn), None),
        );
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("message", requestId = "req-1");
            let _guard = span.enter();
            tracing::info!("dropped");
            tracing::error!("kept");
        });
        let text = text(&buf);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["span"]["requestId"], "req-1", "{text}");
    }

    #[test]
    fn lambda_levels_read_as_lambda_spells_them() {
        for l in ALL {
            assert_eq!(LambdaLevel::parse(l.as_str()), Some(l));
            assert_eq!(LambdaLevel::parse(&l.as_str().to_lowercase()), Some(l));
        }
        assert_eq!(LambdaLevel::parse(" warn "), Some(LambdaLevel::Warn));
        for bad in ["", "WARNING", "verbose", "5"] {
            assert_eq!(LambdaLevel::parse(bad), None, "{bad:?}");
        }
        assert_eq!(LambdaLevel::Fatal.filter(), LevelFilter::OFF);
        assert_eq!(LambdaLevel::Warn.filter(), LevelFilter::WARN);
        assert_eq!(LambdaLevel::emf_level(None), LambdaLevel::Info);
        assert_eq!(
            LambdaLevel::emf_level(Some(LambdaLevel::Debug)),
            LambdaLevel::Info
        );
        assert_eq!(
            LambdaLevel::emf_level(Some(LambdaLevel::Error)),
            LambdaLevel::Error
        );
    }

    #[test]
    fn log_filter_reads_rust_log_and_falls_back_to_info() {
        let f = log_filter(None, None);
        assert_eq!(f.default_level(), Some(LevelFilter::INFO));
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));

        let f = log_filter(None, Some("warn,shared=debug"));
        assert!(f.would_enable("shared::store", &Level::DEBUG));
        assert!(!f.would_enable("consumer", &Level::INFO));
        assert!(f.would_enable("consumer", &Level::WARN));

        // Unreadable or empty: info, never silence.
        for bad in ["", "  ", "shared=loud", "=="] {
            let f = log_filter(None, Some(bad));
            assert!(f.would_enable("x", &Level::INFO), "{bad:?}");
            assert!(!f.would_enable("x", &Level::DEBUG), "{bad:?}");
        }
    }

    #[test]
    fn the_lambda_level_comes_before_rust_log_whose_targets_still_apply() {
        let f = log_filter(
            Some(LambdaLevel::Warn),
            Some("debug,aws_smithy_runtime=error"),
        );
        assert_eq!(f.default_level(), Some(LevelFilter::WARN));
        assert!(!f.would_enable("consumer", &Level::INFO));
        assert!(f.would_enable("consumer", &Level::WARN));
        assert!(!f.would_enable("aws_smithy_runtime::client", &Level::WARN));

        // A directive cannot ask for what Lambda would drop.
        let f = log_filter(Some(LambdaLevel::Warn), Some("shared=debug"));
        assert!(!f.would_enable("shared::store", &Level::INFO));
        assert!(f.would_enable("shared::store", &Level::WARN));

        let f = log_filter(Some(LambdaLevel::Debug), Some("info"));
        assert!(f.would_enable("consumer", &Level::DEBUG));
        let f = log_filter(Some(LambdaLevel::Fatal), None);
        assert!(!f.would_enable("consumer", &Level::ERROR));
    }

    #[test]
    fn emf_document_has_the_cloudwatch_shape() {
        let m = Metrics::new("NS", "consumer");
        let d = m.document(Metric::DeliveryLatency, 12.5, Priority::High, 1000);
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "NS");
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "DeliveryLatency"
        );
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Priority"
        );
        assert_eq!(d["Priority"], "high");
        assert_eq!(d["DeliveryLatency"], 12.5);
        assert_eq!(d["_aws"]["Timestamp"], 1000);
        // For Lambda's log-level filtering: the same instant, RFC 3339.
        assert_eq!(d["timestamp"], "1970-01-01T00:00:01Z");
        assert_eq!(d["level"], "INFO");
    }

    /// Without the Priority set each name is one CloudWatch metric (the
    /// dimensionless aggregate the alarms read); the priority stays in the
    /// document as a plain property, for Logs Insights.
    #[test]
    fn emf_document_without_the_priority_dimension_set() {
        let m = Metrics::new("NS", "consumer").with_priority_dimension(false);
        let d = m.document(Metric::MessagesSent, 1.0, Priority::Low, 1000);
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
        assert_eq!(d["Priority"], "low");
        let by = Metrics::new("NS", "consumer").with_priority_dimension(true);
        let d = by.document(Metric::MessagesSent, 1.0, Priority::Low, 1000);
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Priority"], []])
        );
    }

    /// A delivery's three values share one document (and one line): each
    /// named in `Metrics` with its unit, each value a member; the line is
    /// what docs/cost.md prices (`log_bytes.emf_line` in tools/cost).
    #[test]
    fn a_delivery_is_one_emf_document_with_three_metrics() {
        let m = Metrics::new("OutboundMessages", "consumer");
        let d = m.document_all(
            &[
                (Metric::MessagesSent, 1.0),
                (Metric::DeliveryLatency, 1234.5),
                (Metric::UpstreamLatency, 250.0),
            ],
            Priority::Medium,
            1_764_000_000_000,
        );
        let names: Vec<_> = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| (m["Name"].clone(), m["Unit"].clone()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            names,
            vec![
                ("MessagesSent".into(), "Count".into()),
                ("DeliveryLatency".into(), "Milliseconds".into()),
                ("UpstreamLatency".into(), "Milliseconds".into()),
            ]
        );
        assert_eq!(d["MessagesSent"], 1.0);
        assert_eq!(d["DeliveryLatency"], 1234.5);
        assert_eq!(d["UpstreamLatency"], 250.0);
        let line = d.to_string();
        assert!(
            (400..=460).contains(&line.len()),
            "tools/cost/inputs.json prices this line at 431 bytes with its newline; it is {}: {line}",
            line.len()
        );
    }

    #[test]
    fn n_events_are_one_document_whose_value_is_n() {
        let m = Metrics::new("NS", "producer");
        let d = m.document(Metric::MessagesQueued, 1000.0, Priority::Low, 1000);
        assert_eq!(d["MessagesQueued"], 1000.0);
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Count"
        );
    }
}
