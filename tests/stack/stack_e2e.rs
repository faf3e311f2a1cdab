//! End to end: POST to the producer through `cargo lambda watch`, and the
//! message reaches the stub through SQS, the poller and the consumer.

use anyhow::Result;
use integration_tests::{Stack, eventually, unique_account};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_posted_message_reaches_the_stub_and_reads_sent() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("e2e");
    let (status, body) = stack
        .post_message(
            &account,
            &json!({"recipientId": "fan_123", "content": "Hello!", "priority": "high"}),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    let id = body["messageId"].as_str().unwrap_or_default().to_owned();
    let reqs = eventually(
        "the stub to receive the message",
        Duration::from_secs(30),
        || async {
            let r = stack.stub_requests(&account).await?;
            Ok((!r.is_empty()).then_some(r))
        },
    )
    .await?;
    assert_eq!(reqs[0]["idempotencyKey"], id.as_str());
    assert_eq!(reqs[0]["recipientId"], "fan_123");
    let v = eventually("GET to show sent", Duration::from_secs(30), || async {
        let (s, v) = stack.message_status(&account, &id).await?;
        Ok((s == 200 && v["status"] == "sent").then_some(v))
    })
    .await?;
    assert_eq!(v["priority"], "high");
    assert_eq!(v["attempts"], 1);
    assert!(v["upstreamMessageId"].is_string());
    assert!(v["sentAt"].is_string());
    Ok(())
}
