//! `Idempotency-Key`: the key, what Redis keeps for it, and the
//! reserve → accept → complete protocol that makes `POST /v1/messages` safe
//! to retry.
//!
//! The protocol ([`accept_once`]), generic over the store port and over what
//! "accept" means:
//! 1. Reserve the key (SET NX, `pending`, [`PENDING_TTL`]). A key already
//!    `done` with the same body answers with the first message again; with
//!    another body, 409. While another request holds it `pending`, look again
//!    every `poll` for up to `wait`, then 409 "in progress".
//! 2. Accept the message (write its record, enqueue it).
//! 3. On success mark the key `done` ([`TTL`], the contract's 24 h); on
//!    failure release it, so a retry may use it. Every exit of step 2 settles
//!    the reservation; a request that dies mid-way leaves it `pending` for
//!    at most [`PENDING_TTL`].

use crate::keys;
use crate::message::{AccountId, MessageId};
use crate::problem::FieldError;
use crate::store::{RedisStore, StoreError};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// How long an answered key is remembered (the contract's 24 h).
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a reservation stays `pending`: longer than any request can take
/// (API Gateway gives up after 30 s), short enough that a producer that died
/// mid-request does not block the key for a day.
pub const PENDING_TTL: Duration = Duration::from_secs(60);
/// The longest key accepted.
pub const KEY_MAX: usize = 255;

/// A valid `Idempotency-Key`: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a header value.
    pub fn parse(raw: &[u8]) -> Result<Self, FieldError> {
        let s = std::str::from_utf8(raw)
            .map_err(|_| FieldError::new("Idempotency-Key", "must be visible ASCII"))?;
        if s.is_empty() || s.len() > KEY_MAX {
            return Err(FieldError::new(
                "Idempotency-Key",
                format!("must be 1 to {KEY_MAX} characters"),
            ));
        }
        if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(FieldError::new(
                "Idempotency-Key",
                "must be visible ASCII without spaces",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What Redis keeps for a key: `pending|<fingerprint>|<id>` while the first
/// request runs, `done|<fingerprint>|<id>` once it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub done: bool,
    /// The body's [`crate::intake::fingerprint`].
    pub fingerprint: String,
    /// The message the first request accepted (or is accepting).
    pub id: MessageId,
}

impl Entry {
    pub fn encode(&self) -> String {
        let state = if self.done { "done" } else { "pending" };
        format!("{state}|{}|{}", self.fingerprint, self.id)
    }

    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("idempotency record".into());
        let mut parts = s.splitn(3, '|');
        let done = match parts.next() {
            Some("done") => true,
            Some("pending") => false,
            _ => return Err(corrupt()),
        };
        let fingerprint = parts.next().ok_or_else(corrupt)?.to_owned();
        let id = parts
            .next()
            .and_then(|i| MessageId::parse(i).ok())
            .ok_or_else(corrupt)?;
        Ok(Self {
            done,
            fingerprint,
            id,
        })
    }

    /// What this entry means to a request whose body has `fingerprint`.
    pub fn state_for(&self, fingerprint: &str) -> IdempotencyState {
        match self {
            e if e.fingerprint != fingerprint => IdempotencyState::Conflict,
            Entry { done: true, id, .. } => IdempotencyState::Done(*id),
            _ => IdempotencyState::InProgress,
        }
    }
}

/// What an `Idempotency-Key` already stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// The key is new and now reserved for this request.
    Reserved,
    /// The same body was accepted before as this message.
    Done(MessageId),
    /// The same body is being accepted right now by another request.
    InProgress,
    /// The key was used with a different body.
    Conflict,
}

/// Where keys are kept. Implemented by [`RedisStore`] and by the in-memory
/// fake of the `testkit` crate (held to the same semantics by one test run
/// on both).
pub trait IdempotencyStore: Send + Sync {
    /// Reserves `key` for a request whose body has `fingerprint`, or says
    /// what the key already stands for. Of concurrent requests with one key
    /// exactly one gets `Reserved`.
    fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
        fingerprint: &str,
        id: &MessageId,
    ) -> impl Future<Output = Result<IdempotencyState, StoreError>> + Send;

    /// Marks a reserved key as answered with `id`, remembered for [`TTL`].
    fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
        fingerprint: &str,
        id: &MessageId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Frees a reserved key whose request failed, so a retry can use it.
    fn release_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl IdempotencyStore for RedisStore {
    async fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<IdempotencyState, StoreError> {
        let mut conn = self.conn.clone();
        let k = keys::idempotency(account, key.as_str());
        let entry = Entry {
            done: false,
            fingerprint: fingerprint.to_owned(),
            id: *id,
        };
        let set: Option<String> = redis::cmd("SET")
            .arg(&k)
            .arg(entry.encode())
            .arg("NX")
            .arg("EX")
            .arg(PENDING_TTL.as_secs())
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            // A reservation a failover could lose lets a retry through
            // twice: unconfirmed, it is given up (503, nothing enqueued).
            if let Err(e) = self.durability.confirm(&mut conn, &k).await {
                let _: Result<(), _> = redis::cmd("DEL").arg(&k).query_async(&mut conn).await;
                return Err(e.into());
            }
            return Ok(IdempotencyState::Reserved);
        }
        let existing: Option<String> = redis::cmd("GET").arg(&k).query_async(&mut conn).await?;
        match existing {
            Some(existing) => Ok(Entry::parse(&existing)?.state_for(fingerprint)),
            // Released between our SET and GET: the earlier request failed.
            None => Ok(IdempotencyState::InProgress),
        }
    }

    async fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let entry = Entry {
            done: true,
            fingerprint: fingerprint.to_owned(),
            id: *id,
        };
        let _: () = redis::cmd("SET")
            .arg(keys::idempotency(account, key.as_str()))
            .arg(entry.encode())
            .arg("XX")
            .arg("EX")
            .arg(TTL.as_secs())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn release_idempotency(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("DEL")
            .arg(keys::idempotency(account, key.as_str()))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// How long a request waits for another one holding its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// Give up (409 "in progress") after this long.
    pub wait: Duration,
    /// Look again this often meanwhile.
    pub every: Duration,
}

/// A request the protocol answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub id: MessageId,
    /// An earlier request with the same key and body was answered with `id`.
    pub replayed: bool,
}

/// Why the protocol did not accept a request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError<E> {
    #[error("Idempotency-Key was used with a different body")]
    Conflict,
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The accept step failed; the key was released.
    #[error(transparent)]
    Accept(E),
}

/// Runs `accept` at most once per key and body (see the module doc). Without
/// a key it simply runs `accept`.
pub async fn accept_once<S, F, Fut, E>(
    store: &S,
    account: &AccountId,
    key: Option<&IdempotencyKey>,
    fingerprint: &str,
    id: MessageId,
    polling: Polling,
    accept: F,
) -> Result<Accepted, ProtocolError<E>>
where
    S: IdempotencyStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let Some(key) = key else {
        accept().await.map_err(ProtocolError::Accept)?;
        return Ok(Accepted {
            id,
            replayed: false,
        });
    };
    if let Some(first) = reserve(store, account, key, fingerprint, &id, polling).await? {
        return Ok(Accepted {
            id: first,
            replayed: true,
        });
    }
    if let Err(e) = accept().await {
        if let Err(release) = store.release_idempotency(account, key).await {
            tracing::warn!(error = %release, "could not release the Idempotency-Key of a failed request");
        }
        return Err(ProtocolError::Accept(e));
    }
    if let Err(e) = store
        .complete_idempotency(account, key, fingerprint, &id)
        .await
    {
        // The message is accepted, so the answer stands. A retry with this
        // key meets a pending reservation and gets 409 until it expires,
        // which is safer than accepting the message twice.
        tracing::warn!(error = %e, "could not mark the Idempotency-Key as answered");
    }
    Ok(Accepted {
        id,
        replayed: false,
    })
}

/// Reserves `key`; `Some(first)` when an earlier request with the same body
/// was already accepted as `first`.
async fn reserve<S: IdempotencyStore, E>(
    store: &S,
    account: &AccountId,
    key: &IdempotencyKey,
    fingerprint: &str,
    id: &MessageId,
    polling: Polling,
) -> Result<Option<MessageId>, ProtocolError<E>> {
    let deadline = Instant::now() + polling.wait;
    loop {
        match store
            .reserve_idempotency(account, key, fingerprint, id)
            .await?
        {
            IdempotencyState::Reserved => return Ok(None),
            IdempotencyState::Done(first) => return Ok(Some(first)),
            IdempotencyState::Conflict => return Err(ProtocolError::Conflict),
            IdempotencyState::InProgress => {
                if Instant::now() + polling.every > deadline {
                    return Err(ProtocolError::InProgress);
                }
                tokio::time::sleep(polling.every).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_1_to_255() {
        assert!(IdempotencyKey::parse(b"abc-123").is_ok());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(b"has space").is_err());
        assert!(IdempotencyKey::parse(&[b'a'; 256]).is_err());
        assert!(IdempotencyKey::parse(&[b'a'; 255]).is_ok());
        assert!(IdempotencyKey::parse(&[0xff]).is_err());
        assert_eq!(IdempotencyKey::parse(b"k1").unwrap().as_str(), "k1");
    }

    #[test]
    fn entries_round_trip_and_corrupt_ones_are_errors() {
        let id = MessageId::new();
        for done in [false, true] {
            let e = Entry {
                done,
                fingerprint: "fp".into(),
                id,
            };
            assert_eq!(Entry::parse(&e.encode()).unwrap(), e);
        }
        assert!(!Entry::parse(&format!("pending|fp|{id}")).unwrap().done);
        for bad in ["", "done", "done|fp", "maybe|fp|x", "done|fp|not-a-uuid"] {
            assert!(Entry::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn what_an_entry_means_to_a_request() {
        let id = MessageId::new();
        let entry = |done| Entry {
            done,
            fingerprint: "fp".into(),
            id,
        };
        assert_eq!(entry(true).state_for("fp"), IdempotencyState::Done(id));
        assert_eq!(entry(false).state_for("fp"), IdempotencyState::InProgress);
        assert_eq!(entry(true).state_for("other"), IdempotencyState::Conflict);
        assert_eq!(entry(false).state_for("other"), IdempotencyState::Conflict);
    }
}
