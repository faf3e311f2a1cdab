//! SQS: enqueue, defer, dead-letter, re-enqueue and queue statistics, each
//! behind a small port trait implemented directly on [`SqsQueue`].
//!
//! One `aws_sdk_sqs::Client` is built at cold start ([`sqs_client`]) with the
//! SDK's standard retries (exponential backoff with jitter) and tight
//! timeouts, so a struggling SQS makes the producer answer 503 quickly
//! instead of hanging until API Gateway's 30 s limit.

use crate::message::QueueMessage;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use std::collections::HashMap;
use std::time::Duration;

/// SQS's longest visibility timeout: a deferral can be at most 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest `DelaySeconds` on a sent message.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Message attribute names the producer sets and the consumer reads.
pub mod attr {
    pub const PRIORITY: &str = "priority";
    pub const ACCOUNT_ID: &str = "accountId";
    /// W3C `traceparent` of the request that accepted the message.
    pub const TRACEPARENT: &str = "traceparent";
    /// Why the consumer dead-lettered a message.
    pub const DEAD_REASON: &str = "deadReason";
    /// On a copy of a delivered message whose `sent` status Redis could not
    /// take: the outcome (JSON: attempts, sentAt, upstreamMessageId), which
    /// the consumer only records.
    pub const SENT_RECORD: &str = "sentRecord";
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {op} failed: {message}")]
    Sqs { op: &'static str, message: String },
}

fn sqs_err<E: std::error::Error>(op: &'static str) -> impl FnOnce(E) -> QueueError {
    move |e| QueueError::Sqs {
        op,
        // The SDK's Display is terse ("service error"); the source chain says why.
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

/// Builds the SQS client, once per cold start, from the function's one
/// [`SdkConfig`](aws_config::SdkConfig) ([`crate::tls::sdk_config`]), with
/// SQS's own retries and timeouts on top. `AWS_ENDPOINT_URL_SQS` points it at
/// the local SQS-compatible server; in AWS it is unset.
pub fn sqs_client(config: &aws_config::SdkConfig) -> Client {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let sqs = aws_sdk_sqs::config::Builder::from(config)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    Client::from_conf(sqs)
}

fn string_attr(v: impl Into<String>) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .ok()
}

/// The queue statistics `GET /v1/status` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dlq_depth: u64,
    /// Age of the oldest message, where the server reports it (SQS reports it
    /// only through CloudWatch; `None` locally).
    pub oldest_age_secs: Option<u64>,
}

/// Message attributes as the SDK sends them.
pub type Attributes = HashMap<String, MessageAttributeValue>;

/// Entries per `SendMessageBatch` (SQS's limit).
pub const BATCH_MAX: usize = 10;
/// Bytes of bodies per `SendMessageBatch` at most: SQS's 256 KiB payload
/// limit, less room for attributes.
pub const BATCH_MAX_BYTES: usize = 200 * 1024;
/// Sends of a batch entry SQS refused on its own, at most.
pub const BATCH_ENTRY_ATTEMPTS: usize = 3;
/// `SendMessageBatch` calls in flight at once: 1,000 recipients are 100
/// calls, which one after the other would take ~100 round trips (SQS
/// answers a call in ~10-20 ms), over the 1 s goal for `POST /v1/campaigns`.
/// Not more: against a slow local SQS stand-in (moto, one Python process)
/// ten at once made each call exceed its 2 s attempt timeout, which sent
/// the rest to the outbox and opened the breaker; five did not.
pub const BATCH_CONCURRENCY: usize = 5;

/// Some messages of a batch could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("{} message(s) not stored: {error}", failed.len())]
pub struct BatchError {
    /// The messages not stored (the others are).
    pub failed: Vec<crate::message::MessageId>,
    pub error: QueueError,
}

/// The producer's port: put messages on the queue durably.
pub trait Enqueue: Send + Sync {
    fn enqueue(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Puts many messages on the queue; on error, says which are not stored.
    fn enqueue_batch(
        &self,
        msgs: &[QueueMessage],
        traceparent: Option<&str>,
    ) -> impl Future<Output = Result<(), BatchError>> + Send;
}

/// Splits messages into `SendMessageBatch` calls: at most [`BATCH_MAX`]
/// entries and [`BATCH_MAX_BYTES`] of bodies each.
pub fn batches(bodies: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, len) in bodies.iter().enumerate() {
        if i > start && (i - start == BATCH_MAX || bytes + len > BATCH_MAX_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < bodies.len() {
        out.push(start..bodies.len());
    }
    out
}

/// What the producer reads about the queue, beside sending to it.
pub trait QueueInfo: Send + Sync {
    /// Depths of the main queue and the DLQ (`/v1/status`).
    fn stats(&self) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;
    /// Proves the queue answers (`/health`).
    fn ping(&self) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// What the consumer does to SQS messages besides the trigger's deletes.
pub trait Redeliver: Send + Sync {
    /// Hides received messages, each `(receipt handle, wait)` for its wait
    /// (capped at 12 h): they come back then. One request for up to
    /// [`BATCH_MAX`] entries; `Ok` holds how many entries SQS refused (those
    /// keep the visibility they had: later, not lost).
    fn defer_batch(
        &self,
        entries: &[(String, Duration)],
    ) -> impl Future<Output = Result<usize, QueueError>> + Send;
    /// Sends a body to the DLQ with the reason as an attribute.
    fn dead_letter(
        &self,
        body: &str,
        attributes: Attributes,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Sends a fresh copy to the main queue (its receive count starts again).
    fn requeue(
        &self,
        body: &str,
        attributes: Attributes,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The SQS adapter for both functions.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: Option<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends a body to the main queue with attributes and an optional delay.
    /// The account is the message group: on a standard queue that makes it
    /// a fair queue, where SQS hands out the messages of quiet groups ahead
    /// of a backlogged one's ("Amazon SQS fair queues", SQS Developer Guide).
    pub async fn send_raw(
        &self,
        body: String,
        attributes: HashMap<String, MessageAttributeValue>,
        delay: Duration,
    ) -> Result<String, QueueError> {
        let group = attributes
            .get(attr::ACCOUNT_ID)
            .and_then(|a| a.string_value())
            .map(str::to_owned);
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .set_message_group_id(group)
            .set_message_attributes(Some(attributes))
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map_err(sqs_err("SendMessage"))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// The attributes the producer puts on every message.
pub fn message_attributes(
    msg: &QueueMessage,
    traceparent: Option<&str>,
) -> HashMap<String, MessageAttributeValue> {
    let mut m = HashMap::new();
    let mut put = |k: &str, v: &str| {
        if let Some(a) = string_attr(v) {
            m.insert(k.to_owned(), a);
        }
    };
    put(attr::PRIORITY, msg.priority.as_str());
    put(attr::ACCOUNT_ID, msg.account_id.as_str());
    if let Some(tp) = traceparent {
        put(attr::TRACEPARENT, tp);
    }
    m
}

impl Enqueue for SqsQueue {
    async fn enqueue(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        // A scheduled message starts hidden for up to SQS's 15 minutes; the
        // consumer hides it for the rest (`policy::due_step`).
        let delay =
            crate::delivery::policy::enqueue_delay(msg.send_at, time::OffsetDateTime::now_utc());
        self.send_raw(msg.to_body(), message_attributes(msg, traceparent), delay)
            .await
            .map(|_| ())
    }

    /// `SendMessageBatch` in tens, [`BATCH_CONCURRENCY`] calls at a time;
    /// entries SQS refuses on their own are sent again (up to
    /// [`BATCH_ENTRY_ATTEMPTS`] in all), a call that fails as a whole is not
    /// (the SDK has retried it already).
    async fn enqueue_batch(
        &self,
        msgs: &[QueueMessage],
        traceparent: Option<&str>,
    ) -> Result<(), BatchError> {
        let now = time::OffsetDateTime::now_utc();
        let entries: Vec<SendMessageBatchRequestEntry> = msgs
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let delay = crate::delivery::policy::enqueue_delay(m.send_at, now);
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.to_body())
                    .message_group_id(m.account_id.as_str())
                    .set_message_attributes(Some(message_attributes(m, traceparent)))
                    .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
                    .build()
                    .ok()
            })
            .collect();
        let lens: Vec<usize> = entries.iter().map(|e| e.message_body().len()).collect();
        let mut failed = Vec::new();
        let mut last_error = None;
        let ranges = batches(&lens);
        for wave in ranges.chunks(BATCH_CONCURRENCY) {
            let mut calls = tokio::task::JoinSet::new();
            for range in wave {
                calls.spawn(send_batch(
                    self.client.clone(),
                    self.queue_url.clone(),
                    entries[range.clone()].to_vec(),
                ));
            }
            while let Some(joined) = calls.join_next().await {
                let (refused, error) = match joined {
                    Ok(out) => out,
                    Err(e) => {
                        // A call that panicked: which of its entries SQS
                        // took is unknown, so none counts as stored (below);
                        // enqueued again, a copy is a no-op for the consumer.
                        last_error = Some(QueueError::Sqs {
                            op: "SendMessageBatch",
                            message: format!("batch task failed: {e}"),
                        });
                        continue;
                    }
                };
                failed.extend(
                    refused
                        .iter()
                        .filter_map(|&i| msgs.get(i))
                        .map(|m| m.message_id),
                );
                if error.is_some() {
                    last_error = error;
                }
            }
        }
        match last_error {
            Some(error) if !failed.is_empty() => Err(BatchError { failed, error }),
            Some(error) => Err(BatchError {
                failed: msgs.iter().map(|m| m.message_id).collect(),
                error,
            }),
            None => Ok(()),
        }
    }
}

/// One `SendMessageBatch` and its per-entry retries; returns the indexes
/// (the entries' ids) not stored, and why.
async fn send_batch(
    client: Client,
    queue_url: String,
    mut todo: Vec<SendMessageBatchRequestEntry>,
) -> (Vec<usize>, Option<QueueError>) {
    let mut last_error = None;
    for _ in 0..BATCH_ENTRY_ATTEMPTS {
        if todo.is_empty() {
            break;
        }
        match client
            .send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(todo.clone()))
            .send()
            .await
        {
            Ok(out) => {
                if let Some(f) = out.failed.first() {
                    last_error = Some(QueueError::Sqs {
                        op: "SendMessageBatch",
                        message: format!(
                            "entry refused: {} {}",
                            f.code,
                            f.message.as_deref().unwrap_or("")
                        ),
                    });
                }
                let refused: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
                todo.retain(|e| refused.contains(&e.id()));
            }
            Err(e) => {
                last_error = Some(sqs_err("SendMessageBatch")(e));
                break;
            }
        }
    }
    let ids: Vec<usize> = todo.iter().filter_map(|e| e.id().parse().ok()).collect();
    // An entry refused once and taken on a later send is stored.
    let error = if ids.is_empty() { None } else { last_error };
    (ids, error)
}

impl QueueInfo for SqsQueue {
    /// Queue depths of the main queue and the DLQ.
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let main = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(sqs_err("GetQueueAttributes"))?;
        let get = |attrs: &Option<HashMap<QueueAttributeName, String>>,
                   name: QueueAttributeName| {
            attrs
                .as_ref()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let a = main.attributes;
        let mut stats = QueueStats {
            visible: get(&a, QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(
                &a,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ),
            delayed: get(&a, QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            ..QueueStats::default()
        };
        if let Some(dlq) = &self.dlq_url {
            let d = self
                .client
                .get_queue_attributes()
                .queue_url(dlq)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .map_err(sqs_err("GetQueueAttributes(DLQ)"))?;
            stats.dlq_depth = get(
                &d.attributes,
                QueueAttributeName::ApproximateNumberOfMessages,
            );
        }
        Ok(stats)
    }

    /// A cheap call proving SQS answers, for `/health`.
    async fn ping(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sqs_err("GetQueueAttributes"))?;
        Ok(())
    }
}

impl Redeliver for SqsQueue {
    /// `ChangeMessageVisibilityBatch`: deferrals, up to ten at a time
    /// (authorized by `sqs:ChangeMessageVisibility`, as the single call).
    async fn defer_batch(&self, entries: &[(String, Duration)]) -> Result<usize, QueueError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, (receipt_handle, wait))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt_handle)
                    .visibility_timeout((*wait).min(MAX_VISIBILITY).as_secs() as i32)
                    .build()
                    .map_err(sqs_err("ChangeMessageVisibilityBatch"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_err("ChangeMessageVisibilityBatch"))?;
        Ok(out.failed().len())
    }

    /// Sends a body to the DLQ with the reason as a message attribute.
    async fn dead_letter(
        &self,
        body: &str,
        mut attributes: Attributes,
        reason: &str,
    ) -> Result<(), QueueError> {
        let Some(dlq) = &self.dlq_url else {
            return Err(QueueError::Sqs {
                op: "SendMessage(DLQ)",
                message: "DLQ_URL is not configured".into(),
            });
        };
        // SQS message attribute values are limited; reasons are short, but cap anyway.
        let reason: String = reason.chars().take(1024).collect();
        if let Some(v) = string_attr(reason) {
            attributes.insert(attr::DEAD_REASON.into(), v);
        }
        // An empty body cannot be sent to SQS; keep the record of it anyway.
        let body = if body.is_empty() {
            "(empty body)"
        } else {
            body
        };
        self.client
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(sqs_err("SendMessage(DLQ)"))?;
        Ok(())
    }

    async fn requeue(
        &self,
        body: &str,
        attributes: Attributes,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.send_raw(body.to_owned(), attributes, delay)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_entries_and_bounded_bytes() {
        assert!(batches(&[]).is_empty());
        assert_eq!(batches(&[1; 25]), vec![0..10, 10..20, 20..25]);
        let big = BATCH_MAX_BYTES / 2;
        assert_eq!(batches(&[big, big, big]), vec![0..2, 2..3]);
        // A single entry over the budget still goes (alone).
        assert_eq!(batches(&[BATCH_MAX_BYTES + 1, 1]), vec![0..1, 1..2]);
    }
    use aws_config::{BehaviorVersion, Region, SdkConfig};

    #[test]
    fn the_sqs_client_keeps_the_shared_config_and_adds_its_timeouts() {
        let shared = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-3"))
            .endpoint_url("http://127.0.0.1:4566")
            .build();
        let client = sqs_client(&shared);
        let config = client.config();
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-3"));
        let timeouts = config.timeout_config();
        assert_eq!(
            timeouts.and_then(|t| t.operation_timeout()),
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(3));
    }
}
