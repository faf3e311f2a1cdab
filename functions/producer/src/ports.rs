//! The ports the handler talks through, and their real adapters.
//!
//! Each trait holds only what the producer uses, so the in-memory fakes of
//! the unit tests stay small. The adapters forward to the `shared` clients
//! and return their errors unchanged; [`crate::error`] decides what each
//! error means to an HTTP client.

use shared::limiter::{BucketView, LimiterError, RedisLimiter};
use shared::message::{AccountId, MessageId, Priority};
use shared::outbox::ResilientQueue;
use shared::queue::{QueueError, QueueStats, SqsQueue};
use shared::store::{IdempotencyState, RedisStore, StatusRecord, StoreError};
use time::OffsetDateTime;

/// Status records and `Idempotency-Key` reservations.
pub trait MessageStore: Send + Sync {
    /// Writes the `queued` record of a message about to be enqueued.
    fn put_queued(
        &self,
        account: &AccountId,
        id: &MessageId,
        priority: Priority,
        created_at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the record of a message that was never enqueued.
    fn delete(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads one of `account`'s records.
    fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> impl Future<Output = Result<Option<StatusRecord>, StoreError>> + Send;

    /// Reserves `key` for this request, or says what it already stands for.
    fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> impl Future<Output = Result<IdempotencyState, StoreError>> + Send;

    /// Records that `key` was answered with `id`.
    fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Frees `key` after a failed request so a retry may use it.
    fn release_idempotency(
        &self,
        account: &AccountId,
        key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Proves the store answers (`/health`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What the producer reads about the queue, beside sending to it.
pub trait QueueInfo: Send + Sync {
    /// Depths of the main queue and the DLQ (`/v1/status`).
    fn stats(&self) -> impl Future<Output = Result<QueueStats, QueueError>> + Send;
    /// Proves the queue answers (`/health`).
    fn ping(&self) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Read-only access to an account's token bucket (`/v1/status`).
pub trait BucketViewer: Send + Sync {
    fn view(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<BucketView, LimiterError>> + Send;
}

impl MessageStore for RedisStore {
    async fn put_queued(
        &self,
        account: &AccountId,
        id: &MessageId,
        priority: Priority,
        created_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        RedisStore::put_queued(self, account, id, priority, created_at).await
    }

    async fn delete(&self, account: &AccountId, id: &MessageId) -> Result<(), StoreError> {
        RedisStore::delete(self, account, id).await
    }

    async fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        RedisStore::get(self, account, id).await
    }

    async fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<IdempotencyState, StoreError> {
        RedisStore::reserve_idempotency(self, account, key, fingerprint, id).await
    }

    async fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        RedisStore::complete_idempotency(self, account, key, fingerprint, id).await
    }

    async fn release_idempotency(&self, account: &AccountId, key: &str) -> Result<(), StoreError> {
        RedisStore::release_idempotency(self, account, key).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        RedisStore::ping(self).await
    }
}

impl QueueInfo for SqsQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        SqsQueue::stats(self).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        SqsQueue::ping(self).await
    }
}

impl QueueInfo for ResilientQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.sqs.stats().await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.sqs.ping().await
    }
}

impl BucketViewer for RedisLimiter {
    async fn view(&self, account: &AccountId) -> Result<BucketView, LimiterError> {
        RedisLimiter::view(self, account).await
    }
}
