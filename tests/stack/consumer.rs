//! The consumer's delivery guarantees through the real stack: the poller,
//! the SQS-compatible server, Redis, the OnlyFans stub and the consumer
//! under `cargo lambda watch`.

use anyhow::Result;
use integration_tests::{Stack, curve_violations, eventually, queue_body, unique_account};
use serde_json::{Value, json};
use std::time::Duration;

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn sent_ids(stack: &Stack, account: &str) -> Result<Vec<Value>> {
    Ok(stack
        .stub_requests(account)
        .await?
        .into_iter()
        .filter(|r| {
            r["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s))
        })
        .collect())
}

async fn wait_for_status(
    stack: &Stack,
    account: &str,
    id: &str,
    want: &str,
    limit: Duration,
) -> Result<std::collections::HashMap<String, String>> {
    eventually(&format!("{id} to be {want}"), limit, || async {
        let s = stack.status_of(account, id).await?;
        Ok((s.get("status").map(String::as_str) == Some(want)).then_some(s))
    })
    .await
}

/// Eight concurrent consumer instances on one account: the stub counts no
/// violation, the budget is used, and no throttled message is dead-lettered.
#[tokio::test]
async fn concurrent_consumers_respect_the_limit_and_use_the_budget() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("budget");
    let n = 120;
    let ids: Vec<String> = (0..n).map(|_| new_id()).collect();
    let bodies: Vec<(String, String)> = ids
        .iter()
        .map(|id| (queue_body(&account, id, "medium", "fan_1"), account.clone()))
        .collect();
    stack.enqueue_bodies(&bodies).await?;

    // At the test rate (RATE_LIMIT_PER_MINUTE, default 600/min) this takes
    // (n - burst) / rate: about 11 s at 600/min.
    let expected = Duration::from_secs_f64((n as f64 - stack.burst) * 60.0 / stack.rate_per_minute);
    let sent = eventually(
        "every message at the stub",
        expected * 4 + Duration::from_secs(60),
        || async {
            let s = sent_ids(&stack, &account).await?;
            Ok((s.len() >= n).then_some(s))
        },
    )
    .await?;

    let all = stack.stub_requests(&account).await?;
    let violations = all.iter().filter(|r| r["violation"] == true).count();
    let duplicates = all.iter().filter(|r| r["duplicate"] == true).count();
    assert_eq!(violations, 0, "the stub counted limit violations");
    assert_eq!(duplicates, 0, "a message reached the stub twice");
    assert_eq!(sent.len(), n);

    let mut times: Vec<u64> = all
        .iter()
        .filter_map(|r| r["receivedAtUs"].as_u64())
        .collect();
    times.sort_unstable();
    // Our own check of the contract's curve, with no tolerance beyond 50 ms.
    assert_eq!(
        curve_violations(
            &times,
            stack.rate_per_minute,
            stack.burst,
            Duration::from_millis(50)
        ),
        0
    );
    let span = (times[times.len() - 1] - times[0]) as f64 / 1e6;
    let budget = stack.burst + stack.rate_per_minute * span / 60.0;
    let used = n as f64 / budget;
    eprintln!(
        "{n} sends in {span:.2}s: {:.1}% of the budget ({budget:.1})",
        used * 100.0
    );
    assert!(
        used >= 0.95,
        "only {:.1}% of the budget was used",
        used * 100.0
    );

    for id in &ids {
        let s = stack.status_of(&account, id).await?;
        assert_eq!(
            s.get("status").map(String::as_str),
            Some("sent"),
            "{id}: {s:?}"
        );
        assert_eq!(
            s.get("attempts").map(String::as_str),
            Some("1"),
            "{id}: waits are not attempts"
        );
    }
    assert!(
        stack.dlq_matching(&account).await?.is_empty(),
        "a throttled message reached the DLQ"
    );
    Ok(())
}

/// A 429 storm is waited out: every message is sent, none costs an attempt.
#[tokio::test]
async fn a_429_storm_is_waited_out() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("429");
    stack
        .stub_fault(json!({"account": account, "kind": "status", "status": 429, "retryAfter": 1, "count": 4}))
        .await?;
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    let bodies: Vec<_> = ids
        .iter()
        .map(|id| (queue_body(&account, id, "high", "fan_1"), account.clone()))
        .collect();
    stack.enqueue_bodies(&bodies).await?;
    for id in &ids {
        let s = wait_for_status(&stack, &account, id, "sent", Duration::from_secs(90)).await?;
        assert_eq!(
            s.get("attempts").map(String::as_str),
            Some("1"),
            "a 429 is not an attempt: {s:?}"
        );
    }
    let all = stack.stub_requests(&account).await?;
    assert_eq!(all.iter().filter(|r| r["status"] == 429).count(), 4);
    assert!(stack.dlq_matching(&account).await?.is_empty());
    Ok(())
}

/// A 5xx storm is retried with backoff; past MAX_ATTEMPTS the message is dead
/// and sits in the DLQ with the reason.
#[tokio::test]
async fn a_5xx_storm_retries_then_dead_letters() -> Result<()> {
    let stack = Stack::from_env();
    let recovering = unique_account("5xx_ok");
    let failing = unique_account("5xx_dead");
    let attempts = stack.max_attempts;
    stack
        .stub_fault(
            json!({"account": recovering, "kind": "status", "status": 503, "count": attempts - 1}),
        )
        .await?;
    stack
        .stub_fault(json!({"account": failing, "kind": "status", "status": 500, "message": "boom"}))
        .await?;
    let (ok_id, dead_id) = (new_id(), new_id());
    stack
        .enqueue_bodies(&[
            (
                queue_body(&recovering, &ok_id, "medium", "fan_1"),
                recovering.clone(),
            ),
            (
                queue_body(&failing, &dead_id, "medium", "fan_1"),
                failing.clone(),
            ),
        ])
        .await?;
    let limit = Duration::from_secs(30 * u64::from(attempts) + 30);
    let s = wait_for_status(&stack, &recovering, &ok_id, "sent", limit).await?;
    assert_eq!(s.get("attempts"), Some(&attempts.to_string()));
    let s = wait_for_status(&stack, &failing, &dead_id, "dead", limit).await?;
    assert!(
        s.get("lastError").is_some_and(|e| e.contains("500")),
        "{s:?}"
    );
    let dead = eventually(
        "the dead message in the DLQ",
        Duration::from_secs(30),
        || async {
            let d = stack.dlq_matching(&dead_id).await?;
            Ok((!d.is_empty()).then_some(d))
        },
    )
    .await?;
    assert!(
        dead[0].1.as_deref().is_some_and(|r| r.contains("gave up")),
        "{dead:?}"
    );
    assert_eq!(
        stack.stub_requests(&failing).await?.len(),
        attempts as usize
    );
    Ok(())
}

/// A permanent 4xx fails the message with the upstream's reason, no retry.
#[tokio::test]
async fn a_permanent_4xx_fails_without_retry() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("403");
    stack
        .stub_fault(json!({"account": account, "kind": "status", "status": 403, "message": "fan has blocked you"}))
        .await?;
    let id = new_id();
    stack
        .enqueue_bodies(&[(queue_body(&account, &id, "low", "fan_1"), account.clone())])
        .await?;
    let s = wait_for_status(&stack, &account, &id, "failed", Duration::from_secs(60)).await?;
    assert!(
        s.get("lastError")
            .is_some_and(|e| e.contains("fan has blocked you")),
        "{s:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.stub_requests(&account).await?.len(), 1, "not retried");
    assert!(stack.dlq_matching(&id).await?.is_empty());
    Ok(())
}

/// A poison message reaches the DLQ with its reason; its neighbours are sent.
#[tokio::test]
async fn poison_reaches_the_dlq_and_neighbours_are_delivered() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("poison");
    let marker = format!("poison-{}", uuid::Uuid::new_v4());
    let (a, b) = (new_id(), new_id());
    stack
        .enqueue_bodies(&[
            (queue_body(&account, &a, "medium", "fan_1"), account.clone()),
            (format!("{{not json {marker}"), account.clone()),
            (queue_body(&account, &b, "medium", "fan_2"), account.clone()),
        ])
        .await?;
    for id in [&a, &b] {
        wait_for_status(&stack, &account, id, "sent", Duration::from_secs(60)).await?;
    }
    let dead = eventually(
        "the poison message in the DLQ",
        Duration::from_secs(60),
        || async {
            let d = stack.dlq_matching(&marker).await?;
            Ok((!d.is_empty()).then_some(d))
        },
    )
    .await?;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .1
            .as_deref()
            .is_some_and(|r| r.contains("not valid JSON")),
        "{dead:?}"
    );
    Ok(())
}

/// The same SQS message delivered twice, concurrently, while the upstream is
/// slow (as when a visibility timeout runs out mid-call): the stub gets it once.
#[tokio::test]
async fn a_message_delivered_twice_reaches_the_stub_once() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("twice");
    stack
        .stub_fault(json!({"account": account, "kind": "slow", "delayMs": 1500, "count": 1}))
        .await?;
    let id = new_id();
    let body = queue_body(&account, &id, "high", "fan_1");
    let event = json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(),
        "receiptHandle": "not-a-real-receipt-handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795741200000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:outbound-messages",
        "awsRegion": "us-east-1"
    }]});
    let (r1, r2) = tokio::join!(stack.invoke_consumer(&event), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack.invoke_consumer(&event).await
    });
    let (r1, r2) = (r1?, r2?);
    let failures = |v: &Value| v["batchItemFailures"].as_array().map_or(0, Vec::len);
    assert_eq!(
        failures(&r1) + failures(&r2),
        1,
        "one delivery sends, the other waits: {r1} {r2}"
    );
    wait_for_status(&stack, &account, &id, "sent", Duration::from_secs(30)).await?;
    // The waiting delivery comes back and finds the message sent.
    let r3 = stack.invoke_consumer(&event).await?;
    assert_eq!(failures(&r3), 0, "{r3}");
    let reqs = stack.stub_requests(&account).await?;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    Ok(())
}
