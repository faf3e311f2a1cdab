//! The small ports the delivery logic needs, with their real adapters.
//!
//! [`crate::process`] is generic over these traits, so its decisions are
//! unit-tested with in-memory fakes; production wires Redis, SQS and the
//! OnlyFans client built once at cold start.

use aws_sdk_sqs::types::MessageAttributeValue;
use shared::delivery::{CallResult, OnlyFansClient};
use shared::message::{AccountId, MessageId, Priority, QueueMessage};
use shared::queue::{QueueError, SqsQueue};
use shared::store::{ClaimOutcome, RedisStore, Status, StatusRecord, StoreError, Transition};
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Message attributes as the SDK sends them.
pub type Attributes = HashMap<String, MessageAttributeValue>;

/// Status records and send claims.
pub trait Store: Send + Sync {
    fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> impl Future<Output = Result<Option<StatusRecord>, StoreError>> + Send;
    fn transition(
        &self,
        account: &AccountId,
        id: &MessageId,
        to: Status,
        change: Transition,
        fallback: (Priority, OffsetDateTime),
    ) -> impl Future<Output = Result<Option<Status>, StoreError>> + Send;
    fn claim(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;
    fn release(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl Store for RedisStore {
    async fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        RedisStore::get(self, account, id).await
    }
    async fn transition(
        &self,
        account: &AccountId,
        id: &MessageId,
        to: Status,
        change: Transition,
        fallback: (Priority, OffsetDateTime),
    ) -> Result<Option<Status>, StoreError> {
        RedisStore::transition(self, account, id, to, change, Some(fallback)).await
    }
    async fn claim(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        RedisStore::claim(self, account, id, owner, lease).await
    }
    async fn release(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
    ) -> Result<(), StoreError> {
        RedisStore::release(self, account, id, owner).await
    }
}

/// What the consumer does to SQS messages besides the trigger's deletes.
pub trait Queue: Send + Sync {
    /// Hides a received message for `wait`: it comes back then.
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
    /// Sends a fresh copy to the main queue (resets SQS's receive count).
    fn requeue(
        &self,
        body: &str,
        attributes: Attributes,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

impl Queue for SqsQueue {
    async fn defer(&self, receipt_handle: &str, wait: Duration) -> Result<(), QueueError> {
        SqsQueue::defer(self, receipt_handle, wait).await
    }
    async fn dead_letter(
        &self,
        body: &str,
        attributes: Attributes,
        reason: &str,
    ) -> Result<(), QueueError> {
        SqsQueue::dead_letter(self, body, attributes, reason).await
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

/// The OnlyFans API.
pub trait Upstream: Send + Sync {
    fn send(&self, msg: &QueueMessage) -> impl Future<Output = CallResult> + Send;
    /// Re-reads the API token (after a 401: it may have been rotated).
    fn refresh_token(&self) -> impl Future<Output = ()> + Send;
}

/// The real upstream: the client plus, in AWS, where to re-read its token.
#[derive(Clone)]
pub struct OnlyFans {
    pub client: OnlyFansClient,
    pub secrets: Option<shared::ssm::SecretSource>,
}

impl Upstream for OnlyFans {
    async fn send(&self, msg: &QueueMessage) -> CallResult {
        self.client.send(msg).await
    }

    async fn refresh_token(&self) {
        if let Some(reader) = &self.secrets {
            match reader.read().await {
                Ok(token) => self.client.set_token(token).await,
                Err(e) => tracing::error!(error = %e, "could not re-read the OnlyFans API token"),
            }
        }
    }
}
