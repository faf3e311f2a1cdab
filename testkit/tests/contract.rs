//! The fakes hold to the real adapters' semantics: each test body runs once
//! on the in-memory fake and once on the Redis adapter (`REDIS_URL`, default
//! redis://127.0.0.1:6379, or the Redis Cluster at `REDIS_CLUSTER_URL`:
//! [`testkit::test_redis`]), with account ids of its own so runs never meet.
//! Where the two disagree, a test of the handler that passes on the fake
//! would prove nothing about production.

use shared::campaign::{AddOutcome, CampaignId, CampaignSpec, CampaignStore, Slot};
use shared::idempotency::{IdempotencyKey, IdempotencyState, IdempotencyStore};
use shared::limiter::{AccountLimit, AccountLimits, LimitSource};
use shared::message::{AccountId, Content, MediaUrls, MessageId, Priority, RecipientId};
use shared::store::{
    CancelOutcome, ClaimOutcome, ClaimStore, NewRecord, RedisStore, SendGate, SlotChange, Status,
    StatusStore, StoreHealth, Transition,
};
use std::time::Duration;
use testkit::MemStore;
use time::OffsetDateTime;

async fn redis() -> RedisStore {
    let conn = testkit::test_redis()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    RedisStore::new(conn, Duration::from_secs(60))
}

fn account(tag: &str) -> AccountId {
    let n = uuid::Uuid::new_v4().simple().to_string();
    AccountId::parse(&format!("contract_{tag}_{}", &n[..12])).unwrap()
}

fn created() -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 10:00 UTC)
}

fn new_record(priority: Priority, send_at: Option<OffsetDateTime>) -> NewRecord {
    NewRecord {
        priority,
        created_at: created(),
        recipient_id: "fan_1".into(),
        send_at,
    }
}

/// Cancel and the consumer's last step before a send: whichever comes first
/// wins, and the other is told so.
async fn cancel_and_begin_send<S: StatusStore + ClaimStore>(s: &S, tag: &str) {
    let a = account(tag);
    let fb = (Priority::Medium, created());
    let lease = Duration::from_secs(10);
    assert_eq!(
        s.cancel(&a, &MessageId::new()).await.unwrap(),
        CancelOutcome::NotFound
    );

    // Scheduled: shown with its sendAt; cancelled; again; never sent.
    let later = created() + Duration::from_secs(3600);
    let id = MessageId::new();
    s.put_new(&a, &id, &new_record(Priority::Medium, Some(later)))
        .await
        .unwrap();
    let r = s.get(&a, &id).await.unwrap().unwrap();
    assert_eq!((r.status, r.send_at), (Status::Scheduled, Some(later)));
    assert_eq!(s.cancel(&a, &id).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(
        s.cancel(&a, &id).await.unwrap(),
        CancelOutcome::AlreadyCancelled
    );
    s.claim(&a, &id, "c1", lease).await.unwrap();
    assert_eq!(
        s.begin_send(&a, &id, "c1", fb).await.unwrap(),
        SendGate::Settled(Status::Cancelled)
    );
    // A consumer's deferral does not bring it back.
    assert_eq!(
        s.transition(&a, &id, Status::Deferred, Transition::default(), Some(fb))
            .await
            .unwrap(),
        Some(Status::Cancelled)
    );

    // Deferred with a slot: cancelled, the slot dropped.
    let id = MessageId::new();
    s.put_new(&a, &id, &new_record(Priority::Medium, None))
        .await
        .unwrap();
    let slot = Transition {
        slot: SlotChange::Set(created() + Duration::from_secs(5)),
        ..Transition::default()
    };
    s.transition(&a, &id, Status::Deferred, slot, Some(fb))
        .await
        .unwrap();
    assert_eq!(s.cancel(&a, &id).await.unwrap(), CancelOutcome::Cancelled);
    let r = s.get(&a, &id).await.unwrap().unwrap();
    assert_eq!((r.status, r.slot_at), (Status::Cancelled, None));

    // Sending first: the cancel is too late.
    let id = MessageId::new();
    s.put_new(&a, &id, &new_record(Priority::Medium, None))
        .await
        .unwrap();
    s.claim(&a, &id, "c1", lease).await.unwrap();
    assert_eq!(
        s.begin_send(&a, &id, "c2", fb).await.unwrap(),
        SendGate::ClaimLost,
        "another owner's claim"
    );
    assert_eq!(s.begin_send(&a, &id, "c1", fb).await.unwrap(), SendGate::Go);
    assert_eq!(
        s.cancel(&a, &id).await.unwrap(),
        CancelOutcome::TooLate(Status::Sending)
    );
    s.transition(&a, &id, Status::Sent, Transition::default(), Some(fb))
        .await
        .unwrap();
    assert_eq!(
        s.cancel(&a, &id).await.unwrap(),
        CancelOutcome::TooLate(Status::Sent)
    );

    // No claim at all and no record (expired): recreated as sending.
    let lost = MessageId::new();
    assert_eq!(
        s.begin_send(&a, &lost, "c1", fb).await.unwrap(),
        SendGate::Go
    );
    let r = s.get(&a, &lost).await.unwrap().unwrap();
    assert_eq!((r.status, r.created_at), (Status::Sending, created()));
}

/// Status records: written, read, moved along, never out of a terminal
/// status, recreated from the fallback, deleted; accounts apart.
async fn status_records<S: StatusStore + StoreHealth>(s: &S, tag: &str) {
    let a = account(tag);
    let id = MessageId::new();
    s.ping().await.unwrap();
    assert_eq!(s.get(&a, &id).await.unwrap(), None);
    s.put_new(&a, &id, &new_record(Priority::Low, None))
        .await
        .unwrap();
    let r = s.get(&a, &id).await.unwrap().unwrap();
    assert_eq!(r.recipient_id.as_deref(), Some("fan_1"));
    assert_eq!((r.campaign_id, r.send_at), (None, None));
    assert_eq!(
        (r.status, r.priority, r.attempts),
        (Status::Queued, Priority::Low, 0)
    );
    assert_eq!(r.created_at, created());

    // A slot is kept with the record until a transition changes it.
    let slot = created() + Duration::from_millis(6_250);
    let deferred = |slot| Transition {
        slot,
        ..Transition::default()
    };
    let fb = Some((Priority::Low, created()));
    s.transition(
        &a,
        &id,
        Status::Deferred,
        deferred(SlotChange::Set(slot)),
        fb,
    )
    .await
    .unwrap();
    assert_eq!(s.get(&a, &id).await.unwrap().unwrap().slot_at, Some(slot));
    s.transition(&a, &id, Status::Deferred, deferred(SlotChange::Keep), fb)
        .await
        .unwrap();
    assert_eq!(s.get(&a, &id).await.unwrap().unwrap().slot_at, Some(slot));
    s.transition(&a, &id, Status::Sending, deferred(SlotChange::Clear), fb)
        .await
        .unwrap();
    assert_eq!(s.get(&a, &id).await.unwrap().unwrap().slot_at, None);

    let failure = Transition {
        attempts: Some(1),
        last_error: Some("upstream answered 503".into()),
        ..Transition::default()
    };
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
        ..Transition::default()
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
async fn cancel_and_begin_send_on_the_fake() {
    cancel_and_begin_send(&MemStore::default(), "mem").await;
}

#[tokio::test]
async fn cancel_and_begin_send_on_redis() {
    cancel_and_begin_send(&redis().await, "redis").await;
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

/// Accounts' own limits: default until set, set, read back, cleared once;
/// accounts apart. Both sides have the defaults 10/min, burst 10.
async fn account_limits<L: AccountLimits>(l: &L, tag: &str) {
    let (a, b) = (account(tag), account(tag));
    let v = l.limit(&a).await.unwrap();
    assert_eq!(
        (v.rate.per_minute, v.rate.burst, v.source),
        (10.0, 10.0, LimitSource::Default)
    );
    l.set_limit(&a, AccountLimit::new(120, 2).unwrap())
        .await
        .unwrap();
    let v = l.limit(&a).await.unwrap();
    assert_eq!(
        (v.rate.per_minute, v.rate.burst, v.source),
        (120.0, 2.0, LimitSource::Account)
    );
    assert_eq!(l.limit(&b).await.unwrap().source, LimitSource::Default);
    l.set_limit(&a, AccountLimit::new(600, 1000).unwrap())
        .await
        .unwrap();
    assert_eq!(l.limit(&a).await.unwrap().rate.burst, 1000.0, "replaced");
    assert!(l.clear_limit(&a).await.unwrap());
    assert!(!l.clear_limit(&a).await.unwrap());
    assert_eq!(l.limit(&a).await.unwrap().source, LimitSource::Default);
}

#[tokio::test]
async fn account_limits_on_the_fake() {
    account_limits(&testkit::MemBuckets::default(), "limits_fake").await;
}

#[tokio::test]
async fn account_limits_on_redis() {
    let conn = testkit::test_redis()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = shared::config::LimiterConfig {
        per_minute: std::num::NonZeroU32::new(10).unwrap(),
        burst: std::num::NonZeroU32::new(10).unwrap(),
        reserve_medium_percent: 10,
        reserve_low_percent: 20,
        clock: shared::config::LimiterClock::Redis,
    };
    account_limits(
        &shared::limiter::RedisLimiter::new(conn, config),
        "limits_redis",
    )
    .await;
}

fn spec(send_at: Option<OffsetDateTime>) -> CampaignSpec {
    CampaignSpec {
        content: Content::parse("Hi!").unwrap(),
        priority: Priority::Low,
        media_urls: MediaUrls::default(),
        send_at,
    }
}

fn fans(names: &[&str]) -> Vec<(RecipientId, MessageId)> {
    names
        .iter()
        .map(|n| (RecipientId::parse(n).unwrap(), MessageId::new()))
        .collect()
}

/// Campaigns: one message per recipient, counts moved with every status
/// change, stable pages, cancel.
async fn campaigns<S: CampaignStore + StatusStore + ClaimStore>(s: &S, tag: &str) {
    let a = account(tag);
    let id = CampaignId::new();
    let sp = spec(None);
    assert!(s.campaign(&a, &id).await.unwrap().is_none());
    assert_eq!(
        s.add_recipients(&a, &id, &sp, created(), &fans(&["f1"]))
            .await
            .unwrap(),
        AddOutcome::NotFound
    );
    assert!(s.create_campaign(&a, &id, &sp, created()).await.unwrap());
    // Again (a retry of the creating request): kept as it was.
    assert!(!s.create_campaign(&a, &id, &sp, created()).await.unwrap());

    let first = fans(&["f1", "f2", "f3"]);
    let AddOutcome::Added(slots) = s
        .add_recipients(&a, &id, &sp, created(), &first)
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    let ids: Vec<MessageId> = first.iter().map(|(_, m)| *m).collect();
    assert_eq!(slots, ids.iter().map(|m| Slot::New(*m)).collect::<Vec<_>>());
    // Not yet on the queue: a retry gets the same messages back to enqueue.
    let retry = fans(&["f1", "f4"]);
    let AddOutcome::Added(slots) = s
        .add_recipients(&a, &id, &sp, created(), &retry)
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    assert_eq!(slots, vec![Slot::Pending(ids[0]), Slot::New(retry[1].1)]);
    s.mark_enqueued(&a, &id, &[ids[0], ids[1], ids[2], retry[1].1], Some((3, 0)))
        .await
        .unwrap();
    // Once enqueued, a repeat is a duplicate and creates nothing.
    let AddOutcome::Added(slots) = s
        .add_recipients(&a, &id, &sp, created(), &fans(&["f2"]))
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    assert_eq!(slots, vec![Slot::Duplicate]);

    let r = s.get(&a, &ids[1]).await.unwrap().unwrap();
    assert_eq!(r.campaign_id, Some(id.to_string()));
    assert_eq!(r.recipient_id.as_deref(), Some("f2"));
    assert_eq!(r.status, Status::Queued);

    // Status changes move the counts: f1 sent, f2 deferred, f3 cancelled.
    let fb = Some((Priority::Low, created()));
    s.transition(&a, &ids[1], Status::Deferred, Transition::default(), fb)
        .await
        .unwrap();
    s.claim(&a, &ids[0], "c", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        s.begin_send(&a, &ids[0], "c", (Priority::Low, created()))
            .await
            .unwrap(),
        SendGate::Go
    );
    let c = s.campaign(&a, &id).await.unwrap().unwrap();
    assert_eq!(
        (c.counts.sending, c.counts.deferred, c.counts.queued),
        (1, 1, 2)
    );
    s.transition(&a, &ids[0], Status::Sent, Transition::default(), fb)
        .await
        .unwrap();
    assert_eq!(
        s.cancel(&a, &ids[2]).await.unwrap(),
        CancelOutcome::Cancelled
    );
    // A transition refused (terminal) moves nothing.
    s.transition(&a, &ids[2], Status::Queued, Transition::default(), fb)
        .await
        .unwrap();
    let c = s.campaign(&a, &id).await.unwrap().unwrap();
    assert_eq!(c.total, 4);
    assert_eq!(c.first_answer, Some((3, 0)));
    assert_eq!(
        (
            c.counts.sent,
            c.counts.deferred,
            c.counts.cancelled,
            c.counts.queued,
            c.counts.sending
        ),
        (1, 1, 1, 1, 0)
    );

    // Pages: creation order, a cursor, a status filter.
    let p = s.campaign_page(&a, &id, None, 0, 3).await.unwrap();
    let got: Vec<MessageId> = p.records.iter().map(|r| r.message_id).collect();
    assert_eq!(got, ids);
    let p2 = s
        .campaign_page(&a, &id, None, p.next.unwrap(), 3)
        .await
        .unwrap();
    assert_eq!(p2.records.len(), 1);
    assert_eq!(p2.records[0].message_id, retry[1].1);
    assert_eq!(p2.next, None);
    let sent = s
        .campaign_page(&a, &id, Some(Status::Sent), 0, 10)
        .await
        .unwrap();
    assert_eq!(sent.records.len(), 1);
    assert_eq!(sent.records[0].message_id, ids[0]);
    assert_eq!(sent.next, None);

    // Cancel: what was not sending or settled is cancelled; no more adds.
    assert!(s.cancel_campaign(&a, &id).await.unwrap());
    let c = s.campaign(&a, &id).await.unwrap().unwrap();
    assert!(c.cancelled);
    assert_eq!((c.counts.cancelled, c.counts.sent), (3, 1));
    assert_eq!(c.counts.pending(), 0);
    assert_eq!(
        s.add_recipients(&a, &id, &sp, created(), &fans(&["f9"]))
            .await
            .unwrap(),
        AddOutcome::Cancelled
    );
    // Another account sees nothing of it.
    let b = account(tag);
    assert!(s.campaign(&b, &id).await.unwrap().is_none());
    assert!(!s.cancel_campaign(&b, &id).await.unwrap());

    // A scheduled campaign's messages start `scheduled`.
    let later = created() + Duration::from_secs(3600);
    let sid = CampaignId::new();
    let ssp = spec(Some(later));
    s.create_campaign(&a, &sid, &ssp, created()).await.unwrap();
    let f = fans(&["g1"]);
    s.add_recipients(&a, &sid, &ssp, created(), &f)
        .await
        .unwrap();
    let c = s.campaign(&a, &sid).await.unwrap().unwrap();
    assert_eq!((c.counts.scheduled, c.spec.send_at), (1, Some(later)));
    let r = s.get(&a, &f[0].1).await.unwrap().unwrap();
    assert_eq!((r.status, r.send_at), (Status::Scheduled, Some(later)));
}

#[tokio::test]
async fn campaigns_on_the_fake() {
    campaigns(&MemStore::default(), "fake").await;
}

#[tokio::test]
async fn campaigns_on_redis() {
    campaigns(&redis().await, "redis").await;
}
