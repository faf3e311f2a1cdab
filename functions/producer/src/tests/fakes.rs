//! In-memory stand-ins for the ports, for unit tests. Each can be told to
//! fail, and records what was done to it.

use crate::ports::{BucketViewer, MessageStore, QueueInfo};
use shared::limiter::{BucketView, LimiterError};
use shared::message::{AccountId, MessageId, Priority, QueueMessage};
use shared::queue::{Enqueue, QueueError, QueueStats};
use shared::store::{IdempotencyState, Status, StatusRecord, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;

fn down() -> StoreError {
    StoreError::Corrupt("fake store is down".into())
}

/// What an idempotency key holds: fingerprint, message id, answered yet.
type IdemEntry = (String, MessageId, bool);

#[derive(Default)]
pub struct FakeStore {
    pub records: Mutex<HashMap<(String, MessageId), StatusRecord>>,
    pub keys: Mutex<HashMap<(String, String), IdemEntry>>,
    /// Every store call fails (as a corrupt record: 500) ...
    pub fail: AtomicBool,
    /// ... or fails as Redis being down (503).
    pub unreachable: AtomicBool,
    /// Only `ping` fails.
    pub ping_fails: AtomicBool,
    /// `ping` never answers.
    pub ping_hangs: AtomicBool,
    pub deleted: Mutex<Vec<MessageId>>,
    pub released: Mutex<Vec<String>>,
}

impl FakeStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Redis(redis_down()));
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(down());
        }
        Ok(())
    }

    pub fn insert(&self, account: &str, record: StatusRecord) {
        self.records
            .lock()
            .unwrap()
            .insert((account.to_owned(), record.message_id), record);
    }

    pub fn record(&self, account: &str, id: &MessageId) -> Option<StatusRecord> {
        self.records
            .lock()
            .unwrap()
            .get(&(account.to_owned(), *id))
            .cloned()
    }

    pub fn key(&self, account: &str, key: &str) -> Option<IdemEntry> {
        self.keys
            .lock()
            .unwrap()
            .get(&(account.to_owned(), key.to_owned()))
            .cloned()
    }
}

/// What the connection manager reports when Redis refuses connections.
fn redis_down() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "connection refused",
    ))
}

impl MessageStore for FakeStore {
    async fn put_queued(
        &self,
        account: &AccountId,
        id: &MessageId,
        priority: Priority,
        created_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.insert(
            account.as_str(),
            StatusRecord {
                message_id: *id,
                status: Status::Queued,
                priority,
                attempts: 0,
                created_at,
                sent_at: None,
                upstream_message_id: None,
                last_error: None,
            },
        );
        Ok(())
    }

    async fn delete(&self, account: &AccountId, id: &MessageId) -> Result<(), StoreError> {
        self.check()?;
        self.records
            .lock()
            .unwrap()
            .remove(&(account.to_string(), *id));
        self.deleted.lock().unwrap().push(*id);
        Ok(())
    }

    async fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        self.check()?;
        Ok(self.record(account.as_str(), id))
    }

    async fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<IdempotencyState, StoreError> {
        self.check()?;
        let mut keys = self.keys.lock().unwrap();
        let entry = keys
            .entry((account.to_string(), key.to_owned()))
            .or_insert_with(|| (fingerprint.to_owned(), *id, false));
        Ok(match entry {
            (fp, _, _) if fp != fingerprint => IdempotencyState::Conflict,
            (_, first, true) => IdempotencyState::Done(*first),
            (_, first, false) if first == id => IdempotencyState::Reserved,
            _ => IdempotencyState::InProgress,
        })
    }

    async fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.keys.lock().unwrap().insert(
            (account.to_string(), key.to_owned()),
            (fingerprint.to_owned(), *id, true),
        );
        Ok(())
    }

    async fn release_idempotency(&self, account: &AccountId, key: &str) -> Result<(), StoreError> {
        self.check()?;
        self.keys
            .lock()
            .unwrap()
            .remove(&(account.to_string(), key.to_owned()));
        self.released.lock().unwrap().push(key.to_owned());
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.ping_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.ping_fails.load(Ordering::SeqCst) {
            return Err(StoreError::Redis(redis_down()));
        }
        self.check()
    }
}

#[derive(Default)]
pub struct FakeQueue {
    pub sent: Mutex<Vec<(QueueMessage, Option<String>)>>,
    pub fail: AtomicBool,
    pub stats: Mutex<QueueStats>,
}

impl FakeQueue {
    fn check(&self, op: &'static str) -> Result<(), QueueError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(QueueError::Sqs {
                op,
                message: "fake queue is down".into(),
            });
        }
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

impl Enqueue for FakeQueue {
    async fn enqueue(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        self.check("SendMessage")?;
        self.sent
            .lock()
            .unwrap()
            .push((msg.clone(), traceparent.map(str::to_owned)));
        Ok(())
    }
}

impl QueueInfo for FakeQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.check("GetQueueAttributes")?;
        Ok(*self.stats.lock().unwrap())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.check("GetQueueAttributes")
    }
}

pub struct FakeBuckets {
    pub view: BucketView,
    pub fail: AtomicBool,
}

impl Default for FakeBuckets {
    fn default() -> Self {
        Self {
            view: BucketView {
                tokens: 7.25,
                per_minute: 10.0,
                burst: 10.0,
                paused_for: None,
            },
            fail: AtomicBool::new(false),
        }
    }
}

impl BucketViewer for FakeBuckets {
    async fn view(&self, _account: &AccountId) -> Result<BucketView, LimiterError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(LimiterError::Reply("fake limiter is down".into()));
        }
        Ok(self.view)
    }
}
