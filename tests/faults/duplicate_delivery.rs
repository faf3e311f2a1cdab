//! The same SQS message delivered more than once at the same time, as SQS's
//! at-least-once delivery (or an outbox replay racing a send that timed out)
//! may do: through the consumer's invoke URL, four concurrent invocations
//! holding the same record, and one batch holding two copies of another
//! message. The claim (a lease keyed by message id) lets one delivery call
//! the upstream; the others wait and then find the message sent.

use crate::harness::{Faults, Msg, new_id, settle};
use anyhow::{Result, ensure};
use integration_tests::{queue_body, unique_account};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn record(sqs_id: &str, body: &str) -> Value {
    json!({
        "messageId": sqs_id,
        "receiptHandle": format!("fault-suite-{sqs_id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795741200000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:outbound-messages",
        "awsRegion": "us-east-1"
    })
}

fn failures(v: &Value) -> usize {
    v["batchItemFailures"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn the_same_message_delivered_concurrently_reaches_the_stub_once() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let started = Instant::now();

    // Four invocations at once with the same record; the upstream is slow
    // so that they all overlap the first one's call.
    let account = unique_account("twice");
    s.stub_fault(json!({"account": account, "kind": "slow", "delayMs": 1500, "count": 1}))
        .await?;
    let id = new_id();
    let event = json!({"Records": [record(&uuid::Uuid::new_v4().to_string(), &queue_body(&account, &id, "high", "fan_1"))]});
    let copies = 4;
    let answers = futures::future::join_all((0..copies).map(|_| s.invoke_consumer(&event))).await;
    let answers: Vec<Value> = answers.into_iter().collect::<Result<_>>()?;
    let left = answers.iter().map(failures).sum::<usize>();
    // Exactly one sends; those that overlapped its call are told to wait
    // (with a 1.5 s upstream, in practice all of them).
    ensure!(
        (1..copies).contains(&left),
        "one delivery sends, the others wait for it: {answers:?}"
    );
    // The waiting copies come back (here: invoked again) and find it sent.
    let again = s.invoke_consumer(&event).await?;
    ensure!(
        failures(&again) == 0,
        "a settled message is dropped: {again}"
    );

    // Two SQS messages with one body in one batch (one account's records go
    // in order): the second finds the first sent.
    let account2 = unique_account("twice_batch");
    let id2 = new_id();
    let body2 = queue_body(&account2, &id2, "medium", "fan_1");
    let batch = json!({"Records": [
        record(&uuid::Uuid::new_v4().to_string(), &body2),
        record(&uuid::Uuid::new_v4().to_string(), &body2),
    ]});
    let answer = s.invoke_consumer(&batch).await?;
    ensure!(failures(&answer) == 0, "{answer}");

    let msgs = [
        Msg {
            account: account.clone(),
            id: id.clone(),
        },
        Msg {
            account: account2,
            id: id2,
        },
    ];
    let report = settle(&f, &msgs, Duration::from_secs(30)).await?;
    eprintln!(
        "[faults] duplicate delivery: {copies} concurrent invocations of one record ({left} told to wait) \
         and one batch with two copies; {report}; total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    ensure!(report.sent == 2 && report.calls == 2, "{report}");
    Ok(())
}
