use crate::lock;
use shared::campaign::{
    AddOutcome, CampaignId, CampaignRecord, CampaignSpec, CampaignStore, Counts, PAGE_SCAN_MAX,
    Page, Slot,
};
use shared::idempotency::{Entry, IdempotencyKey, IdempotencyState, IdempotencyStore};
use shared::message::{AccountId, MessageId, Priority, RecipientId};
use shared::store::{
    CancelOutcome, ClaimOutcome, ClaimStore, NewRecord, SendGate, SlotChange, Status, StatusRecord,
    StatusStore, StoreError, StoreHealth, Transition,
};
use std::collections::{HashMap, HashSet};
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
    /// Campaigns by account and id.
    pub campaigns: Mutex<HashMap<(String, CampaignId), MemCampaign>>,
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

/// The store's data at one moment: what a replica that far behind holds.
#[derive(Clone, Default)]
pub struct StoreCopy {
    records: HashMap<Key, StatusRecord>,
    keys: HashMap<(String, String), Entry>,
    claims: HashMap<Key, (String, Instant)>,
}

impl MemStore {
    /// Records, idempotency keys and claims as they are now.
    pub fn snapshot(&self) -> StoreCopy {
        StoreCopy {
            records: lock(&self.records).clone(),
            keys: lock(&self.keys).clone(),
            claims: lock(&self.claims).clone(),
        }
    }

    /// A failover to a replica that had `older`: the data goes back to it,
    /// except, with `keep_waited` (`REDIS_WAIT_REPLICAS` > 0), what the Redis
    /// adapter follows with `WAIT` and so is on the replica already: claims,
    /// idempotency keys and terminal statuses. (`WAIT` covers every earlier
    /// write of its connection too; keeping only these is the lower bound.)
    pub fn fail_over_to(&self, older: &StoreCopy, keep_waited: bool) {
        let mut records = lock(&self.records);
        let mut promoted = older.records.clone();
        if keep_waited {
            for (k, r) in records.iter() {
                if r.status.is_terminal() {
                    promoted.insert(k.clone(), r.clone());
                }
            }
        }
        *records = promoted;
        drop(records);
        if !keep_waited {
            *lock(&self.keys) = older.keys.clone();
            *lock(&self.claims) = older.claims.clone();
        }
    }

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

    async fn put_new(
        &self,
        account: &AccountId,
        id: &MessageId,
        record: &NewRecord,
    ) -> Result<(), StoreError> {
        self.check()?;
        lock(&self.records).insert(
            key(account, id),
            StatusRecord {
                message_id: *id,
                status: record.status(),
                priority: record.priority,
                attempts: 0,
                created_at: record.created_at,
                sent_at: None,
                upstream_message_id: None,
                last_error: None,
                recipient_id: Some(record.recipient_id.clone()),
                campaign_id: None,
                send_at: record.send_at,
                slot_at: None,
            },
        );
        Ok(())
    }

    async fn cancel(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<CancelOutcome, StoreError> {
        self.check()?;
        let mut records = lock(&self.records);
        let Some(r) = records.get_mut(&key(account, id)) else {
            return Ok(CancelOutcome::NotFound);
        };
        Ok(match r.status {
            s if s.is_cancellable() => {
                r.status = Status::Cancelled;
                r.slot_at = None;
                CancelOutcome::Cancelled
            }
            Status::Cancelled => CancelOutcome::AlreadyCancelled,
            s => CancelOutcome::TooLate(s),
        })
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
            recipient_id: None,
            campaign_id: None,
            send_at: None,
            slot_at: None,
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
        match change.slot {
            SlotChange::Keep => {}
            SlotChange::Set(t) => r.slot_at = Some(t),
            SlotChange::Clear => r.slot_at = None,
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

    async fn begin_send(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        (priority, created_at): (Priority, OffsetDateTime),
    ) -> Result<SendGate, StoreError> {
        self.check()?;
        // One lock over claims and records: as atomic as the script.
        let claims = lock(&self.claims);
        let now = Instant::now();
        if claims
            .get(&key(account, id))
            .is_some_and(|(o, until)| o != owner && *until > now)
        {
            return Ok(SendGate::ClaimLost);
        }
        let mut records = lock(&self.records);
        let r = records
            .entry(key(account, id))
            .or_insert_with(|| StatusRecord {
                message_id: *id,
                status: Status::Sending,
                priority,
                attempts: 0,
                created_at,
                sent_at: None,
                upstream_message_id: None,
                last_error: None,
                recipient_id: None,
                campaign_id: None,
                send_at: None,
                slot_at: None,
            });
        if r.status.is_terminal() {
            return Ok(SendGate::Settled(r.status));
        }
        r.status = Status::Sending;
        r.slot_at = None;
        Ok(SendGate::Go)
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

/// One campaign in memory, as the Redis keys hold it.
#[derive(Debug, Clone)]
pub struct MemCampaign {
    pub created_at: OffsetDateTime,
    pub spec: CampaignSpec,
    pub cancelled: bool,
    /// Recipient -> message id.
    pub recipients: HashMap<String, MessageId>,
    /// Message ids in creation order.
    pub order: Vec<MessageId>,
    /// Stored, not yet confirmed on the queue.
    pub pending: HashSet<MessageId>,
    pub first_answer: Option<(u64, u64)>,
}

impl MemStore {
    /// A campaign as stored.
    pub fn campaign_copy(&self, account: &str, id: &CampaignId) -> Option<MemCampaign> {
        lock(&self.campaigns)
            .get(&(account.to_owned(), *id))
            .cloned()
    }
}

impl CampaignStore for MemStore {
    async fn create_campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
        spec: &CampaignSpec,
        created_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let mut campaigns = lock(&self.campaigns);
        let k = (account.to_string(), *id);
        if campaigns.contains_key(&k) {
            return Ok(false);
        }
        campaigns.insert(
            k,
            MemCampaign {
                created_at,
                spec: spec.clone(),
                cancelled: false,
                recipients: HashMap::new(),
                order: Vec::new(),
                pending: HashSet::new(),
                first_answer: None,
            },
        );
        Ok(true)
    }

    /// Counts are read from the records themselves: what the Redis counters
    /// must always agree with.
    async fn campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> Result<Option<CampaignRecord>, StoreError> {
        self.check()?;
        let campaigns = lock(&self.campaigns);
        let Some(c) = campaigns.get(&(account.to_string(), *id)) else {
            return Ok(None);
        };
        let records = lock(&self.records);
        let mut counts = Counts::default();
        for m in &c.order {
            if let Some(r) = records.get(&key(account, m)) {
                *counts.get_mut(r.status) += 1;
            }
        }
        Ok(Some(CampaignRecord {
            id: *id,
            created_at: c.created_at,
            spec: c.spec.clone(),
            cancelled: c.cancelled,
            total: c.order.len() as u64,
            counts,
            first_answer: c.first_answer,
        }))
    }

    async fn add_recipients(
        &self,
        account: &AccountId,
        id: &CampaignId,
        spec: &CampaignSpec,
        created_at: OffsetDateTime,
        recipients: &[(RecipientId, MessageId)],
    ) -> Result<AddOutcome, StoreError> {
        self.check()?;
        let mut campaigns = lock(&self.campaigns);
        let Some(c) = campaigns.get_mut(&(account.to_string(), *id)) else {
            return Ok(AddOutcome::NotFound);
        };
        if c.cancelled {
            return Ok(AddOutcome::Cancelled);
        }
        let mut records = lock(&self.records);
        let slots = recipients
            .iter()
            .map(|(r, m)| match c.recipients.get(r.as_str()) {
                Some(existing) if c.pending.contains(existing) => Slot::Pending(*existing),
                Some(_) => Slot::Duplicate,
                None => {
                    c.recipients.insert(r.as_str().to_owned(), *m);
                    c.order.push(*m);
                    c.pending.insert(*m);
                    records.insert(
                        key(account, m),
                        StatusRecord {
                            message_id: *m,
                            status: spec.initial_status(created_at),
                            priority: spec.priority,
                            attempts: 0,
                            created_at,
                            sent_at: None,
                            upstream_message_id: None,
                            last_error: None,
                            recipient_id: Some(r.as_str().to_owned()),
                            campaign_id: Some(id.to_string()),
                            send_at: spec.send_at,
                            slot_at: None,
                        },
                    );
                    Slot::New(*m)
                }
            })
            .collect();
        Ok(AddOutcome::Added(slots))
    }

    async fn mark_enqueued(
        &self,
        account: &AccountId,
        id: &CampaignId,
        messages: &[MessageId],
        answer: Option<(u64, u64)>,
    ) -> Result<(), StoreError> {
        self.check()?;
        let mut campaigns = lock(&self.campaigns);
        if let Some(c) = campaigns.get_mut(&(account.to_string(), *id)) {
            for m in messages {
                c.pending.remove(m);
            }
            if c.first_answer.is_none() {
                c.first_answer = answer;
            }
        }
        Ok(())
    }

    async fn campaign_page(
        &self,
        account: &AccountId,
        id: &CampaignId,
        status: Option<Status>,
        cursor: u64,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.check()?;
        let campaigns = lock(&self.campaigns);
        let Some(c) = campaigns.get(&(account.to_string(), *id)) else {
            return Ok(Page {
                records: Vec::new(),
                next: None,
            });
        };
        let records = lock(&self.records);
        let mut out = Vec::new();
        let mut at = cursor as usize;
        let mut scanned = 0;
        while at < c.order.len() {
            let r = records.get(&key(account, &c.order[at]));
            at += 1;
            scanned += 1;
            if let Some(r) = r.filter(|r| status.is_none_or(|s| r.status == s)) {
                out.push(r.clone());
                if out.len() == limit {
                    break;
                }
            }
            if scanned >= PAGE_SCAN_MAX {
                break;
            }
        }
        let next = (at < c.order.len()).then_some(at as u64);
        Ok(Page { records: out, next })
    }

    async fn cancel_campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let order = {
            let mut campaigns = lock(&self.campaigns);
            let Some(c) = campaigns.get_mut(&(account.to_string(), *id)) else {
                return Ok(false);
            };
            c.cancelled = true;
            c.order.clone()
        };
        for m in &order {
            self.cancel(account, m).await?;
        }
        Ok(true)
    }
}
