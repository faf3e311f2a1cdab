//! Scheduled send and cancel (issue 16), on virtual time: a scheduled
//! message rides the same chained hiding as a throttled one and never
//! reaches the upstream before its `sendAt`; a cancelled one never reaches
//! it at all, whichever comes first, the cancel or the consumer.

use aws_lambda_events::event::sqs::SqsEvent;
use shared::clock::{Clock, unix_us};
use shared::delivery::policy::MAX_DEFER_VISIBILITY;
use shared::message::{MessageId, Priority};
use shared::store::{CancelOutcome, NewRecord, Status, StatusStore};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

mod support;

use support::*;

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-12-01 10:00 UTC)
}

/// Deps on virtual time, waiting up to 1.5 s in process (the default).
fn scheduled_deps() -> TestDeps {
    let mut d = deps();
    d.clock = Clock::starting_at(t0());
    d.settings.in_process_wait = MS(1500);
    d
}

/// A queue body with a `sendAt`.
fn body_at(id: MessageId, send_at: Option<OffsetDateTime>) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&body(id)).unwrap();
    if let Some(t) = send_at {
        v["sendAt"] = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .into();
    }
    v.to_string()
}

/// The record the producer writes before it enqueues.
async fn accepted(d: &TestDeps, id: MessageId, send_at: Option<OffsetDateTime>) {
    let new = NewRecord {
        priority: Priority::High,
        created_at: d.clock.now_utc(),
        recipient_id: "fan_1".into(),
        send_at,
    };
    d.store.put_new(&acct(), &id, &new).await.unwrap();
}

/// One invocation of its own (its own claim owner).
async fn invoke(d: &TestDeps, invocation: &str, body: &str, receive_count: u32) -> Vec<String> {
    let mut ev = SqsEvent::default();
    ev.records = vec![record("s1", body, receive_count)];
    let resp = consumer::handler::handle(d, ev, invocation, Instant::now() + S(30)).await;
    resp.batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_message_waits_through_chained_hides_and_goes_at_its_send_at() {
    let d = scheduled_deps();
    let id = MessageId::new();
    // 30 hours ahead: past SQS's 12-hour visibility, so it is hidden in steps.
    let send_at = t0() + S(30 * 3600) + MS(400);
    accepted(&d, id, Some(send_at)).await;
    let b = body_at(id, Some(send_at));
    let mut receives = 0;
    loop {
        receives += 1;
        // Near maxReceiveCount once: a fresh copy, not the DLQ.
        let count = if receives == 2 { 98 } else { receives };
        let left = invoke(&d, &format!("inv-{receives}"), &b, count).await;
        if d.upstream.call_count() > 0 {
            assert!(left.is_empty());
            break;
        }
        assert!(receives < 10, "never sent");
        let r = status(&d, id).await;
        assert_eq!((r.status, r.attempts), (Status::Scheduled, 0));
        assert!(
            d.limiter.asked_held().is_empty(),
            "no token before it is due"
        );
        // How long it was hidden: a visibility change or a fresh copy's delay.
        let hidden = if count == 98 {
            assert!(left.is_empty(), "the original is done, the copy waits");
            d.queue.requeues().last().unwrap().1
        } else {
            assert_eq!(left, vec!["s1"]);
            *d.queue.deferrals().last().unwrap()
        };
        assert!(hidden <= MAX_DEFER_VISIBILITY);
        assert!(
            d.clock.now_utc() + hidden <= send_at,
            "hidden past its sendAt"
        );
        tokio::time::advance(hidden).await;
    }
    let sent_at = status(&d, id).await.sent_at.expect("sent");
    assert!(
        sent_at >= send_at && sent_at <= send_at + S(2),
        "sent at {sent_at}, due {send_at}"
    );
    // 11 h 40 min, 11 h 40 min, a 15-minute copy, then the rest.
    assert!(receives >= 4, "{receives} receives");
    assert!(d.queue.dead_letters().is_empty());
    assert_eq!(status(&d, id).await.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_message_due_within_a_second_and_a_half_waits_in_process() {
    let d = scheduled_deps();
    let id = MessageId::new();
    let send_at = t0() + MS(1200);
    accepted(&d, id, Some(send_at)).await;
    assert!(
        invoke(&d, "inv-1", &body_at(id, Some(send_at)), 1)
            .await
            .is_empty()
    );
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent);
    assert_eq!(r.sent_at, Some(send_at));
    assert!(d.queue.deferrals().is_empty());
    // The limiter credits a full bucket from the sendAt, not the acceptance.
    assert_eq!(d.limiter.asked_due(), vec![unix_us(send_at)]);
}

#[tokio::test(start_paused = true)]
async fn a_message_asks_the_limiter_with_when_it_was_accepted() {
    let d = scheduled_deps();
    // support::body was accepted at 2026-11-27T01:00:00Z; a sendAt before
    // that counts as the acceptance.
    let accepted_at = time::macros::datetime!(2026-11-27 01:00 UTC);
    for (i, send_at) in [None, Some(accepted_at - S(60))].into_iter().enumerate() {
        let body = body_at(MessageId::new(), send_at);
        assert!(invoke(&d, &format!("inv-{i}"), &body, 1).await.is_empty());
    }
    assert_eq!(d.limiter.asked_due(), vec![unix_us(accepted_at); 2]);
}

#[tokio::test(start_paused = true)]
async fn a_send_at_in_the_past_means_now_and_an_old_body_is_read_from_the_record() {
    let d = scheduled_deps();
    let past = MessageId::new();
    accepted(&d, past, Some(t0() - S(60))).await;
    assert!(
        invoke(&d, "inv-1", &body_at(past, Some(t0() - S(60))), 1)
            .await
            .is_empty()
    );
    assert_eq!(status(&d, past).await.sent_at, Some(t0()));
    // A body without sendAt (an older writer, or the outbox): the record's counts.
    let old = MessageId::new();
    accepted(&d, old, Some(t0() + S(3600))).await;
    assert_eq!(invoke(&d, "inv-2", &body(old), 1).await, vec!["s1"]);
    assert_eq!(d.queue.deferrals(), vec![S(3600)]);
    assert_eq!(d.upstream.call_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_message_cancelled_while_deferred_is_never_sent_and_settled() {
    let d = scheduled_deps();
    let id = MessageId::new();
    accepted(&d, id, None).await;
    d.limiter.then(throttled(S(90)));
    assert_eq!(invoke(&d, "inv-1", &body(id), 1).await, vec!["s1"]);
    assert_eq!(status(&d, id).await.status, Status::Deferred);
    assert_eq!(
        d.store.cancel(&acct(), &id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    tokio::time::advance(S(90)).await;
    // Back at its slot: deleted from SQS (not a batch item failure), no
    // token, no call, no DLQ.
    assert!(invoke(&d, "inv-2", &body(id), 2).await.is_empty());
    assert_eq!(d.upstream.call_count(), 0);
    assert_eq!(d.limiter.asked_held(), vec![false], "only the first ask");
    assert!(d.queue.dead_letters().is_empty());
    assert!(d.queue.requeues().is_empty());
    let r = status(&d, id).await;
    assert_eq!((r.status, r.attempts), (Status::Cancelled, 0));
}

/// The cancel lands while the consumer holds the claim, waiting in process
/// for the sendAt: the consumer's move to `sending` is refused and the
/// message is settled without a call.
#[tokio::test(start_paused = true)]
async fn a_cancel_during_the_consumers_wait_wins() {
    let d = scheduled_deps();
    let id = MessageId::new();
    let send_at = t0() + S(1);
    accepted(&d, id, Some(send_at)).await;
    let b = body_at(id, Some(send_at));
    let (left, cancel) = tokio::join!(invoke(&d, "inv-1", &b, 1), async {
        tokio::time::sleep(MS(500)).await;
        assert_eq!(d.store.claims_held(), 1, "the consumer holds it");
        d.store.cancel(&acct(), &id).await.unwrap()
    });
    assert_eq!(cancel, CancelOutcome::Cancelled);
    assert!(left.is_empty(), "settled: deleted from SQS");
    assert_eq!(d.upstream.call_count(), 0);
    assert_eq!(d.store.claims_held(), 0, "the claim is released");
    assert_eq!(status(&d, id).await.status, Status::Cancelled);
}

/// Two deliveries of one message (a duplicate, two instances) race a
/// cancel that lands at a different moment each round. Whatever the order,
/// a cancel answered `Cancelled` has no upstream call, and a message called
/// once is refused (too late) and never called twice.
#[tokio::test(start_paused = true)]
async fn cancel_racing_concurrent_consumers_never_lets_a_cancelled_message_through() {
    let d = scheduled_deps();
    let (mut cancelled, mut too_late) = (0, 0);
    for round in 0..40u64 {
        let id = MessageId::new();
        let send_at = d.clock.now_utc() + MS(1000);
        accepted(&d, id, Some(send_at)).await;
        let b = body_at(id, Some(send_at));
        let calls_before = d.upstream.call_count();
        let cancel_at = MS(round * 50);
        let (inv_a, inv_b) = (format!("a-{round}"), format!("b-{round}"));
        let (_, _, outcome) = tokio::join!(
            invoke(&d, &inv_a, &b, 1),
            async {
                tokio::time::sleep(MS(round % 3)).await;
                invoke(&d, &inv_b, &b, 1).await
            },
            async {
                tokio::time::sleep(cancel_at).await;
                d.store.cancel(&acct(), &id).await.unwrap()
            }
        );
        let calls = d.upstream.call_count() - calls_before;
        match outcome {
            CancelOutcome::Cancelled => {
                assert_eq!(calls, 0, "round {round}");
                assert_eq!(status(&d, id).await.status, Status::Cancelled);
                cancelled += 1;
            }
            CancelOutcome::TooLate(s) => {
                assert_eq!(calls, 1, "round {round}");
                assert!(matches!(s, Status::Sending | Status::Sent), "{s:?}");
                too_late += 1;
            }
            other => panic!("round {round}: {other:?}"),
        }
        // Let the duplicate's hold run out before the next round.
        tokio::time::advance(S(30)).await;
    }
    assert!(cancelled > 0 && too_late > 0, "{cancelled} / {too_late}");
}
