//! Message state in Redis: status records and send claims (idempotency keys
//! are [`crate::idempotency`]'s), each behind a small port trait implemented
//! directly on [`RedisStore`].
//!
//! All keys of one account share a hash tag ([`crate::keys`]). Status
//! transitions go through one Lua script that refuses to leave a terminal
//! state (`sent`, `failed`, `dead`), so a late or duplicate consumer can never
//! turn a sent message back into `sending`.

use crate::keys;
use crate::message::{AccountId, MessageId, Priority};
use redis::aio::ConnectionManager;
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
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Deferred,
    Sending,
    Sent,
    Failed,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Deferred => "deferred",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Status::Queued,
            "deferred" => Status::Deferred,
            "sending" => Status::Sending,
            "sent" => Status::Sent,
            "failed" => Status::Failed,
            "dead" => Status::Dead,
            _ => return None,
        })
    }

    /// No transition leaves these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Sent | Status::Failed | Status::Dead)
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
}

/// A change to a status record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    pub attempts: Option<u32>,
    pub sent_at: Option<OffsetDateTime>,
    pub upstream_message_id: Option<String>,
    pub last_error: Option<String>,
}

/// The result of trying to claim a message for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This caller holds the claim until it releases it or the lease ends.
    Claimed,
    /// Another consumer holds it; try again after the remaining lease.
    Held(Duration),
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

/// Moves a status record to ARGV[1] unless it is terminal.
/// ARGV[2] = TTL seconds; ARGV[3..] = field/value pairs to set.
/// Returns the status the record has afterwards ('' if absent).
const TRANSITION: &str = r"
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == 'sent' or cur == 'failed' or cur == 'dead' then
  return cur
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return ARGV[1]
";

/// Gives a `dead` message a fresh start (operator redrive): `queued`, no
/// attempts. Any other status is left alone; a `sent` message is never revived.
const REVIVE: &str = r"
if redis.call('HGET', KEYS[1], 'status') ~= 'dead' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', '0')
redis.call('HDEL', KEYS[1], 'lastError')
return 1
";

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
    pub(crate) conn: ConnectionManager,
    ttl: Duration,
    transition: redis::Script,
    release: redis::Script,
    revive: redis::Script,
}

impl RedisStore {
    pub fn new(conn: ConnectionManager, status_ttl: Duration) -> Self {
        Self {
            conn,
            ttl: status_ttl,
            transition: redis::Script::new(TRANSITION),
            release: redis::Script::new(RELEASE),
            revive: redis::Script::new(REVIVE),
        }
    }

    /// Resets a `dead` message to `queued` with no attempts, for a redrive;
    /// `true` if it was dead.
    pub async fn revive(&self, account: &AccountId, id: &MessageId) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .revive
            .key(keys::status(account, id))
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
        }))
    }

    /// Writes the `queued` record the producer creates before answering 202.
    async fn put_queued(
        &self,
        account: &AccountId,
        id: &MessageId,
        priority: Priority,
        created_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = keys::status(account, id);
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("status", Status::Queued.as_str().to_owned()),
                    ("priority", priority.as_str().to_owned()),
                    ("attempts", "0".to_owned()),
                    ("createdAt", fmt_time(created_at)),
                ],
            )
            .expire(&key, self.ttl.as_secs() as i64)
            .query_async(&mut conn)
            .await?;
        Ok(())
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
        // A record that expired or was never written (the producer crashed
        // between send and write) is recreated from the queue message.
        if let Some((p, created)) = fallback {
            inv.arg("priority")
                .arg(p.as_str())
                .arg("createdAt")
                .arg(fmt_time(created));
        }
        let after: String = inv.invoke_async(&mut conn).await?;
        Ok(Status::parse(&after))
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
            return Ok(ClaimOutcome::Claimed);
        }
        let left: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut conn).await?;
        Ok(ClaimOutcome::Held(
            Duration::from_millis(left.max(1) as u64),
        ))
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

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
}

/// Connects to Redis once at cold start. The manager reconnects by itself.
pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    ConnectionManager::new_with_config(client, manager_config()).await
}

/// Like [`connect`], but connects on first use: a function whose Redis is
/// down at cold start still starts, and answers 503 (and `/health` names
/// Redis) until Redis is back, instead of failing its init. Only a malformed
/// URL is an error here.
pub fn connect_lazy(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    ConnectionManager::new_lazy_with_config(client, manager_config())
}
