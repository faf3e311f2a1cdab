//! The fakes hold to the real adapters' semantics: each test body runs once
//! on the in-memory fake and once on the Redis adapter (`REDIS_URL`, default
//! redis://127.0.0.1:6379), with account ids of its own so runs never meet.
//! Where the two disagree, a test of the handler that passes on the fake
//! would prove nothing about production.

use shared::idempotency::{IdempotencyKey, IdempotencyState, IdempotencyStore};
use shared::message::{AccountId, MessageId, Priority};
use shared::store::{
    ClaimOutcome, ClaimStore, RedisStore, Status, StatusStore, StoreHealth, Transition,
};
use std::time::Duration;
use testkit::MemStore;
use time::OffsetDateTime;

async fn redis() -> RedisStore {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = shared::store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("a Redis must answer at {url}: {e}"));
    RedisStore::new(conn, Duration::from_secs(60))
}

fn account(tag: &str) -> AccountId {
    let n = uuid::Uuid::new_v4().simple().to_string();
    AccountId::parse(&format!("contract_{tag}_{}", &n[..12])).unwrap()
}

fn created() -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 10:00 UTC)
}

/// Status records: written, read, moved along, never out of a terminal
/// status, recreated from the fallback, deleted; accounts apart.
async fn status_records<S: StatusStore + StoreHealth>(s: &S, tag: &str) {
    let a = account(tag);
    let id = MessageId::new();
    s.ping().await.unwrap();
    assert_eq!(s.get(&a, &id).await.unwrap(), None);
    s.put_queued(&a, &id, Priority::Low, created())
        .await
        .unwrap();
    let r = s.get(&a, &id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.priority, r.attempts),
        (Status::Queued, Priority::Low, 0)
    );
    assert_eq!(r.created_at, created());

    let failure = Transition {
        attempts: Some(1),
        last_error: Some("upstream answered 503".into()),
        ..Transition::default()
    };
    let fb = Some((Priority::Low, created()));
    assert_eq!(
        s.transition(&a, &id, Status::Deferred, failure, fb)
            .await
            .unwrap(),
        Some(Status::Deferred)
    );
    let sent = Transition {
        attempts: Some(2),
        sent_at: Some(created() + Duration::from_secs(60)),
        upstream_message_id: Some("ofm_9".into()),
        last_error: None,
    };
    assert_eq!(
        s.transition(&a, &id, Status::Sent, sent, fb).await.unwrap(),
        Some(Status::Sent)
    );
    // Terminal: a late delivery cannot move it back.
    assert_eq!(
        s.transition(&a, &id, Status::Sending, Transition::default(), fb)
            .await
            .unwrap(),
        Some(Status::Sent)
    );
    let r = s.get(&a, &id).await.unwrap().unwrap();
    assert_eq!((r.status, r.attempts), (Status::Sent, 2));
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_9"));
    assert_eq!(
        r.last_error.as_deref(),
        Some("upstream answered 503"),
        "kept"
    );
    assert_eq!(r.sent_at, Some(created() + Duration::from_secs(60)));
    assert_eq!(
        s.get(&account(tag), &id).await.unwrap(),
        None,
        "accounts apart"
    );

    // A record that expired (or was never written) comes back from the fallback.
    let lost = MessageId::new();
    let fb = Some((Priority::High, created()));
    s.transition(&a, &lost, Status::Sending, Transition::default(), fb)
        .await
        .unwrap();
    let r = s.get(&a, &lost).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.priority, r.created_at),
        (Status::Sending, Priority::High, created())
    );

    s.delete(&a, &lost).await.unwrap();
    assert_eq!(s.get(&a, &lost).await.unwrap(), None);
}

/// Claims: one holder at a time, the others told how long; release only by
/// the owner; a lease ends by itself.
async fn claims<S: ClaimStore>(s: &S, tag: &str) {
    let a = account(tag);
    let id = MessageId::new();
    let lease = Duration::from_secs(10);
    assert_eq!(
        s.claim(&a, &id, "one", lease).await.unwrap(),
        ClaimOutcome::Claimed
    );
    match s.claim(&a, &id, "two", lease).await.unwrap() {
        ClaimOutcome::Held(left) => {
            assert!(left <= lease && left > Duration::from_secs(8), "{left:?}")
        }
        other => panic!("{other:?}"),
    }
    s.release(&a, &id, "two").await.unwrap();
    assert!(
        matches!(
            s.claim(&a, &id, "two", lease).await.unwrap(),
            ClaimOutcome::Held(_)
        ),
        "only the owner releases"
    );
    s.release(&a, &id, "one").await.unwrap();
    assert_eq!(
        s.claim(&a, &id, "two", lease).await.unwrap(),
        ClaimOutcome::Claimed
    );

    let short = MessageId::new();
    s.claim(&a, &short, "one", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        s.claim(&a, &short, "two", lease).await.unwrap(),
        ClaimOutcome::Claimed,
        "the lease ended"
    );
}

/// Idempotency keys, as Redis's SET NX / XX / DEL make them behave.
async fn idempotency_keys<S: IdempotencyStore>(s: &S, tag: &str) {
    let a = account(tag);
    let key = IdempotencyKey::parse(b"key-1").unwrap();
    let (one, two) = (MessageId::new(), MessageId::new());
    assert_eq!(
        s.reserve_idempotency(&a, &key, "fp", &one).await.unwrap(),
        IdempotencyState::Reserved
    );
    // The same request looking again, and another request: in progress.
    assert_eq!(
        s.reserve_idempotency(&a, &key, "fp", &one).await.unwrap(),
        IdempotencyState::InProgress
    );
    assert_eq!(
        s.reserve_idempotency(&a, &key, "fp", &two).await.unwrap(),
        IdempotencyState::InProgress
    );
    assert_eq!(
        s.reserve_idempotency(&a, &key, "other", &two)
            .await
            .unwrap(),
        IdempotencyState::Conflict
    );
    s.complete_idempotency(&a, &key, "fp", &one).await.unwrap();
    assert_eq!(
        s.reserve_idempotency(&a, &key, "fp", &two).await.unwrap(),
        IdempotencyState::Done(one)
    );
    assert_eq!(
        s.reserve_idempotency(&a, &key, "other", &two)
            .await
            .unwrap(),
        IdempotencyState::Conflict
    );
    s.release_idempotency(&a, &key).await.unwrap();
    assert_eq!(
        s.reserve_idempotency(&a, &key, "other", &two)
            .await
            .unwrap(),
        IdempotencyState::Reserved
    );
    // Completing a key that was released meanwhile does not bring it back (XX).
    let gone = IdempotencyKey::parse(b"key-2").unwrap();
    s.reserve_idempotency(&a, &gone, "fp", &one).await.unwrap();
    s.release_idempotency(&a, &gone).await.unwrap();
    s.complete_idempotency(&a, &gone, "fp", &one).await.unwrap();
    assert_eq!(
        s.reserve_idempotency(&a, &gone, "fp", &two).await.unwrap(),
        IdempotencyState::Reserved
    );
    // Keys are per account.
    assert_eq!(
        s.reserve_idempotency(&account(tag), &key, "fp", &two)
            .await
            .unwrap(),
        IdempotencyState::Reserved
    );
}

#[tokio::test]
async fn status_records_on_the_fake() {
    status_records(&MemStore::default(), "mem").await;
}

#[tokio::test]
async fn status_records_on_redis() {
    status_records(&redis().await, "redis").await;
}

#[tokio::test]
async fn claims_on_the_fake() {
    claims(&MemStore::default(), "mem").await;
}

#[tokio::test]
async fn claims_on_redis() {
    claims(&redis().await, "redis").await;
}

#[tokio::test]
async fn idempotency_keys_on_the_fake() {
    idempotency_keys(&MemStore::default(), "mem").await;
}

#[tokio::test]
async fn idempotency_keys_on_redis() {
    idempotency_keys(&redis().await, "redis").await;
}
