//! SQS: enqueue, defer, dead-letter, re-enqueue and queue statistics, each
//! behind a small port trait implemented directly on [`SqsQueue`].
//!
//! One `aws_sdk_sqs::Client` is built at cold start ([`sqs_client`]) with the
//! SDK's standard retries (exponential backoff with jitter) and tight
//! timeouts, so a struggling SQS makes the producer answer 503 quickly
//! instead of hanging until API Gateway's 30 s limit.

use crate::message::QueueMessage;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
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

/// The producer's port: put a message on the queue durably.
pub trait Enqueue: Send + Sync {
    fn enqueue(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
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
    /// Hides a received message for `wait` (capped at 12 h): it comes back then.
    fn defer(
        &self,
        receipt_handle: &str,
        wait: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
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
    pub async fn send_raw(
        &self,
        body: String,
        attributes: HashMap<String, MessageAttributeValue>,
        delay: Duration,
    ) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
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
        self.send_raw(
            msg.to_body(),
            message_attributes(msg, traceparent),
            Duration::ZERO,
        )
        .await
        .map(|_| ())
    }
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
    /// Hides a received message for `wait` (capped at 12 h): a deferral.
    async fn defer(&self, receipt_handle: &str, wait: Duration) -> Result<(), QueueError> {
        let secs = wait.min(MAX_VISIBILITY).as_secs() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(sqs_err("ChangeMessageVisibility"))?;
        Ok(())
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
