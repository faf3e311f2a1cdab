//! Every log line of an invocation names its request id. A test binary of
//! its own: `tracing` caches whether a call site is enabled, and other tests
//! logging on other threads at the same time would race that cache.

mod support;

use shared::message::MessageId;
use support::*;

/// A log writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of an invocation, in the production format, names the
/// invocation's request id: lines about the batch and lines inside a
/// record's span alike (a JSON line shows only its innermost span).
#[tokio::test]
async fn every_log_line_of_an_invocation_carries_its_request_id() {
    use shared::telemetry::{log_filter, subscriber};
    let buf = LogBuf::default();
    let writer = buf.clone();
    let _default = tracing::subscriber::set_default(subscriber(
        move || writer.clone(),
        log_filter(None, Some("debug")),
    ));
    let d = deps();
    let sent = MessageId::new();
    let failures = run(
        &d,
        vec![record("s1", &body(sent), 1), record("bad", "{nope", 1)],
    )
    .await;
    assert!(failures.is_empty(), "{failures:?}");

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        assert_eq!(l["span"]["requestId"], "inv-1", "{l}");
    }
    // Both kinds of line were seen: inside the message's span, and about
    // the poison record (which never gets one).
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["message_id"] == sent.to_string().as_str()),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["name"] == "invocation" && l["fields"]["sqs_message_id"] == "bad"),
        "{text}"
    );
}
