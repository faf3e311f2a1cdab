//! Structured JSON logs and CloudWatch Embedded Metric Format (EMF) metrics.
//!
//! Logs go through `tracing` as one JSON object per line (Lambda ships stdout
//! to CloudWatch Logs). Metrics are EMF lines on stdout too: CloudWatch turns
//! them into metrics with no `PutMetricData` call on the hot path. EMF is a
//! small JSON document, so it is written here directly rather than through a
//! metrics facade crate: one `serde_json::json!` per metric is simpler than
//! wiring a global recorder, and keeps the binaries small.

use crate::message::Priority;
use std::io::Write;
use std::time::Duration;

/// Initialises JSON logging once. `RUST_LOG` filters (default `info`).
pub fn init() {
    init_with(std::io::stdout, std::env::var("RUST_LOG").ok().as_deref());
}

/// [`init`] with another writer and filter (the benchmark logs into a sink,
/// to time the handler with the production log format).
pub fn init_with<W>(writer: W, rust_log: Option<&str>)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::util::SubscriberInitExt;
    // Ignore the error of a second init (tests call this more than once).
    let _ = subscriber(writer, rust_log).try_init();
}

/// The log pipeline: one JSON object per event, no timestamp (CloudWatch
/// stamps each line), the current span's fields, filtered by `RUST_LOG`.
fn subscriber<W>(writer: W, rust_log: Option<&str>) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(writer)
        .finish()
        .with(log_filter(rust_log))
}

/// The `RUST_LOG` filter: `level` or `target=level` directives, comma
/// separated (`info,shared=debug`), as `tracing_subscriber::filter::Targets`
/// reads them; unset or unreadable means `info`. (EnvFilter's span and field
/// directives would bring a regex engine into both functions.)
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::filter::Targets {
    let info = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    match rust_log.map(str::trim) {
        None | Some("") => info(),
        Some(spec) => spec.parse().unwrap_or_else(|_| info()),
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

    /// The EMF document for one value. Two dimension sets: by `Priority`,
    /// and none (the aggregate the alarms watch).
    pub fn document(
        &self,
        metric: Metric,
        value: f64,
        priority: Priority,
        now_ms: u64,
    ) -> serde_json::Value {
        serde_json::json!({
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": if self.by_priority {
                        serde_json::json!([["Priority"], []])
                    } else {
                        serde_json::json!([[]])
                    },
                    "Metrics": [{ "Name": metric.name(), "Unit": metric.unit() }],
                }],
            },
            "Priority": priority.as_str(),
            "Service": self.service,
            metric.name(): value,
        })
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
        self.emit(metric, 1.0, priority);
    }

    pub fn latency(&self, metric: Metric, d: Duration, priority: Priority) {
        self.emit(metric, d.as_secs_f64() * 1000.0, priority);
    }

    fn emit(&self, metric: Metric, value: f64, priority: Priority) {
        if !self.enabled {
            return;
        }
        let line = self
            .document(metric, value, priority, crate::now_ms())
            .to_string();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
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

    #[test]
    fn logs_are_json_lines_filtered_by_rust_log() {
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = subscriber(move || writer.clone(), Some("info"));
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("message", account = "acct_1");
            let _guard = span.enter();
            tracing::info!(outcome = "sent", "delivered");
            tracing::debug!("not shown at info");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["message"], "delivered");
        assert_eq!(v["fields"]["outcome"], "sent");
        assert_eq!(v["span"]["account"], "acct_1");
        assert!(v.get("timestamp").is_none(), "{v}");
    }

    #[test]
    fn log_filter_reads_rust_log_and_falls_back_to_info() {
        let f = log_filter(None);
        assert_eq!(f.default_level(), Some(LevelFilter::INFO));
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));

        let f = log_filter(Some("warn,shared=debug"));
        assert!(f.would_enable("shared::store", &Level::DEBUG));
        assert!(!f.would_enable("consumer", &Level::INFO));
        assert!(f.would_enable("consumer", &Level::WARN));

        // Unreadable or empty: info, never silence.
        for bad in ["", "  ", "shared=loud", "=="] {
            let f = log_filter(Some(bad));
            assert!(f.would_enable("x", &Level::INFO), "{bad:?}");
            assert!(!f.would_enable("x", &Level::DEBUG), "{bad:?}");
        }
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
}
