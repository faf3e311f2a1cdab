//! Campaigns: one account sending the same message to many recipients.
//!
//! A campaign is a record (content, priority, `sendAt`) and, per recipient,
//! one ordinary message with its own id and status record, which carries
//! `campaignId` and `recipientId`. The consumer delivers campaign messages as
//! any other; nothing downstream of the queue knows campaigns.
//!
//! # Storage (all under the account's hash tag, [`crate::keys`])
//! - `camp:{id}`: the record (hash); `state` is `active` or `cancelled`.
//! - `camp:{id}:rcpt`: recipient -> message id. The add script writes it with
//!   the message's status record in one call, so a recipient gets at most one
//!   message, whatever the repeats within a call, across calls and retries.
//! - `camp:{id}:msgs`: message ids in creation order (list): pages read it
//!   from a numeric cursor, so their order is stable.
//! - `camp:{id}:pending`: messages stored but not yet confirmed on the queue.
//!   A request that failed half-way (503) leaves them there, and a retry
//!   (same `Idempotency-Key`, or the same recipients) enqueues them again:
//!   they count as accepted by the retry, never as new messages.
//! - `campcounts`: the account's campaign counters, `<campaignId>:<status>`.
//!   The add script counts new messages; every status script of
//!   [`crate::store`] moves a count in the same call as the status, so
//!   `GET /v1/campaigns/{id}` reads eight fields instead of every message.
//!
//! All campaign keys live as long as the status records (`STATUS_TTL_SECONDS`
//! after the last add, plus how far ahead `sendAt` is).

use crate::idempotency::IdempotencyKey;
use crate::keys;
use crate::message::{
    AccountId, Content, Invalid, MediaUrls, MessageId, NewMessage, Priority, RecipientId,
};
use crate::problem::FieldError;
use crate::store::{
    RedisStore, Status, StatusRecord, StatusStore, StoreError, fmt_time, record_from_hash,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Recipients per request at most (the contract's 1–1,000).
pub const MAX_RECIPIENTS: usize = 1000;
/// Messages per page when `limit` is not given.
pub const PAGE_DEFAULT: usize = 100;
/// Messages per page at most.
pub const PAGE_MAX: usize = 500;
/// Records one page looks at, at most, when filtering by status: a page may
/// then come back short, with a cursor to go on from, instead of reading a
/// whole campaign in one request.
pub const PAGE_SCAN_MAX: usize = 5000;
/// The largest cursor a page can be asked from (13 digits, as `openapi.yaml`'s
/// pattern says): far past any campaign's length, and small enough that
/// Redis, whose list indexes are signed 64-bit, takes `cursor +
/// PAGE_SCAN_MAX` as an index. A larger one is a cursor no page ever gave
/// out: a 400, not a 503.
pub const CURSOR_MAX: u64 = 9_999_999_999_999;

/// A campaign's id: a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CampaignId(Uuid);

impl CampaignId {
    /// A fresh id (UUID v7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id a request with an `Idempotency-Key` creates its campaign
    /// under: the same account, key and body always name the same campaign,
    /// so a retry after a 503 continues the campaign the first attempt
    /// started (its stored messages are completed, not made again).
    pub fn for_request(account: &AccountId, key: &IdempotencyKey, fingerprint: &str) -> Self {
        let mut h = Sha256::new();
        for part in [account.as_str(), key.as_str(), fingerprint] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| Invalid("must be a UUID".into()))
    }

    /// The idempotency protocol keeps one UUID per key ([`crate::idempotency::Entry`]).
    pub fn as_message_id(&self) -> MessageId {
        MessageId::from_uuid(self.0)
    }

    pub fn from_message_id(id: MessageId) -> Self {
        Self(id.as_uuid())
    }
}

impl Default for CampaignId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What every message of a campaign shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSpec {
    pub content: Content,
    pub priority: Priority,
    pub media_urls: MediaUrls,
    pub send_at: Option<OffsetDateTime>,
}

impl CampaignSpec {
    /// The message one recipient gets.
    pub fn message(&self, recipient_id: RecipientId) -> NewMessage {
        NewMessage {
            recipient_id,
            content: self.content.clone(),
            priority: self.priority,
            media_urls: self.media_urls.clone(),
            send_at: self.send_at,
        }
    }

    /// The status a new message starts in: `scheduled` while `sendAt` is
    /// ahead of `now`, else `queued`.
    pub fn initial_status(&self, now: OffsetDateTime) -> Status {
        match self.send_at {
            Some(t) if t > now => Status::Scheduled,
            _ => Status::Queued,
        }
    }

    /// How long the campaign's keys and records are kept: `ttl` after it is due.
    pub fn ttl(&self, ttl: Duration, now: OffsetDateTime) -> Duration {
        let ahead = self
            .send_at
            .map(|t| (t - now).try_into().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO);
        ttl + ahead
    }
}

/// A validated `POST /v1/campaigns` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub spec: CampaignSpec,
    /// As given, repeats included.
    pub recipients: Vec<RecipientId>,
}

/// Drops repeats within one request, keeping the first occurrence's place;
/// returns the distinct recipients and how many repeats were dropped.
pub fn distinct(recipients: &[RecipientId]) -> (Vec<RecipientId>, u64) {
    let mut seen = HashSet::with_capacity(recipients.len());
    let unique: Vec<RecipientId> = recipients
        .iter()
        .filter(|r| seen.insert(r.as_str()))
        .cloned()
        .collect();
    let repeats = (recipients.len() - unique.len()) as u64;
    (unique, repeats)
}

/// A campaign's messages by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub scheduled: u64,
    pub queued: u64,
    pub deferred: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
}

impl Counts {
    pub const STATUSES: [Status; 8] = [
        Status::Scheduled,
        Status::Queued,
        Status::Deferred,
        Status::Sending,
        Status::Sent,
        Status::Failed,
        Status::Dead,
        Status::Cancelled,
    ];

    pub fn get_mut(&mut self, s: Status) -> &mut u64 {
        match s {
            Status::Scheduled => &mut self.scheduled,
            Status::Queued => &mut self.queued,
            Status::Deferred => &mut self.deferred,
            Status::Sending => &mut self.sending,
            Status::Sent => &mut self.sent,
            Status::Failed => &mut self.failed,
            Status::Dead => &mut self.dead,
            Status::Cancelled => &mut self.cancelled,
        }
    }

    /// Messages that may still reach the upstream.
    pub fn pending(&self) -> u64 {
        self.scheduled + self.queued + self.deferred + self.sending
    }
}

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub created_at: OffsetDateTime,
    pub spec: CampaignSpec,
    pub cancelled: bool,
    /// Messages created (one per distinct recipient).
    pub total: u64,
    pub counts: Counts,
    /// `accepted`, `duplicates` of the request that created it, once answered
    /// (replayed for a retry with the same `Idempotency-Key`).
    pub first_answer: Option<(u64, u64)>,
}

/// `GET /v1/campaigns/{id}`'s body (and `DELETE`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    pub campaign_id: CampaignId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub priority: Priority,
    #[serde(with = "time::serde::rfc3339::option")]
    pub send_at: Option<OffsetDateTime>,
    pub total: u64,
    pub counts: Counts,
    #[serde(with = "time::serde::rfc3339::option")]
    pub estimated_completion_at: Option<OffsetDateTime>,
}

/// What the account's bucket says about how fast its backlog goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Sends per minute in force for the account.
    pub per_minute: f64,
    /// Tokens in the bucket now (sent at once).
    pub tokens: f64,
    /// The upstream asked the account to wait this long (429).
    pub paused_for: Option<Duration>,
}

/// When the last of `pending` messages should have gone: from the later of
/// `now` (plus any upstream pause) and `sendAt`, the bucket's tokens go at
/// once and the rest at the account's rate. `None` when nothing is pending
/// (or the rate is zero). An estimate: other traffic of the account shares
/// the rate.
pub fn estimated_completion(
    pending: u64,
    send_at: Option<OffsetDateTime>,
    pace: Pace,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    if pending == 0 || pace.per_minute <= 0.0 {
        return None;
    }
    let paused_until = now + pace.paused_for.unwrap_or(Duration::ZERO);
    // By a later sendAt the bucket may hold more; counting only the tokens
    // there now keeps the estimate on the late side.
    let start = send_at.map_or(paused_until, |t| t.max(paused_until));
    let after_tokens = (pending as f64 - pace.tokens.max(0.0).floor()).max(0.0);
    let secs = (after_tokens * 60.0 / pace.per_minute).ceil();
    Some(start + Duration::from_secs_f64(secs))
}

impl CampaignRecord {
    pub fn view(&self, pace: Pace, now: OffsetDateTime) -> CampaignView {
        CampaignView {
            campaign_id: self.id,
            created_at: self.created_at,
            priority: self.spec.priority,
            send_at: self.spec.send_at,
            total: self.total,
            counts: self.counts,
            estimated_completion_at: estimated_completion(
                self.counts.pending(),
                self.spec.send_at,
                pace,
                now,
            ),
        }
    }
}

/// What happened to one recipient of an add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A new message was stored for it (to enqueue).
    New(MessageId),
    /// An earlier request stored its message but did not see it onto the
    /// queue (to enqueue again; counted as accepted).
    Pending(MessageId),
    /// It already has its message: nothing is created.
    Duplicate,
}

/// The answer to adding recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    NotFound,
    Cancelled,
    /// One slot per recipient, in the order given.
    Added(Vec<Slot>),
}

/// A page of a campaign's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<StatusRecord>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<u64>,
}

/// `GET /v1/campaigns/{id}/messages`' query: `status`, `limit`, `cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    pub status: Option<Status>,
    /// 1 to [`PAGE_MAX`], default [`PAGE_DEFAULT`].
    pub limit: usize,
    /// Where to start: a `nextCursor` of an earlier page, or 0.
    pub cursor: u64,
}

impl PageQuery {
    /// Reads a query string; every bad parameter is reported. Unknown
    /// parameters are ignored, as HTTP caches and proxies may add some.
    pub fn parse(query: Option<&str>) -> Result<Self, Vec<FieldError>> {
        let mut q = PageQuery {
            status: None,
            limit: PAGE_DEFAULT,
            cursor: 0,
        };
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !matches!(k.as_ref(), "status" | "limit" | "cursor") {
                continue;
            }
            if !seen.insert(k.to_string()) {
                errors.push(FieldError::new(k.as_ref(), "must be given at most once"));
                continue;
            }
            match k.as_ref() {
                "status" => match Status::parse(&v) {
                    Some(s) => q.status = Some(s),
                    None => errors.push(FieldError::new(
                        "status",
                        "must be one of: scheduled, queued, deferred, sending, sent, failed, dead, cancelled",
                    )),
                },
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=PAGE_MAX).contains(&n) => q.limit = n,
                    _ => errors.push(FieldError::new(
                        "limit",
                        format!("must be a whole number from 1 to {PAGE_MAX}"),
                    )),
                },
                _ => match v.parse::<u64>() {
                    Ok(c) if c <= CURSOR_MAX => q.cursor = c,
                    _ => errors.push(FieldError::new(
                        "cursor",
                        "must be a nextCursor from an earlier page",
                    )),
                },
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(errors)
        }
    }
}

/// Campaign storage. Implemented by [`RedisStore`] and by the in-memory fake
/// of the `testkit` crate.
pub trait CampaignStore: Send + Sync {
    /// Creates the campaign unless it exists (a retry of its request); true if created.
    fn create_campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
        spec: &CampaignSpec,
        created_at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Reads a campaign with its counts.
    fn campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> impl Future<Output = Result<Option<CampaignRecord>, StoreError>> + Send;

    /// Stores one message per recipient that has none yet (see the module
    /// doc), atomically. `recipients` are distinct; `ids` the ids to give
    /// new messages (same length).
    fn add_recipients(
        &self,
        account: &AccountId,
        id: &CampaignId,
        spec: &CampaignSpec,
        created_at: OffsetDateTime,
        recipients: &[(RecipientId, MessageId)],
    ) -> impl Future<Output = Result<AddOutcome, StoreError>> + Send;

    /// The messages are on the queue: no retry needs to enqueue them again.
    /// `answer` is the creating request's (`accepted`, `duplicates`).
    fn mark_enqueued(
        &self,
        account: &AccountId,
        id: &CampaignId,
        messages: &[MessageId],
        answer: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A page of the campaign's messages from `cursor`, `limit` at most,
    /// only those in `status` if given.
    fn campaign_page(
        &self,
        account: &AccountId,
        id: &CampaignId,
        status: Option<Status>,
        cursor: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Marks the campaign cancelled (no more recipients), then cancels each
    /// message not yet `sending` or settled, each with the atomic cancel of
    /// [`StatusStore::cancel`]. `false` if there is no such campaign.
    fn cancel_campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Scripts are hashed once per process; `invoke_async` loads them on `NOSCRIPT`.
static CREATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CREATE));
static ADD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ADD));
static MARK_CANCELLED_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(MARK_CANCELLED));

/// Creates the campaign record unless it exists. KEYS[1] = record;
/// ARGV = createdAt, priority, content, mediaUrls (JSON), sendAt or '', TTL.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'createdAt', ARGV[1], 'priority', ARGV[2], 'content', ARGV[3],
  'mediaUrls', ARGV[4], 'sendAt', ARGV[5], 'state', 'active', 'total', '0')
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
";

/// Adds recipients (see the module doc). KEYS[1] = record, [2] = recipients,
/// [3] = message list, [4] = pending set, [5] = the account's counters,
/// [6..] = the status record of each new id. ARGV[1] = campaign id,
/// [2] = initial status, [3] = priority, [4] = createdAt, [5] = sendAt or '',
/// [6] = TTL, [7..] = recipient, message id pairs. Returns 'missing',
/// 'cancelled', or one entry per recipient: 'n' (new), 'p<id>' (pending
/// from an earlier request), 'd' (duplicate).
const ADD: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state == 'cancelled' then return {'cancelled'} end
local out = {}
local added = 0
for i = 7, #ARGV, 2 do
  local r, id = ARGV[i], ARGV[i + 1]
  local existing = redis.call('HGET', KEYS[2], r)
  if not existing then
    local k = KEYS[6 + (i - 7) / 2]
    redis.call('HSET', KEYS[2], r, id)
    redis.call('HSET', k, 'status', ARGV[2], 'priority', ARGV[3], 'attempts', '0',
      'createdAt', ARGV[4], 'recipientId', r, 'campaignId', ARGV[1])
    if ARGV[5] ~= '' then redis.call('HSET', k, 'sendAt', ARGV[5]) end
    redis.call('EXPIRE', k, ARGV[6])
    redis.call('RPUSH', KEYS[3], id)
    redis.call('SADD', KEYS[4], id)
    added = added + 1
    out[#out + 1] = 'n'
  elseif redis.call('SISMEMBER', KEYS[4], existing) == 1 then
    out[#out + 1] = 'p' .. existing
  else
    out[#out + 1] = 'd'
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[1], 'total', added)
  redis.call('HINCRBY', KEYS[5], ARGV[1] .. ':' .. ARGV[2], added)
end
for j = 1, 5 do
  local t = redis.call('TTL', KEYS[j])
  if t ~= -2 and t < tonumber(ARGV[6]) then redis.call('EXPIRE', KEYS[j], ARGV[6]) end
end
return out
";

/// Marks a campaign cancelled. KEYS[1] = record. Returns 0 if absent.
const MARK_CANCELLED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
return 1
";

fn parse_time(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("campaign timestamp {s:?}: {e}")))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("campaign {what}"))
}

/// A campaign record from its hash and its eight counters.
fn campaign_from_hash(
    id: &CampaignId,
    h: &HashMap<String, String>,
    counts: &[Option<i64>],
) -> Result<Option<CampaignRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    let field = |k: &str| h.get(k).filter(|v| !v.is_empty());
    let media: Vec<String> = match field("mediaUrls") {
        Some(m) => serde_json::from_str(m).map_err(|_| corrupt("mediaUrls"))?,
        None => Vec::new(),
    };
    let spec = CampaignSpec {
        content: Content::parse(field("content").map_or("", String::as_str))
            .map_err(|_| corrupt("content"))?,
        priority: field("priority")
            .and_then(|p| Priority::parse(p).ok())
            .ok_or_else(|| corrupt("priority"))?,
        media_urls: MediaUrls::new(media).map_err(|_| corrupt("mediaUrls"))?,
        send_at: field("sendAt").map(|t| parse_time(t)).transpose()?,
    };
    let mut c = Counts::default();
    for (s, n) in Counts::STATUSES.iter().zip(counts) {
        *c.get_mut(*s) = n.unwrap_or(0).max(0) as u64;
    }
    let num = |k: &str| field(k).and_then(|v| v.parse::<u64>().ok());
    Ok(Some(CampaignRecord {
        id: *id,
        created_at: parse_time(field("createdAt").ok_or_else(|| corrupt("createdAt"))?)?,
        spec,
        cancelled: field("state").map(String::as_str) == Some("cancelled"),
        total: num("total").unwrap_or(0),
        counts: c,
        first_answer: num("accepted").zip(num("duplicates")),
    }))
}

impl RedisStore {
    /// The status TTL of a campaign's records and keys.
    fn campaign_ttl(&self, spec: &CampaignSpec, now: OffsetDateTime) -> u64 {
        spec.ttl(self.ttl(), now).as_secs().max(1)
    }
}

impl CampaignStore for RedisStore {
    async fn create_campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
        spec: &CampaignSpec,
        created_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let media = serde_json::to_string(spec.media_urls.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("mediaUrls: {e}")))?;
        let created: i64 = CREATE_SCRIPT
            .key(keys::campaign(account, &id.to_string()))
            .arg(fmt_time(created_at))
            .arg(spec.priority.as_str())
            .arg(spec.content.as_str())
            .arg(media)
            .arg(spec.send_at.map(fmt_time).unwrap_or_default())
            .arg(self.campaign_ttl(spec, created_at))
            .invoke_async(&mut conn)
            .await?;
        Ok(created == 1)
    }

    async fn campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> Result<Option<CampaignRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let cid = id.to_string();
        let mut counts = redis::cmd("HMGET");
        counts.arg(keys::campaign_counts(account));
        for s in Counts::STATUSES {
            counts.arg(format!("{cid}:{}", s.as_str()));
        }
        let (h, n): (HashMap<String, String>, Vec<Option<i64>>) = redis::pipe()
            .add_command(
                redis::cmd("HGETALL")
                    .arg(keys::campaign(account, &cid))
                    .to_owned(),
            )
            .add_command(counts)
            .query_async(&mut conn)
            .await?;
        campaign_from_hash(id, &h, &n)
    }

    async fn add_recipients(
        &self,
        account: &AccountId,
        id: &CampaignId,
        spec: &CampaignSpec,
        created_at: OffsetDateTime,
        recipients: &[(RecipientId, MessageId)],
    ) -> Result<AddOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let cid = id.to_string();
        let mut inv = ADD_SCRIPT.prepare_invoke();
        inv.key(keys::campaign(account, &cid))
            .key(keys::campaign_recipients(account, &cid))
            .key(keys::campaign_messages(account, &cid))
            .key(keys::campaign_pending(account, &cid))
            .key(keys::campaign_counts(account));
        for (_, m) in recipients {
            inv.key(keys::status(account, m));
        }
        inv.arg(&cid)
            .arg(spec.initial_status(created_at).as_str())
            .arg(spec.priority.as_str())
            .arg(fmt_time(created_at))
            .arg(spec.send_at.map(fmt_time).unwrap_or_default())
            .arg(self.campaign_ttl(spec, created_at));
        for (r, m) in recipients {
            inv.arg(r.as_str()).arg(m.to_string());
        }
        let out: Vec<String> = inv.invoke_async(&mut conn).await?;
        match out.first().map(String::as_str) {
            Some("missing") => return Ok(AddOutcome::NotFound),
            Some("cancelled") => return Ok(AddOutcome::Cancelled),
            _ => {}
        }
        if out.len() != recipients.len() {
            return Err(corrupt("add answer"));
        }
        let slots = out
            .iter()
            .zip(recipients)
            .map(|(o, (_, m))| match o.as_str() {
                "n" => Ok(Slot::New(*m)),
                "d" => Ok(Slot::Duplicate),
                p => p
                    .strip_prefix('p')
                    .and_then(|id| MessageId::parse(id).ok())
                    .map(Slot::Pending)
                    .ok_or_else(|| corrupt("recipient entry")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // New messages must survive a failover before the 202.
        // The script wrote every key of it in the account's slot: WAIT on that
        // shard (in a cluster, the node that took the write).
        self.durability
            .confirm(&mut conn, &keys::campaign(account, &cid))
            .await?;
        Ok(AddOutcome::Added(slots))
    }

    async fn mark_enqueued(
        &self,
        account: &AccountId,
        id: &CampaignId,
        messages: &[MessageId],
        answer: Option<(u64, u64)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let cid = id.to_string();
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !messages.is_empty() {
            pipe.cmd("SREM")
                .arg(keys::campaign_pending(account, &cid))
                .arg(messages.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .ignore();
        }
        if let Some((accepted, duplicates)) = answer {
            let k = keys::campaign(account, &cid);
            pipe.cmd("HSETNX")
                .arg(&k)
                .arg("accepted")
                .arg(accepted)
                .ignore();
            pipe.cmd("HSETNX")
                .arg(&k)
                .arg("duplicates")
                .arg(duplicates)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
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
        let mut conn = self.conn.clone();
        let list = keys::campaign_messages(account, &id.to_string());
        let chunk = if status.is_some() { PAGE_MAX } else { limit };
        let mut records = Vec::with_capacity(limit);
        let mut at = cursor;
        let mut scanned = 0;
        loop {
            let ids = message_ids(&mut conn, &list, at, chunk).await?;
            if ids.is_empty() {
                return Ok(Page {
                    records,
                    next: None,
                });
            }
            let mut pipe = redis::pipe();
            for m in &ids {
                pipe.cmd("HGETALL").arg(keys::status(account, m));
            }
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
            for (m, h) in ids.iter().zip(&hashes) {
                at += 1;
                scanned += 1;
                // A record that expired is left out of the page.
                if let Some(r) = record_from_hash(m, h)?
                    && status.is_none_or(|s| r.status == s)
                {
                    records.push(r);
                    if records.len() == limit {
                        return Ok(Page {
                            records,
                            next: Some(at),
                        });
                    }
                }
            }
            if ids.len() < chunk {
                return Ok(Page {
                    records,
                    next: None,
                });
            }
            if scanned >= PAGE_SCAN_MAX {
                return Ok(Page {
                    records,
                    next: Some(at),
                });
            }
        }
    }

    async fn cancel_campaign(
        &self,
        account: &AccountId,
        id: &CampaignId,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let cid = id.to_string();
        let found: i64 = MARK_CANCELLED_SCRIPT
            .key(keys::campaign(account, &cid))
            .invoke_async(&mut conn)
            .await?;
        if found == 0 {
            return Ok(false);
        }
        let list = keys::campaign_messages(account, &cid);
        let mut at = 0u64;
        loop {
            let ids = message_ids(&mut conn, &list, at, PAGE_MAX).await?;
            at += ids.len() as u64;
            // One call of the atomic cancel script per message: sending or
            // settled ones stay as they are. An error stops here (503), and
            // a retry cancels the rest.
            for m in &ids {
                self.cancel(account, m).await?;
            }
            if ids.len() < PAGE_MAX {
                return Ok(true);
            }
        }
    }
}

/// Up to `n` message ids of a campaign's list from index `at`, in order.
async fn message_ids(
    conn: &mut crate::redis_conn::RedisConn,
    list: &str,
    at: u64,
    n: usize,
) -> Result<Vec<MessageId>, StoreError> {
    let ids: Vec<String> = redis::cmd("LRANGE")
        .arg(list)
        .arg(at)
        .arg(at + n as u64 - 1)
        .query_async(conn)
        .await?;
    ids.iter()
        .map(|i| MessageId::parse(i).map_err(|_| corrupt("message id")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn repeats_within_a_call_are_dropped_in_order() {
        let r = |s: &str| RecipientId::parse(s).unwrap();
        let (u, n) = distinct(&[r("a"), r("b"), r("a"), r("c"), r("b")]);
        assert_eq!(u, vec![r("a"), r("b"), r("c")]);
        assert_eq!(n, 2);
    }

    #[test]
    fn a_request_names_the_same_campaign_every_time() {
        let a = AccountId::parse("acct_1").unwrap();
        let k = IdempotencyKey::parse(b"k1").unwrap();
        let id = CampaignId::for_request(&a, &k, "fp");
        assert_eq!(id, CampaignId::for_request(&a, &k, "fp"));
        assert_ne!(id, CampaignId::for_request(&a, &k, "other"));
        let b = AccountId::parse("acct_2").unwrap();
        assert_ne!(id, CampaignId::for_request(&b, &k, "fp"));
        assert_eq!(CampaignId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(CampaignId::from_message_id(id.as_message_id()), id);
    }

    #[test]
    fn completion_is_estimated_from_the_rate_tokens_and_sendat() {
        let now = t("2026-12-01T00:00:00Z");
        let pace = Pace {
            per_minute: 60.0,
            tokens: 10.0,
            paused_for: None,
        };
        assert_eq!(estimated_completion(0, None, pace, now), None);
        // 10 go at once, 50 at one a second.
        assert_eq!(
            estimated_completion(60, None, pace, now),
            Some(t("2026-12-01T00:00:50Z"))
        );
        assert_eq!(estimated_completion(5, None, pace, now), Some(now));
        let later = t("2026-12-01T01:00:00Z");
        assert_eq!(
            estimated_completion(70, Some(later), pace, now),
            Some(t("2026-12-01T01:01:00Z"))
        );
        let paused = Pace {
            paused_for: Some(Duration::from_secs(30)),
            ..pace
        };
        assert_eq!(
            estimated_completion(10, None, paused, now),
            Some(t("2026-12-01T00:00:30Z"))
        );
        let stopped = Pace {
            per_minute: 0.0,
            ..pace
        };
        assert_eq!(estimated_completion(10, None, stopped, now), None);
    }

    #[test]
    fn page_queries_are_checked_parameter_by_parameter() {
        assert_eq!(
            PageQuery::parse(None).unwrap(),
            PageQuery {
                status: None,
                limit: PAGE_DEFAULT,
                cursor: 0
            }
        );
        assert_eq!(
            PageQuery::parse(Some("status=sent&limit=500&cursor=42&x=1")).unwrap(),
            PageQuery {
                status: Some(Status::Sent),
                limit: 500,
                cursor: 42
            }
        );
        let fields = |q: &str| -> Vec<String> {
            PageQuery::parse(Some(q))
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields("status=done&limit=0&cursor=-1"),
            ["status", "limit", "cursor"]
        );
        assert_eq!(fields("limit=501"), ["limit"]);
        // The fuzzer's find: a cursor past i64::MAX reached LRANGE as a 503.
        assert_eq!(fields("cursor=18446744073709551615"), ["cursor"]);
        assert_eq!(fields(&format!("cursor={}", CURSOR_MAX + 1)), ["cursor"]);
        assert_eq!(
            PageQuery::parse(Some(&format!("cursor={CURSOR_MAX}")))
                .unwrap()
                .cursor,
            CURSOR_MAX
        );
        assert_eq!(fields("limit=1&limit=2"), ["limit"]);
    }

    #[test]
    fn counts_name_every_status_once() {
        let mut c = Counts::default();
        for (i, s) in Counts::STATUSES.iter().enumerate() {
            *c.get_mut(*s) = i as u64 + 1;
        }
        let v = serde_json::to_value(c).unwrap();
        for (i, s) in Counts::STATUSES.iter().enumerate() {
            assert_eq!(v[s.as_str()], i as u64 + 1);
        }
        assert_eq!(c.pending(), 1 + 2 + 3 + 4);
    }

    #[test]
    fn a_stored_campaign_reads_back_and_a_broken_one_is_corrupt() {
        let id = CampaignId::new();
        let mut h: HashMap<String, String> = [
            ("createdAt", "2026-12-01T00:00:00Z"),
            ("priority", "low"),
            ("content", "Hi!"),
            ("mediaUrls", "[\"https://cdn.example.com/a.jpg\"]"),
            ("sendAt", ""),
            ("state", "active"),
            ("total", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let counts = [Some(0), Some(2), None, None, Some(1), None, None, None];
        let c = campaign_from_hash(&id, &h, &counts).unwrap().unwrap();
        assert_eq!(c.total, 3);
        assert_eq!(c.counts.queued, 2);
        assert_eq!(c.counts.sent, 1);
        assert!(!c.cancelled);
        assert_eq!(c.spec.send_at, None);
        assert_eq!(c.first_answer, None);
        assert!(
            campaign_from_hash(&id, &HashMap::new(), &counts)
                .unwrap()
                .is_none()
        );
        h.insert("priority".into(), "urgent".into());
        assert!(campaign_from_hash(&id, &h, &counts).is_err());
    }
}
