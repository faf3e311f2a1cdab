//! The trigger against a real SQS-compatible server (`AWS_ENDPOINT_URL_SQS`, moto
//! locally) and a fake consumer. Every test makes its own uniquely named queues, so the
//! tests run in parallel against one shared server.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use sqs_trigger::{TriggerConfig, TriggerError};
use support::{
    FakeConsumer, Reply, Trigger, bounded, config, counts, create_queue, delete_queues, eventually,
    send, sqs,
};

const TEST_LIMIT: Duration = Duration::from_secs(90);

fn bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| serde_json::json!({ "n": i }).to_string())
        .collect()
}

fn receive_count(record: &aws_lambda_events::event::sqs::SqsMessage) -> Result<u32> {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .context("no ApproximateReceiveCount")?
        .parse()
        .context("ApproximateReceiveCount is not a number")
}

/// The acceptance scenario: a record named in batchItemFailures comes back after its
/// visibility timeout and, after maxReceiveCount receives, sits in the DLQ, while its
/// batch neighbours are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_item_is_retried_then_dead_lettered_while_neighbours_are_deleted() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let dlq = create_queue(&sqs, "trigger-dlq", &[]).await?;
        let redrive = serde_json::json!({ "deadLetterTargetArn": dlq.arn, "maxReceiveCount": 3 });
        let queue = create_queue(
            &sqs,
            "trigger-main",
            &[
                (QueueAttributeName::VisibilityTimeout, "1".to_owned()),
                (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            ],
        )
        .await?;
        let ids = send(&sqs, &queue, &bodies(3)).await?;
        let failing = ids[1].clone();

        let fail_id = failing.clone();
        let fake = FakeConsumer::start(Duration::ZERO, move |event| {
            Reply::failures(
                event
                    .records
                    .iter()
                    .filter_map(|r| r.message_id.as_deref())
                    .filter(|id| *id == fail_id),
            )
        })
        .await?;
        let trigger = Trigger::start(config(&queue, &fake.invoke_url), sqs.clone());

        // First invocation: the whole batch; the neighbours are deleted right after it.
        let first = fake.wait_for_events(1, Duration::from_secs(15)).await?;
        let first_ids: BTreeSet<String> = first[0].ids().into_iter().collect();
        ensure!(
            first_ids == ids.iter().cloned().collect(),
            "first batch should hold the 3 messages, got {first_ids:?}"
        );
        eventually("neighbours deleted, failing record in flight", Duration::from_secs(10), || async {
            Ok(counts(&sqs, &queue).await? == (0, 1))
        })
        .await?;

        // Redelivered after each visibility timeout, then moved to the DLQ.
        eventually("failing record in the DLQ, main queue empty", Duration::from_secs(40), || async {
            Ok(counts(&sqs, &dlq).await? == (1, 0) && counts(&sqs, &queue).await? == (0, 0))
        })
        .await?;
        let stats = trigger.stop().await?;

        let seen = fake.seen();
        for later in &seen[1..] {
            ensure!(
                later.ids() == vec![failing.clone()],
                "only the failing record may come back, got {:?}",
                later.ids()
            );
        }
        let receive_counts = seen
            .iter()
            .flat_map(|s| s.event.records.iter())
            .filter(|r| r.message_id.as_deref() == Some(failing.as_str()))
            .map(receive_count)
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            receive_counts == vec![1, 2, 3],
            "the failing record should be seen with ApproximateReceiveCount 1, 2, 3 (maxReceiveCount 3), got {receive_counts:?}"
        );

        let in_dlq = sqs
            .receive_message()
            .queue_url(&dlq.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let dlq_ids: Vec<_> = in_dlq.iter().filter_map(|m| m.message_id.clone()).collect();
        ensure!(dlq_ids == vec![failing.clone()], "DLQ should hold only the failing record, got {dlq_ids:?}");

        ensure!(stats.batches == 3, "{stats:?}");
        ensure!(stats.records == 5, "{stats:?}");
        ensure!(stats.deleted == 2, "{stats:?}");
        ensure!(stats.failed_items == 3, "{stats:?}");
        ensure!(stats.failed_invocations == 0, "{stats:?}");
        ensure!(stats.delete_errors == 0, "{stats:?}");
        delete_queues(&sqs, &[&queue, &dlq]).await;
        Ok(())
    })
    .await
}

/// Runs one invocation that must count as failed, then checks that nothing was deleted:
/// once the trigger stopped, both records become visible again.
async fn assert_failed_invocation_deletes_nothing(
    reply: Reply,
    delay: Duration,
    tweak: impl FnOnce(&mut TriggerConfig),
) -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(
            &sqs,
            "trigger-fail",
            &[(QueueAttributeName::VisibilityTimeout, "2".to_owned())],
        )
        .await?;
        send(&sqs, &queue, &bodies(2)).await?;
        let fake = FakeConsumer::start(delay, move |_| reply.clone()).await?;
        let mut config = config(&queue, &fake.invoke_url);
        tweak(&mut config);
        let trigger = Trigger::start(config, sqs.clone());
        let seen = fake.wait_for_events(1, Duration::from_secs(15)).await?;
        ensure!(seen[0].event.records.len() == 2, "one batch of 2 expected");
        let stats = trigger.stop().await?;
        ensure!(stats.deleted == 0, "nothing may be deleted: {stats:?}");
        ensure!(stats.failed_items == 0, "{stats:?}");
        ensure!(
            stats.failed_invocations >= 1 && stats.failed_invocations == stats.batches,
            "every invocation failed: {stats:?}"
        );
        eventually(
            "both records visible again",
            Duration::from_secs(10),
            || async { Ok(counts(&sqs, &queue).await? == (2, 0)) },
        )
        .await?;
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_500_with_error_document_deletes_nothing() -> Result<()> {
    // What `cargo lambda watch` answers when the handler returns an error or panics.
    let reply = Reply::json(
        500,
        serde_json::json!({"errorType": "&alloc::boxed::Box<dyn core::error::Error>", "errorMessage": "boom"}),
    );
    assert_failed_invocation_deletes_nothing(reply, Duration::ZERO, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_error_header_deletes_nothing() -> Result<()> {
    // What AWS's Invoke API answers for a function error.
    let mut reply = Reply::json(
        200,
        serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": "exit status 101"}),
    );
    reply
        .headers
        .push(("x-amz-function-error", "Unhandled".to_owned()));
    assert_failed_invocation_deletes_nothing(reply, Duration::ZERO, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_document_with_status_200_deletes_nothing() -> Result<()> {
    // What `cargo lambda watch` answers for an init error.
    let reply = Reply::json(
        200,
        serde_json::json!({"errorType": "InitError", "errorMessage": "missing env"}),
    );
    assert_failed_invocation_deletes_nothing(reply, Duration::ZERO, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_item_identifier_deletes_nothing() -> Result<()> {
    let reply = Reply::failures(["00000000-0000-0000-0000-000000000000"]);
    assert_failed_invocation_deletes_nothing(reply, Duration::ZERO, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_item_identifier_deletes_nothing() -> Result<()> {
    assert_failed_invocation_deletes_nothing(Reply::failures([""]), Duration::ZERO, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_that_is_not_json_deletes_nothing() -> Result<()> {
    let reply = Reply {
        status: 200,
        headers: Vec::new(),
        body: "OK".to_owned(),
    };
    assert_failed_invocation_deletes_nothing(reply, Duration::ZERO, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_timeout_deletes_nothing() -> Result<()> {
    assert_failed_invocation_deletes_nothing(Reply::success(), Duration::from_secs(3), |c| {
        c.invoke_timeout = Duration::from_millis(300);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_consumer_deletes_nothing() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(
            &sqs,
            "trigger-refused",
            &[(QueueAttributeName::VisibilityTimeout, "1".to_owned())],
        )
        .await?;
        send(&sqs, &queue, &bodies(2)).await?;
        // A port nobody listens on any more.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await?
            .local_addr()?;
        let url = format!("http://{closed}/2015-03-31/functions/consumer/invocations");
        let trigger = Trigger::start(config(&queue, &url), sqs.clone());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stats = trigger.stop().await?;
        ensure!(stats.failed_invocations >= 1, "{stats:?}");
        ensure!(
            stats.deleted == 0 && stats.failed_invocations == stats.batches,
            "{stats:?}"
        );
        eventually(
            "both records visible again",
            Duration::from_secs(10),
            || async { Ok(counts(&sqs, &queue).await? == (2, 0)) },
        )
        .await?;
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrency_is_never_exceeded() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(&sqs, "trigger-concurrency", &[]).await?;
        let total = 24;
        for (chunk_no, chunk) in bodies(total).chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{chunk_no}-{i}"))
                        .message_body(body)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = sqs
                .send_message_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
                .await?;
            ensure!(
                output.failed.is_empty(),
                "SendMessageBatch failed: {:?}",
                output.failed
            );
        }
        let fake = FakeConsumer::start(Duration::from_millis(250), |_| Reply::success()).await?;
        let config = TriggerConfig {
            batch_size: 1,
            max_concurrency: 2,
            ..config(&queue, &fake.invoke_url)
        };
        let trigger = Trigger::start(config, sqs.clone());
        eventually(
            "every message invoked and deleted",
            Duration::from_secs(60),
            || async {
                let ids: BTreeSet<String> = fake.seen().iter().flat_map(|s| s.ids()).collect();
                Ok(ids.len() == total && counts(&sqs, &queue).await? == (0, 0))
            },
        )
        .await?;
        let stats = trigger.stop().await?;
        ensure!(
            fake.max_in_flight() <= 2,
            "the consumer saw {} concurrent invocations with max_concurrency 2",
            fake.max_in_flight()
        );
        ensure!(
            fake.max_in_flight() == 2,
            "the cap should be used: the consumer saw at most {} at once",
            fake.max_in_flight()
        );
        ensure!(stats.max_in_flight <= 2, "{stats:?}");
        ensure!(stats.deleted == total as u64, "{stats:?}");
        ensure!(stats.batches == total as u64, "batch_size 1: {stats:?}");
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_has_the_aws_fields() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(&sqs, "trigger-event", &[]).await?;
        let string_attr = |data_type: &str, value: &str| {
            MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
        };
        let sent = sqs
            .send_message()
            .queue_url(&queue.url)
            .message_body(r#"{"recipientId":"fan_1","content":"hi"}"#)
            .message_attributes("accountId", string_attr("String", "acct_1")?)
            .message_attributes("attempt", string_attr("Number", "2")?)
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0_u8, 159, 146, 150]))
                    .build()?,
            )
            .send()
            .await?;
        let message_id = sent.message_id.clone().context("no message id")?;
        let fake = FakeConsumer::start(Duration::ZERO, |_| Reply::success()).await?;
        let trigger = Trigger::start(config(&queue, &fake.invoke_url), sqs.clone());
        let seen = fake.wait_for_events(1, Duration::from_secs(15)).await?;
        let stats = trigger.stop().await?;
        ensure!(stats.deleted == 1, "{stats:?}");

        // Parsed with aws_lambda_events (what the consumer uses).
        let event = &seen[0].event;
        ensure!(event.records.len() == 1, "one record expected");
        let record = &event.records[0];
        ensure!(record.message_id.as_deref() == Some(message_id.as_str()));
        ensure!(record.body.as_deref() == Some(r#"{"recipientId":"fan_1","content":"hi"}"#));
        ensure!(
            record
                .receipt_handle
                .as_deref()
                .is_some_and(|h| !h.is_empty())
        );
        ensure!(
            record.md5_of_body == sent.md5_of_message_body,
            "md5OfBody {:?}",
            record.md5_of_body
        );
        ensure!(
            record.md5_of_message_attributes == sent.md5_of_message_attributes,
            "md5OfMessageAttributes {:?} vs {:?}",
            record.md5_of_message_attributes,
            sent.md5_of_message_attributes
        );
        ensure!(record.event_source.as_deref() == Some("aws:sqs"));
        ensure!(
            record.event_source_arn.as_deref() == Some(queue.arn.as_str()),
            "eventSourceARN {:?}, queue ARN {}",
            record.event_source_arn,
            queue.arn
        );
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
        ensure!(
            record.aws_region.as_deref() == Some(region.as_str()),
            "{:?}",
            record.aws_region
        );
        ensure!(receive_count(record)? == 1);
        for name in ["SentTimestamp", "ApproximateFirstReceiveTimestamp"] {
            let value = record
                .attributes
                .get(name)
                .with_context(|| format!("no {name}"))?;
            value
                .parse::<u64>()
                .with_context(|| format!("{name}={value}"))?;
        }
        ensure!(
            record
                .attributes
                .get("SenderId")
                .is_some_and(|s| !s.is_empty()),
            "no SenderId"
        );
        let account = &record.message_attributes["accountId"];
        ensure!(account.string_value.as_deref() == Some("acct_1"));
        ensure!(account.data_type.as_deref() == Some("String"));
        let attempt = &record.message_attributes["attempt"];
        ensure!(attempt.string_value.as_deref() == Some("2"));
        ensure!(attempt.data_type.as_deref() == Some("Number"));
        let raw_attr = &record.message_attributes["raw"];
        ensure!(raw_attr.binary_value.as_deref() == Some(&vec![0_u8, 159, 146, 150]));
        ensure!(raw_attr.data_type.as_deref() == Some("Binary"));

        // The raw JSON: exactly AWS's keys.
        let raw = &seen[0].raw;
        let top: BTreeSet<&str> = raw
            .as_object()
            .context("object")?
            .keys()
            .map(String::as_str)
            .collect();
        ensure!(top == BTreeSet::from(["Records"]), "{top:?}");
        let keys: BTreeSet<&str> = raw["Records"][0]
            .as_object()
            .context("record object")?
            .keys()
            .map(String::as_str)
            .collect();
        let expected = BTreeSet::from([
            "messageId",
            "receiptHandle",
            "body",
            "attributes",
            "messageAttributes",
            "md5OfBody",
            "md5OfMessageAttributes",
            "eventSource",
            "eventSourceARN",
            "awsRegion",
        ]);
        ensure!(keys == expected, "record keys {keys:?}");
        ensure!(
            raw["Records"][0]["messageAttributes"]["accountId"]
                == serde_json::json!({
                    "stringValue": "acct_1",
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": "String"
                }),
            "{}",
            raw["Records"][0]["messageAttributes"]
        );
        ensure!(raw["Records"][0]["messageAttributes"]["raw"]["binaryValue"] == "AJ+Slg==");
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_above_ten_is_filled_within_the_window() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(&sqs, "trigger-window", &[]).await?;
        let ids = send(&sqs, &queue, &bodies(25)).await?;
        let fake = FakeConsumer::start(Duration::ZERO, |_| Reply::success()).await?;
        let config = TriggerConfig {
            batch_size: 25,
            batch_window: Duration::from_secs(3),
            ..config(&queue, &fake.invoke_url)
        };
        let trigger = Trigger::start(config, sqs.clone());
        let seen = fake.wait_for_events(1, Duration::from_secs(20)).await?;
        let got: BTreeSet<String> = seen[0].ids().into_iter().collect();
        ensure!(
            got == ids.iter().cloned().collect(),
            "one batch of all 25 expected, got {}",
            got.len()
        );
        eventually("all deleted", Duration::from_secs(10), || async {
            Ok(counts(&sqs, &queue).await? == (0, 0))
        })
        .await?;
        let stats = trigger.stop().await?;
        ensure!(stats.batches == 1 && stats.deleted == 25, "{stats:?}");
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_invocations_finish() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(&sqs, "trigger-shutdown", &[]).await?;
        send(&sqs, &queue, &bodies(2)).await?;
        let fake = FakeConsumer::start(Duration::from_millis(1500), |_| Reply::success()).await?;
        let trigger = Trigger::start(config(&queue, &fake.invoke_url), sqs.clone());
        fake.wait_for_events(1, Duration::from_secs(15)).await?;
        let asked = Instant::now();
        let stats = trigger.stop().await?;
        ensure!(
            asked.elapsed() >= Duration::from_millis(1000),
            "run returned after {:?}, before the in-flight invocation answered",
            asked.elapsed()
        );
        ensure!(stats.batches == 1 && stats.deleted == 2, "{stats:?}");
        ensure!(
            counts(&sqs, &queue).await? == (0, 0),
            "records should be deleted"
        );
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_and_missing_queue_fail_fast() -> Result<()> {
    bounded(TEST_LIMIT, async {
        let sqs = sqs().await?;
        let queue = create_queue(&sqs, "trigger-config", &[]).await?;
        for (field, config) in [
            (
                "batch_size",
                TriggerConfig {
                    batch_size: 0,
                    ..TriggerConfig::new(&queue.url)
                },
            ),
            (
                "batch_size",
                TriggerConfig {
                    batch_size: 10_001,
                    ..TriggerConfig::new(&queue.url)
                },
            ),
            (
                "max_concurrency",
                TriggerConfig {
                    max_concurrency: 0,
                    ..TriggerConfig::new(&queue.url)
                },
            ),
        ] {
            match sqs_trigger::run(config, sqs.clone(), std::future::pending()).await {
                Err(TriggerError::InvalidConfig { field: f, .. }) if f == field => {}
                other => anyhow::bail!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
        let missing = format!("{}-missing", queue.url);
        match sqs_trigger::run(
            TriggerConfig::new(missing),
            sqs.clone(),
            std::future::pending(),
        )
        .await
        {
            Err(TriggerError::QueueUnavailable { .. }) => {}
            other => anyhow::bail!("missing queue: expected QueueUnavailable, got {other:?}"),
        }
        delete_queues(&sqs, &[&queue]).await;
        Ok(())
    })
    .await
}
