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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Ignore the error of a second init (tests call this more than once).
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(writer)
        .finish()
        .with(log_filter(rust_log))
        .try_init();
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
                    "Dimensions": [["Priority"], []],
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
    use tracing::Level;
    use tracing::level_filters::LevelFilter;

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

    use super::*;

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
}
