use crate::lock;
use shared::idempotency::{Entry, IdempotencyKey, IdempotencyState, IdempotencyStore};
use shared::message::{AccountId, MessageId, Priority};
use shared::store::{
    ClaimOutcome, ClaimStore, Status, StatusRecord, StatusStore, StoreError, StoreHealth,
    Transition,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

type Key = (String, MessageId);

/// Status records, send claims and idempotency keys in memory, with the
/// semantics of `RedisStore`. Claims expire on tokio's clock, so on a
/// paused runtime they follow virtual time.
#[derive(Default)]
pub struct MemStore {
    pub records: Mutex<HashMap<Key, StatusRecord>>,
    pub keys: Mutex<HashMap<(String, String), Entry>>,
    /// Claim owner and when its lease ends.
    pub claims: Mutex<HashMap<Key, (String, Instant)>>,
    /// Every call fails as a corrupt record would (the producer answers 500) ...
    pub fail: AtomicBool,
    /// ... or as Redis refusing connections (503, fail closed).
    pub unreachable: AtomicBool,
    /// Only `ping` fails.
    pub ping_fails: AtomicBool,
    /// `ping` never answers.
    pub ping_hangs: AtomicBool,
    /// Writes of `sent` that fail before one succeeds (Redis failing over
    /// just after the upstream answered).
    pub sent_write_failures: AtomicU32,
    /// Ids whose record was deleted, in order.
    pub deleted: Mutex<Vec<MessageId>>,
    /// Idempotency keys released, in order.
    pub released: Mutex<Vec<String>>,
}

/// What the connection manager reports when Redis refuses connections.
pub fn redis_down() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "connection refused",
    ))
}

fn key(account: &AccountId, id: &MessageId) -> Key {
    (account.to_string(), *id)
}

impl MemStore {
    /// Room for `n` records and keys: no rehash in the middle of a timed call.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            records: Mutex::new(HashMap::with_capacity(n)),
            keys: Mutex::new(HashMap::with_capacity(n)),
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Redis(redis_down()));
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("fake store is down".into()));
        }
        Ok(())
    }

    /// Puts a record in place as it is.
    pub fn insert(&self, account: &str, record: StatusRecord) {
        lock(&self.records).insert((account.to_owned(), record.message_id), record);
    }

    /// One record as stored.
    pub fn record(&self, account: &str, id: &MessageId) -> Option<StatusRecord> {
        lock(&self.records).get(&(account.to_owned(), *id)).cloned()
    }

    /// One idempotency key's entry as stored.
    pub fn key(&self, account: &str, key: &str) -> Option<Entry> {
        lock(&self.keys)
            .get(&(account.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Makes `owner` hold the claim of a message for `lease`.
    pub fn hold_claim(&self, account: &AccountId, id: &MessageId, owner: &str, lease: Duration) {
        lock(&self.claims).insert(key(account, id), (owner.to_owned(), Instant::now() + lease));
    }

    /// Claims held now (expired leases do not count).
    pub fn claims_held(&self) -> usize {
        let now = Instant::now();
        lock(&self.claims)
            .values()
            .filter(|(_, until)| *until > now)
            .count()
    }
}

impl StatusStore for MemStore {
    async fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        self.check()?;
        Ok(lock(&self.records).get(&key(account, id)).cloned())
    }

    async fn put_queued(
        &self,
        account: &AccountId,
        id: &MessageId,
        priority: Priority,
        created_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        lock(&self.records).insert(
            key(account, id),
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
        lock(&self.records).remove(&key(account, id));
        lock(&self.deleted).push(*id);
        Ok(())
    }

    async fn transition(
        &self,
        account: &AccountId,
        id: &MessageId,
        to: Status,
        change: Transition,
        fallback: Option<(Priority, OffsetDateTime)>,
    ) -> Result<Option<Status>, StoreError> {
        self.check()?;
        if to == Status::Sent
            && self
                .sent_write_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(StoreError::Redis(redis_down()));
        }
        let mut records = lock(&self.records);
        let k = key(account, id);
        if let Some(r) = records.get(&k)
            && r.status.is_terminal()
        {
            return Ok(Some(r.status));
        }
        // As the script does: a missing record is written with what it is given.
        let r = records.entry(k).or_insert_with(|| StatusRecord {
            message_id: *id,
            status: to,
            priority: Priority::default(),
            attempts: 0,
            created_at: OffsetDateTime::UNIX_EPOCH,
            sent_at: None,
            upstream_message_id: None,
            last_error: None,
        });
        r.status = to;
        // The script writes the fallback's fields on every transition.
        if let Some((priority, created_at)) = fallback {
            r.priority = priority;
            r.created_at = created_at;
        }
        if let Some(a) = change.attempts {
            r.attempts = a;
        }
        if change.sent_at.is_some() {
            r.sent_at = change.sent_at;
        }
        if change.upstream_message_id.is_some() {
            r.upstream_message_id = change.upstream_message_id;
        }
        if change.last_error.is_some() {
            r.last_error = change.last_error;
        }
        Ok(Some(r.status))
    }
}

impl ClaimStore for MemStore {
    async fn claim(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.check()?;
        let now = Instant::now();
        let mut claims = lock(&self.claims);
        match claims.get(&key(account, id)) {
            Some((_, until)) if *until > now => Ok(ClaimOutcome::Held(
                until
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            )),
            _ => {
                claims.insert(key(account, id), (owner.to_owned(), now + lease));
                Ok(ClaimOutcome::Claimed)
            }
        }
    }

    async fn release(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut claims = lock(&self.claims);
        if claims
            .get(&key(account, id))
            .is_some_and(|(o, _)| o == owner)
        {
            claims.remove(&key(account, id));
        }
        Ok(())
    }
}

impl IdempotencyStore for MemStore {
    async fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<IdempotencyState, StoreError> {
        self.check()?;
        let mut keys = lock(&self.keys);
        let k = (account.to_string(), key.as_str().to_owned());
        match keys.get(&k) {
            Some(existing) => Ok(existing.state_for(fingerprint)),
            None => {
                keys.insert(
                    k,
                    Entry {
                        done: false,
                        fingerprint: fingerprint.to_owned(),
                        id: *id,
                    },
                );
                Ok(IdempotencyState::Reserved)
            }
        }
    }

    async fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        self.check()?;
        // SET XX: only a key that still exists is completed.
        if let Some(e) = lock(&self.keys).get_mut(&(account.to_string(), key.as_str().to_owned())) {
            *e = Entry {
                done: true,
                fingerprint: fingerprint.to_owned(),
                id: *id,
            };
        }
        Ok(())
    }

    async fn release_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
        self.check()?;
        lock(&self.keys).remove(&(account.to_string(), key.as_str().to_owned()));
        lock(&self.released).push(key.as_str().to_owned());
        Ok(())
    }
}

impl StoreHealth for MemStore {
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
