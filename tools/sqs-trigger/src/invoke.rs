//! Invoking the function through cargo-lambda's invoke API and reading its answer the
//! way the event source mapping does (with `ReportBatchItemFailures` enabled).
//!
//! How `cargo lambda watch` reports errors (cargo-lambda-watch `functions_router.rs` and
//! `trigger_router.rs`): when the runtime posts to `/runtime/invocation/{id}/error`
//! (handler error, or a panic caught by `lambda_runtime`), the invoke request is answered
//! with status **500** and the runtime's error document as body,
//! `{"errorType": "...", "errorMessage": "..."}`; no `X-Amz-Function-Error` header. An
//! `/runtime/init/error` is answered with status **200** and that same document. A missing
//! function is a 404 with `{"title", "detail"}`. A function that crashes without reporting
//! leaves the request hanging, hence the timeout. AWS's own Invoke API answers 200 with an
//! `X-Amz-Function-Error: Unhandled` header. All of these are failures here.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Header AWS's Invoke API sets when the function failed.
pub const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";

/// What became of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The function answered; these message ids (all from the batch, no duplicates)
    /// failed and stay in the queue, every other record is deleted.
    Completed {
        /// `batchItemFailures[].itemIdentifier`, validated against the batch.
        failed_ids: BTreeSet<String>,
    },
    /// The whole batch failed: nothing is deleted.
    Failed {
        /// Why, for the logs (never contains message bodies the trigger sent).
        reason: String,
    },
}

impl InvokeOutcome {
    fn failed(reason: impl Into<String>) -> Self {
        Self::Failed {
            reason: reason.into(),
        }
    }
}

/// Sends the event and interprets the answer.
#[derive(Debug, Clone)]
pub(crate) struct Invoker {
    client: reqwest::Client,
    url: String,
}

impl Invoker {
    pub(crate) fn new(url: String, timeout: Duration) -> Result<Self, reqwest::Error> {
        shared::tls::install();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Self { client, url })
    }

    /// `POST`s the event; `batch_ids` are the message ids it carries.
    pub(crate) async fn invoke(&self, event: Vec<u8>, batch_ids: &BTreeSet<&str>) -> InvokeOutcome {
        let response = match self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(event)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return InvokeOutcome::failed(request_error(&e)),
        };
        let status = response.status();
        let function_error = response
            .headers()
            .get(FUNCTION_ERROR_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match response.bytes().await {
            Ok(body) => interpret_response(status, function_error.as_deref(), &body, batch_ids),
            Err(e) => InvokeOutcome::failed(format!(
                "reading the response failed: {}",
                request_error(&e)
            )),
        }
    }
}

fn request_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The chain of sources says e.g. "Connection refused".
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The event source mapping's reading of an invocation's answer.
///
/// Failed (delete nothing): an `X-Amz-Function-Error` header, a non-2xx status, a Lambda
/// error document (`errorType`/`errorMessage`), a body that is not JSON, JSON that is not
/// an object or null, a `batchItemFailures` that is not a list, or an entry whose
/// `itemIdentifier` is missing, not a string, empty, or not a message id of the batch.
/// Completed with no failures: an empty body, `null`, `{}`, or a null/empty
/// `batchItemFailures`.
pub fn interpret_response(
    status: StatusCode,
    function_error: Option<&str>,
    body: &[u8],
    batch_ids: &BTreeSet<&str>,
) -> InvokeOutcome {
    let parsed: Option<Result<Value, _>> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice::<Value>(body))
    };
    let error_doc = match &parsed {
        Some(Ok(value)) => lambda_error(value),
        _ => None,
    };
    if let Some(kind) = function_error {
        return InvokeOutcome::failed(format!(
            "function error ({FUNCTION_ERROR_HEADER}: {kind}){}",
            error_doc.map(|d| format!(": {d}")).unwrap_or_default()
        ));
    }
    if !status.is_success() {
        return InvokeOutcome::failed(format!(
            "invoke answered {status}{}",
            error_doc.map(|d| format!(": {d}")).unwrap_or_default()
        ));
    }
    if let Some(doc) = error_doc {
        return InvokeOutcome::failed(format!("function error: {doc}"));
    }
    let value = match parsed {
        None => {
            return InvokeOutcome::Completed {
                failed_ids: BTreeSet::new(),
            };
        }
        Some(Err(e)) => return InvokeOutcome::failed(format!("response is not JSON: {e}")),
        Some(Ok(value)) => value,
    };
    let object = match value {
        Value::Null => {
            return InvokeOutcome::Completed {
                failed_ids: BTreeSet::new(),
            };
        }
        Value::Object(object) => object,
        other => {
            return InvokeOutcome::failed(format!(
                "response is a JSON {}, not an object with batchItemFailures",
                json_type(&other)
            ));
        }
    };
    let failures = match object.get("batchItemFailures") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return InvokeOutcome::failed(format!(
                "batchItemFailures is a JSON {}, not a list",
                json_type(other)
            ));
        }
    };
    let mut failed_ids = BTreeSet::new();
    for (index, item) in failures.iter().enumerate() {
        let id = match item.get("itemIdentifier") {
            Some(Value::String(id)) => id,
            Some(Value::Null) | None => {
                return InvokeOutcome::failed(format!(
                    "batchItemFailures[{index}] has no itemIdentifier"
                ));
            }
            Some(other) => {
                return InvokeOutcome::failed(format!(
                    "batchItemFailures[{index}].itemIdentifier is a JSON {}, not a string",
                    json_type(other)
                ));
            }
        };
        if id.is_empty() {
            return InvokeOutcome::failed(format!(
                "batchItemFailures[{index}].itemIdentifier is empty"
            ));
        }
        if !batch_ids.contains(id.as_str()) {
            return InvokeOutcome::failed(format!(
                "batchItemFailures[{index}].itemIdentifier {id:?} is not a message id of the batch"
            ));
        }
        failed_ids.insert(id.clone());
    }
    InvokeOutcome::Completed { failed_ids }
}

/// `errorType: errorMessage` of a Lambda error document (message cut to 300 chars).
fn lambda_error(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    let error_type = object.get("errorType").and_then(Value::as_str);
    let error_message = object.get("errorMessage").and_then(Value::as_str);
    if error_type.is_none() && error_message.is_none() {
        return None;
    }
    let message: String = error_message
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    Some(format!("{}: {message}", error_type.unwrap_or("Unknown")))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> BTreeSet<&'static str> {
        ["a", "b", "c"].into_iter().collect()
    }

    fn read(status: u16, header: Option<&str>, body: &str) -> InvokeOutcome {
        let status = StatusCode::from_u16(status).expect("valid status");
        interpret_response(status, header, body.as_bytes(), &ids())
    }

    fn completed(failed: &[&str]) -> InvokeOutcome {
        InvokeOutcome::Completed {
            failed_ids: failed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn is_failed(outcome: &InvokeOutcome) -> bool {
        matches!(outcome, InvokeOutcome::Failed { .. })
    }

    #[test]
    fn success_shapes() {
        for body in [
            "",
            "  \n",
            "null",
            "{}",
            r#"{"batchItemFailures":null}"#,
            r#"{"batchItemFailures":[]}"#,
        ] {
            assert_eq!(read(200, None, body), completed(&[]), "{body:?}");
        }
        assert_eq!(read(202, None, "{}"), completed(&[]));
    }

    #[test]
    fn partial_failures() {
        assert_eq!(
            read(
                200,
                None,
                r#"{"batchItemFailures":[{"itemIdentifier":"b"},{"itemIdentifier":"b"},{"itemIdentifier":"c"}]}"#
            ),
            completed(&["b", "c"])
        );
    }

    #[test]
    fn bad_item_identifiers_fail_the_batch() {
        for body in [
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemId":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":1}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"x"}]}"#,
            r#"{"batchItemFailures":{"itemIdentifier":"a"}}"#,
            r#"{"batchItemFailures":["a"]}"#,
        ] {
            assert!(is_failed(&read(200, None, body)), "{body}");
        }
    }

    #[test]
    fn invocation_errors_fail_the_batch() {
        // cargo lambda watch: handler error or caught panic.
        let doc = r#"{"errorType":"&str","errorMessage":"boom"}"#;
        assert!(is_failed(&read(500, None, doc)));
        // cargo lambda watch: init error is a 200 with the error document.
        assert!(is_failed(&read(200, None, doc)));
        // AWS Invoke API.
        assert!(is_failed(&read(200, Some("Unhandled"), doc)));
        assert!(is_failed(&read(200, Some("Handled"), "{}")));
        assert!(is_failed(&read(
            404,
            None,
            r#"{"title":"Missing function"}"#
        )));
        assert!(is_failed(&read(503, None, "")));
        assert!(is_failed(&read(200, None, "not json")));
        assert!(is_failed(&read(200, None, r#""ok""#)));
        assert!(is_failed(&read(200, None, "[]")));
        match read(500, None, doc) {
            InvokeOutcome::Failed { reason } => assert!(reason.contains("&str: boom"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
