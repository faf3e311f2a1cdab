//! Message state in Redis: status records and send claims (idempotency keys
//! are [`crate::idempotency`]'s), each behind a small port trait implemented
//! directly on [`RedisStore`].
//!
//! All keys of one account share a hash tag ([`crate::keys`]). Status
//! transitions go through one Lua script that refuses to leave a terminal
//! state (`sent`, `failed`, `dead`, `cancelled`), so a late or duplicate
//! consumer can never turn a sent message back into `sending`.
//!
//! # Cancel against send
//! Two scripts decide, atomically, whether a message is cancelled or sent:
//! [`StatusStore::cancel`] moves a `scheduled`, `queued` or `deferred`
//! record to `cancelled`, and [`ClaimStore::begin_send`] (the consumer's last
//! step before the upstream call) checks the send claim and the status
//! together and moves the record to `sending` only if it is not settled or
//! cancelled. Both touch the one status key, so Redis runs one before the
//! other: a cancel that answered `Cancelled` has no send after it, and a
//! message already `sending` cannot be cancelled.

use crate::durability::{Durability, DurabilityError, NotReplicated};
use crate::keys;
use crate::message::{AccountId, MessageId, Priority};
use crate::redis_conn::{RedisConn, Topology};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The write happened on the primary, but not enough replicas confirmed
    /// it ([`crate::durability`]): a failover could still lose it.
    #[error(transparent)]
    NotReplicated(#[from] NotReplicated),
}

impl From<DurabilityError> for StoreError {
    fn from(e: DurabilityError) -> Self {
        match e {
            DurabilityError::Redis(e) => StoreError::Redis(e),
            DurabilityError::NotReplicated(n) => StoreError::NotReplicated(n),
        }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not due before its `sendAt`.
    Scheduled,
    Queued,
    Deferred,
    Sending,
    Sent,
    Failed,
    Dead,
    /// Stopped by the sender before it was sent; final.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Deferred => "deferred",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Status::Scheduled,
            "queued" => Status::Queued,
            "deferred" => Status::Deferred,
            "sending" => Status::Sending,
            "sent" => Status::Sent,
            "failed" => Status::Failed,
            "dead" => Status::Dead,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// No transition leaves these.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Sent | Status::Failed | Status::Dead | Status::Cancelled
        )
    }

    /// Whether a sender may still cancel a message in this status.
    pub fn is_cancellable(self) -> bool {
        matches!(self, Status::Scheduled | Status::Queued | Status::Deferred)
    }
}

/// A message's status record, as `GET /v1/messages/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRecord {
    pub message_id: MessageId,
    pub status: Status,
    pub priority: Priority,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    pub upstream_message_id: Option<String>,
    pub last_error: Option<String>,
    /// The fan it goes to (`None` only for a record the consumer had to
    /// recreate from a queue message after it expired).
    pub recipient_id: Option<String>,
    /// The campaign it belongs to; `None` for a plain message.
    pub campaign_id: Option<String>,
    /// Not sent before this time (`POST /v1/messages`'s `sendAt`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub send_at: Option<OffsetDateTime>,
    /// The slot the limiter gave a waiting message: it comes back then and
    /// takes the token it was promised, whatever brought it back earlier
    /// (SQS's 12-hour visibility cap, a crash, a duplicate, a fresh copy).
    /// Internal: not part of the status the API shows.
    #[serde(skip)]
    pub slot_at: Option<OffsetDateTime>,
}

/// A change to a status record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    pub attempts: Option<u32>,
    pub sent_at: Option<OffsetDateTime>,
    pub upstream_message_id: Option<String>,
    pub last_error: Option<String>,
    pub slot: SlotChange,
}

/// What a transition does to a message's slot ([`StatusRecord::slot_at`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SlotChange {
    #[default]
    Keep,
    /// The limiter gave the message this slot.
    Set(OffsetDateTime),
    /// The message used its slot (or never waits for one again).
    Clear,
}

/// What the producer writes for a message about to be enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub priority: Priority,
    pub created_at: OffsetDateTime,
    pub recipient_id: String,
    pub send_at: Option<OffsetDateTime>,
}

impl NewRecord {
    /// `scheduled` while its `sendAt` is ahead of its creation, else `queued`.
    pub fn status(&self) -> Status {
        match self.send_at {
            Some(t) if t > self.created_at => Status::Scheduled,
            _ => Status::Queued,
        }
    }

    /// How long the record is kept: `ttl` after it is due, so a message
    /// scheduled days ahead still has its record when it goes.
    pub fn ttl(&self, ttl: Duration) -> Duration {
        let ahead = self
            .send_at
            .map(|t| (t - self.created_at).try_into().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO);
        ttl + ahead
    }
}

/// The answer to `DELETE /v1/messages/{id}`, decided in one script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was `scheduled`, `queued` or `deferred`: now `cancelled`, and no
    /// consumer will call the upstream for it.
    Cancelled,
    /// It was cancelled before.
    AlreadyCancelled,
    /// Too late: `sending`, or settled (`sent`, `failed`, `dead`).
    TooLate(Status),
    /// The account has no such message.
    NotFound,
}

/// The consumer's last check before the upstream call ([`ClaimStore::begin_send`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendGate {
    /// Now `sending`: call the upstream.
    Go,
    /// Settled or cancelled meanwhile: do not call; the SQS message is done.
    Settled(Status),
    /// Another delivery holds the claim (this one's lease ran out).
    ClaimLost,
}

/// The result of trying to claim a message for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller holds the claim until it releases it or the lease ends.
    Claimed,
    /// Another consumer holds it; try again after the remaining lease.
    Held(Duration),
}

pub(crate) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

/// A status record from its hash (`None` for an empty hash: no record).
pub(crate) fn record_from_hash(
    id: &MessageId,
    h: &HashMap<String, String>,
) -> Result<Option<StatusRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    let field = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
    let status = field("status")
        .and_then(|s| Status::parse(&s))
        .ok_or_else(|| StoreError::Corrupt("status".into()))?;
    Ok(Some(StatusRecord {
        message_id: *id,
        status,
        priority: field("priority")
            .and_then(|p| Priority::parse(&p).ok())
            .unwrap_or_default(),
        attempts: field("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        created_at: match field("createdAt") {
            Some(t) => parse_time(&t)?,
            None => OffsetDateTime::UNIX_EPOCH,
        },
        sent_at: field("sentAt").map(|t| parse_time(&t)).transpose()?,
        upstream_message_id: field("upstreamMessageId"),
        last_error: field("lastError"),
        recipient_id: field("recipientId"),
        campaign_id: field("campaignId"),
        send_at: field("sendAt").map(|t| parse_time(&t)).transpose()?,
        slot_at: field("slotAt").map(|t| parse_time(&t)).transpose()?,
    }))
}

/// Prepends `move_count(record, counts, from, to, ttl)` to a status script:
/// for a record that belongs to a campaign (`campaignId`), the campaign's
/// count of `from` goes down and that of `to` up, in the same script as the
/// status change, so `GET /v1/campaigns/{id}` reads counts that always
/// agree with the records. The counters hash's TTL is only ever extended.
macro_rules! counted {
    ($body:literal) => {
        concat!(
            r"
local function move_count(rec, counts, from, to, ttl)
  if from == to then return end
  local c = redis.call('HGET', rec, 'campaignId')
  if not c or c == '' then return end
  if from then redis.call('HINCRBY', counts, c .. ':' .. from, -1) end
  redis.call('HINCRBY', counts, c .. ':' .. to, 1)
  if redis.call('TTL', counts) < tonumber(ttl) then
    redis.call('EXPIRE', counts, ttl)
  end
end
",
            $body
        )
    };
}

/// Moves a status record to ARGV[1] unless it is terminal.
/// KEYS[1] = status, KEYS[2] = the account's campaign counters.
/// ARGV[2] = TTL seconds; ARGV[3..] = field/value pairs to set.
/// Returns the status the record has afterwards ('' if absent).
const TRANSITION: &str = counted!(
    r"
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == 'sent' or cur == 'failed' or cur == 'dead' or cur == 'cancelled' then
  return cur
end
if cur then move_count(KEYS[1], KEYS[2], cur, ARGV[1], ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return ARGV[1]
"
);

/// Gives a `dead` message a fresh start (operator redrive): `queued`, no
/// attempts. Any other status is left alone; a `sent` message is never revived.
/// KEYS[1] = status, KEYS[2] = campaign counters; ARGV[1] = TTL seconds.
const REVIVE: &str = counted!(
    r"
if redis.call('HGET', KEYS[1], 'status') ~= 'dead' then
  return 0
end
move_count(KEYS[1], KEYS[2], 'dead', 'queued', ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', '0')
redis.call('HDEL', KEYS[1], 'lastError')
return 1
"
);

/// Cancels a message unless it is `sending` or settled. KEYS[1] = status,
/// KEYS[2] = campaign counters; ARGV[1] = TTL seconds. Returns
/// {1, 'cancelled'} when this call cancelled it, else {0, status} ('' if
/// there is no record).
const CANCEL: &str = counted!(
    r"
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then
  return {0, ''}
end
if cur == 'scheduled' or cur == 'queued' or cur == 'deferred' then
  move_count(KEYS[1], KEYS[2], cur, 'cancelled', ARGV[1])
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'slotAt', '')
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return {1, 'cancelled'}
end
return {0, cur}
"
);

/// The consumer's last step before the upstream call: checks the claim and
/// the status together. KEYS[1] = status, KEYS[2] = claim, KEYS[3] =
/// campaign counters; ARGV[1] = owner, ARGV[2] = TTL seconds, ARGV[3] =
/// priority, ARGV[4] = createdAt (to recreate a record that expired).
/// Returns 'sending' (go), 'claimed' (another owner holds the claim) or the
/// terminal status found.
const BEGIN_SEND: &str = counted!(
    r"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  return 'claimed'
end
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == 'sent' or cur == 'failed' or cur == 'dead' or cur == 'cancelled' then
  return cur
end
if not cur then
  redis.call('HSET', KEYS[1], 'priority', ARGV[3], 'createdAt', ARGV[4])
else
  move_count(KEYS[1], KEYS[3], cur, 'sending', ARGV[2])
end
redis.call('HSET', KEYS[1], 'status', 'sending', 'slotAt', '')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 'sending'
"
);

/// Releases a claim only if this owner still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Status records: the producer writes and reads them, the consumer moves
/// them along. Implemented by [`RedisStore`] and by the in-memory fake of
/// the `testkit` crate.
pub trait StatusStore: Send + Sync {
    /// Reads one of `account`'s records.
    fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> impl Future<Output = Result<Option<StatusRecord>, StoreError>> + Send;

    /// Writes the record of a message about to be enqueued: `queued`, or
    /// `scheduled` while its `sendAt` is ahead ([`NewRecord::status`]).
    fn put_new(
        &self,
        account: &AccountId,
        id: &MessageId,
        record: &NewRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Cancels a message unless it is `sending` or settled, atomically
    /// against [`ClaimStore::begin_send`].
    fn cancel(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> impl Future<Output = Result<CancelOutcome, StoreError>> + Send;

    /// Removes the record of a message that was never enqueued.
    fn delete(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves a record to `to` unless it is terminal; returns the status the
    /// record has afterwards (`None` if there is no record). A missing record
    /// is recreated from `fallback` (priority, creation time).
    fn transition(
        &self,
        account: &AccountId,
        id: &MessageId,
        to: Status,
        change: Transition,
        fallback: Option<(Priority, OffsetDateTime)>,
    ) -> impl Future<Output = Result<Option<Status>, StoreError>> + Send;
}

/// Send claims: at most one delivery of a message calls the upstream at a time.
pub trait ClaimStore: Send + Sync {
    /// Claims a message for one send attempt, for at most `lease`.
    fn claim(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Moves the message to `sending` right before the upstream call, if
    /// `owner` still holds its claim (or nobody does) and it was neither
    /// settled nor cancelled meanwhile; clears its slot. A missing record
    /// is recreated from `fallback` (priority, creation time).
    fn begin_send(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        fallback: (Priority, OffsetDateTime),
    ) -> impl Future<Output = Result<SendGate, StoreError>> + Send;

    /// Releases a claim this owner holds (no-op if it expired or moved on).
    fn release(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Proves the store answers (`/health`).
pub trait StoreHealth: Send + Sync {
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The Redis-backed store. Built once at cold start; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) conn: RedisConn,
    ttl: Duration,
    transition: redis::Script,
    release: redis::Script,
    revive: redis::Script,
    cancel: redis::Script,
    begin_send: redis::Script,
    /// `WAIT` after a claim, a terminal status and a completed idempotency key.
    pub(crate) durability: Durability,
}

impl RedisStore {
    pub fn new(conn: impl Into<RedisConn>, status_ttl: Duration) -> Self {
        Self {
            conn: conn.into(),
            ttl: status_ttl,
            transition: redis::Script::new(TRANSITION),
            release: redis::Script::new(RELEASE),
            revive: redis::Script::new(REVIVE),
            cancel: redis::Script::new(CANCEL),
            begin_send: redis::Script::new(BEGIN_SEND),
            durability: Durability::NONE,
        }
    }

    /// How long status records are kept after their last change.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Confirms claims, terminal statuses and completed idempotency keys
    /// with `WAIT` ([`crate::durability`]).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Resets a `dead` message to `queued` with no attempts, for a redrive;
    /// `true` if it was dead.
    pub async fn revive(&self, account: &AccountId, id: &MessageId) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .revive
            .key(keys::status(account, id))
            .key(keys::campaign_counts(account))
            .arg(self.ttl.as_secs())
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }
}

impl StatusStore for RedisStore {
    /// Reads a record; `None` if the account has no such message.
    async fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(keys::status(account, id))
            .query_async(&mut conn)
            .await?;
        record_from_hash(id, &h)
    }

    /// Writes the record the producer creates before answering 202.
    async fn put_new(
        &self,
        account: &AccountId,
        id: &MessageId,
        record: &NewRecord,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = keys::status(account, id);
        let mut fields = vec![
            ("status", record.status().as_str().to_owned()),
            ("priority", record.priority.as_str().to_owned()),
            ("attempts", "0".to_owned()),
            ("createdAt", fmt_time(record.created_at)),
            ("recipientId", record.recipient_id.clone()),
        ];
        if let Some(t) = record.send_at {
            fields.push(("sendAt", fmt_time(t)));
        }
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(&key, &fields)
            .expire(&key, record.ttl(self.ttl).as_secs() as i64)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Cancels a message unless it is `sending` or settled (one script).
    async fn cancel(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<CancelOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let (changed, status): (i64, String) = self
            .cancel
            .key(keys::status(account, id))
            .key(keys::campaign_counts(account))
            .arg(self.ttl.as_secs())
            .invoke_async(&mut conn)
            .await?;
        if changed == 1 {
            // The 200 promises the message never goes: make it survive a failover.
            self.durability
                .confirm(&mut conn, &keys::status(account, id))
                .await?;
            return Ok(CancelOutcome::Cancelled);
        }
        if status.is_empty() {
            return Ok(CancelOutcome::NotFound);
        }
        match Status::parse(&status) {
            Some(Status::Cancelled) => Ok(CancelOutcome::AlreadyCancelled),
            Some(s) => Ok(CancelOutcome::TooLate(s)),
            None => Err(StoreError::Corrupt(format!("status {status:?}"))),
        }
    }

    /// Removes a record whose message was never accepted (the send failed).
    async fn delete(&self, account: &AccountId, id: &MessageId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("DEL")
            .arg(keys::status(account, id))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Moves a record to `to` unless it is terminal; returns the status the
    /// record has afterwards (`None` if there is no record).
    async fn transition(
        &self,
        account: &AccountId,
        id: &MessageId,
        to: Status,
        change: Transition,
        fallback: Option<(Priority, OffsetDateTime)>,
    ) -> Result<Option<Status>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.transition.key(keys::status(account, id));
        inv.key(keys::campaign_counts(account));
        inv.arg(to.as_str()).arg(self.ttl.as_secs());
        if let Some(a) = change.attempts {
            inv.arg("attempts").arg(a);
        }
        if let Some(t) = change.sent_at {
            inv.arg("sentAt").arg(fmt_time(t));
        }
        if let Some(u) = &change.upstream_message_id {
            inv.arg("upstreamMessageId").arg(u);
        }
        if let Some(e) = &change.last_error {
            inv.arg("lastError").arg(e);
        }
        match change.slot {
            SlotChange::Keep => {}
            SlotChange::Set(t) => {
                inv.arg("slotAt").arg(fmt_time(t));
            }
            SlotChange::Clear => {
                inv.arg("slotAt").arg("");
            }
        }
        // A record that expired or was never written (the producer crashed
        // between send and write) is recreated from the queue message.
        if let Some((p, created)) = fallback {
            inv.arg("priority")
                .arg(p.as_str())
                .arg("createdAt")
                .arg(fmt_time(created));
        }
        let after: String = inv.invoke_async(&mut conn).await?;
        let after = Status::parse(&after);
        // A terminal status is what keeps a message from going twice.
        if after.is_some_and(Status::is_terminal) {
            self.durability
                .confirm(&mut conn, &keys::status(account, id))
                .await?;
        }
        Ok(after)
    }
}

impl ClaimStore for RedisStore {
    /// Claims a message for one send attempt, for at most `lease`.
    async fn claim(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let k = keys::claim(account, id);
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            // Not confirmed: no send on it. The lease ends by itself.
            self.durability.confirm(&mut conn, &k).await?;
            return Ok(ClaimOutcome::Claimed);
        }
        let left: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut conn).await?;
        Ok(ClaimOutcome::Held(
            Duration::from_millis(left.max(1) as u64),
        ))
    }

    /// Checks the claim and the status together and moves the record to
    /// `sending` (one script; see the module doc).
    async fn begin_send(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
        (priority, created_at): (Priority, OffsetDateTime),
    ) -> Result<SendGate, StoreError> {
        let mut conn = self.conn.clone();
        let after: String = self
            .begin_send
            .key(keys::status(account, id))
            .key(keys::claim(account, id))
            .key(keys::campaign_counts(account))
            .arg(owner)
            .arg(self.ttl.as_secs())
            .arg(priority.as_str())
            .arg(fmt_time(created_at))
            .invoke_async(&mut conn)
            .await?;
        match after.as_str() {
            "sending" => Ok(SendGate::Go),
            "claimed" => Ok(SendGate::ClaimLost),
            other => Status::parse(other)
                .map(SendGate::Settled)
                .ok_or_else(|| StoreError::Corrupt(format!("status {other:?}"))),
        }
    }

    /// Releases a claim this owner holds (no-op if it expired or moved on).
    async fn release(
        &self,
        account: &AccountId,
        id: &MessageId,
        owner: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .release
            .key(keys::claim(account, id))
            .arg(owner)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

impl StoreHealth for RedisStore {
    /// `PING`, for `/health`.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

/// Connects to one Redis once at cold start ([`crate::redis_conn::connect`]
/// chooses between one Redis and a cluster). The manager reconnects by itself.
pub async fn connect(url: &str) -> Result<RedisConn, redis::RedisError> {
    crate::redis_conn::connect(url, Topology::Single).await
}

/// Like [`connect`], but connects on first use: a function whose Redis is
/// down at cold start still starts, and answers 503 (and `/health` names
/// Redis) until Redis is back, instead of failing its init. Only a malformed
/// URL is an error here.
pub fn connect_lazy(url: &str) -> Result<RedisConn, redis::RedisError> {
    crate::redis_conn::connect_lazy(url, Topology::Single)
}
