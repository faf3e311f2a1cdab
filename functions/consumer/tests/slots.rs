//! A throttled message keeps the slot the limiter gave it (issue 15): kept
//! with its status record, it is hidden again when it comes back early
//! (SQS's 12-hour cap, a crash, a duplicate, a fresh copy) without taking
//! a token, asks for its token as the slot's holder once the slot has come,
//! and takes a new slot only when a higher class took its token.

use shared::delivery::Outcome;
use shared::delivery::policy::MAX_DEFER_VISIBILITY;
use shared::message::{MessageId, Priority};
use shared::store::{SlotChange, Status, StatusStore, Transition};
use std::time::Duration;
use time::OffsetDateTime;

mod support;

use support::*;

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// Gives message `id` the slot `at`, as an earlier deferral would have.
async fn with_slot(d: &TestDeps, id: MessageId, at: OffsetDateTime) {
    let slot = Transition {
        slot: SlotChange::Set(at),
        ..Transition::default()
    };
    let fallback = Some((Priority::High, OffsetDateTime::now_utc()));
    d.store
        .transition(&acct(), &id, Status::Deferred, slot, fallback)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_throttled_message_keeps_its_slot_with_its_status() {
    let d = deps();
    let id = MessageId::new();
    d.limiter.then(throttled(MS(4200)));
    let before = OffsetDateTime::now_utc();
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    let after = OffsetDateTime::now_utc();
    let slot = status(&d, id).await.slot_at.expect("a slot");
    assert!(
        slot >= before + MS(4200) && slot <= after + MS(4200),
        "{slot} not 4.2 s after [{before}, {after}]"
    );
    assert_eq!(d.limiter.asked_held(), vec![false]);
}

#[tokio::test]
async fn a_message_back_before_its_slot_is_hidden_until_it_without_a_token() {
    let d = deps();
    let id = MessageId::new();
    // A slot 20 hours away: past SQS's 12-hour cap, so the message came back.
    with_slot(&d, id, OffsetDateTime::now_utc() + S(20 * 3600)).await;
    assert_eq!(run(&d, vec![record("s1", &body(id), 2)]).await, vec!["s1"]);
    assert!(d.limiter.asked_held().is_empty(), "no token asked for");
    assert!(d.upstream.calls.lock().unwrap().is_empty());
    assert_eq!(d.queue.deferrals(), vec![MAX_DEFER_VISIBILITY]);
    // A slot 90 s away: hidden for the 90 s (whole seconds, rounded up).
    let soon = MessageId::new();
    with_slot(&d, soon, OffsetDateTime::now_utc() + MS(89_400)).await;
    run(&d, vec![record("s2", &body(soon), 3)]).await;
    assert_eq!(d.queue.deferrals()[1], S(90));
    let r = status(&d, id).await;
    assert_eq!((r.status, r.attempts), (Status::Deferred, 0));
    assert!(r.slot_at.is_some(), "the slot is kept");
}

#[tokio::test]
async fn an_early_message_near_max_receive_count_is_replaced_and_keeps_its_slot() {
    let d = deps();
    let id = MessageId::new();
    let slot = OffsetDateTime::now_utc() + S(3 * 3600);
    with_slot(&d, id, slot).await;
    assert!(run(&d, vec![record("s1", &body(id), 98)]).await.is_empty());
    let rq = d.queue.requeues();
    assert_eq!(rq.len(), 1, "a fresh copy instead of the DLQ");
    assert_eq!(rq[0].1, S(900));
    assert_eq!(status(&d, id).await.slot_at, Some(slot));
    assert!(d.limiter.asked_held().is_empty());
}

#[tokio::test]
async fn a_message_back_at_its_slot_asks_as_its_holder_and_goes() {
    let d = deps();
    let id = MessageId::new();
    with_slot(&d, id, OffsetDateTime::now_utc() - S(1)).await;
    assert!(run(&d, vec![record("s1", &body(id), 2)]).await.is_empty());
    assert_eq!(d.limiter.asked_held(), vec![true]);
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent);
}

#[tokio::test]
async fn a_holder_whose_token_went_to_a_higher_class_takes_a_new_slot() {
    let d = deps();
    let id = MessageId::new();
    with_slot(&d, id, OffsetDateTime::now_utc() - S(1)).await;
    // As its holder: the token is 6 s away (a `high` message took it).
    // Then as a newcomer: a slot behind the others, 60 s away.
    d.limiter.then(throttled(S(6))).then(throttled(S(60)));
    let before = OffsetDateTime::now_utc();
    assert_eq!(run(&d, vec![record("s1", &body(id), 2)]).await, vec!["s1"]);
    assert_eq!(d.limiter.asked_held(), vec![true, false]);
    assert_eq!(d.queue.deferrals(), vec![S(60)]);
    let slot = status(&d, id).await.slot_at.expect("the new slot");
    assert!(slot >= before + S(60), "{slot}");
}

#[tokio::test]
async fn a_used_slot_is_cleared_so_a_retry_asks_afresh() {
    let d = deps();
    let id = MessageId::new();
    with_slot(&d, id, OffsetDateTime::now_utc() - S(1)).await;
    d.upstream.then(Outcome::Transient {
        reason: "upstream answered 503".into(),
    });
    assert_eq!(run(&d, vec![record("s1", &body(id), 2)]).await, vec!["s1"]);
    let r = status(&d, id).await;
    assert_eq!(
        (r.status, r.attempts, r.slot_at),
        (Status::Deferred, 1, None)
    );
    // Its retry asks as a newcomer.
    assert!(run(&d, vec![record("s1", &body(id), 3)]).await.is_empty());
    assert_eq!(d.limiter.asked_held(), vec![true, false]);
}

/// SQS hides in whole seconds: a message deferred for its slot is made
/// visible up to a quarter second before it (`policy::SLOT_ADVANCE`) rather
/// than up to a second after, when it can wait that out in process; back
/// that little early, it waits here and goes as the slot's holder.
#[tokio::test]
async fn a_slot_deferral_comes_back_at_most_a_quarter_second_early_and_waits_it_out() {
    let mut d = deps();
    d.settings.in_process_wait = MS(1500);
    let early = MessageId::new();
    with_slot(&d, early, OffsetDateTime::now_utc() + MS(6100)).await;
    assert_eq!(
        run(&d, vec![record("s1", &body(early), 2)]).await,
        vec!["s1"]
    );
    assert_eq!(d.queue.deferrals(), vec![S(6)], "6 s, not 7 s");
    assert!(d.limiter.asked_held().is_empty(), "no token asked for");

    let now = MessageId::new();
    with_slot(&d, now, OffsetDateTime::now_utc() + MS(200)).await;
    let started = std::time::Instant::now();
    assert!(run(&d, vec![record("s2", &body(now), 3)]).await.is_empty());
    assert!(started.elapsed() >= MS(150), "waited here");
    assert_eq!(d.limiter.asked_held(), vec![true]);
    assert_eq!(status(&d, now).await.status, Status::Sent);

    // Without waits in process it would only be hidden again: no advance.
    let d = deps();
    let id = MessageId::new();
    with_slot(&d, id, OffsetDateTime::now_utc() + MS(6100)).await;
    run(&d, vec![record("s3", &body(id), 2)]).await;
    assert_eq!(d.queue.deferrals(), vec![S(7)]);
}
