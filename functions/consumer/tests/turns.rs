//! One account's records in one batch: they ask for their tokens in the
//! order they came, and once a call of theirs has been answered 2xx the
//! next one asks while the call before it is still under way
//! (`consumer::process::Turn`).

mod support;

use aws_lambda_events::event::sqs::SqsMessage;
use consumer::process::Turn;
use shared::delivery::Outcome;
use shared::message::MessageId;
use std::time::Duration;
use support::*;
use tokio::time::Instant;

const LATENCY: Duration = Duration::from_millis(200);

/// Runs one batch; returns the batch item failures. A line that never
/// passes on would hang here: the paused clock runs to the timeout instead.
async fn run_in_time(d: &TestDeps, records: Vec<SqsMessage>) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(60), run(d, records))
        .await
        .expect("the batch finished")
}

/// `n` messages of one account, through one batch in that order; returns
/// their ids and the batch item failures.
async fn one_batch(d: &TestDeps, n: usize) -> (Vec<MessageId>, Vec<String>) {
    let ids: Vec<MessageId> = (0..n).map(|_| MessageId::new()).collect();
    let records = ids
        .iter()
        .enumerate()
        .map(|(i, id)| record(&format!("s{i}"), &body(*id), 1))
        .collect();
    let failures = run_in_time(d, records).await;
    (ids, failures)
}

/// Each message's call, start and answer, in the batch's order.
fn calls_of(d: &TestDeps, ids: &[MessageId]) -> Vec<(Instant, Instant)> {
    let spans = d.upstream.spans();
    ids.iter()
        .map(|id| {
            let (_, start, end) = spans
                .iter()
                .find(|(m, ..)| m == id)
                .expect("every message was called");
            (*start, *end)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn once_a_call_is_answered_2xx_the_next_records_calls_overlap() {
    let d = deps();
    d.upstream.taking(LATENCY);
    let started = Instant::now();
    let (ids, failures) = one_batch(&d, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    let calls = calls_of(&d, &ids);
    // The first call goes alone; once it is answered 2xx the rest ask for
    // their tokens (each granted at once here) one after another without
    // waiting for the call before them: all three are under way together.
    assert_eq!(calls[0].0, started);
    for (i, (start, _)) in calls.iter().enumerate().skip(1) {
        assert_eq!(
            *start, calls[0].1,
            "call {i} starts when the first is answered"
        );
    }
    assert_eq!(started.elapsed(), 2 * LATENCY, "not 4 × {LATENCY:?}");
    // They still asked in the batch's order.
    let order: Vec<MessageId> = d.upstream.calls.lock().unwrap().clone();
    assert_eq!(order, ids);
    for id in &ids {
        assert_eq!(status(&d, *id).await.status, shared::store::Status::Sent);
    }
}

#[tokio::test(start_paused = true)]
async fn after_an_answer_that_is_not_a_2xx_the_next_call_waits_for_the_one_before() {
    let d = deps();
    // The first call fails (a 503): the second may not start before it is
    // answered; the second is answered 2xx, so the third and fourth then
    // overlap. (Back to one at a time after a later non-2xx answer: the
    // last test.)
    d.upstream
        .then(Outcome::Transient {
            reason: "503".into(),
        })
        .taking(LATENCY);
    let (ids, failures) = one_batch(&d, 4).await;
    // The 503 is retried later (a batch item failure), not lost.
    assert_eq!(failures, vec!["s0".to_owned()]);
    let calls = calls_of(&d, &ids);
    assert_eq!(calls[1].0, calls[0].1, "the second waits for the 503");
    assert_eq!(
        calls[2].0, calls[1].1,
        "the third goes once the second is a 2xx"
    );
    assert_eq!(calls[3].0, calls[1].1, "and the fourth beside it");
}

#[tokio::test(start_paused = true)]
async fn a_record_that_never_calls_lets_the_next_one_go() {
    let d = deps();
    // The first is throttled (deferred to a later slot), the second's
    // limiter cannot be reached (deferred, failing closed), the third is
    // sent: each of the first two passes its turn on its way out.
    d.limiter
        .then(throttled(Duration::from_secs(30)))
        .then_unavailable();
    let (ids, failures) = one_batch(&d, 3).await;
    assert_eq!(failures, vec!["s0".to_owned(), "s1".to_owned()]);
    assert_eq!(*d.upstream.calls.lock().unwrap(), vec![ids[2]]);
}

#[tokio::test(start_paused = true)]
async fn a_copy_in_the_same_batch_finds_its_original_sent_not_claimed() {
    // SQS delivered a message twice in one batch: the copy must not start
    // while the original's call is under way (it would find the claim held
    // and be put back), whether the line's calls are already being answered
    // 2xx (the copy of the second record) or not (a copy of the first).
    let d = deps();
    d.upstream.taking(LATENCY);
    let (first, second) = (MessageId::new(), MessageId::new());
    let records = vec![
        record("s0", &body(first), 1),
        record("s1", &body(first), 1),
        record("s2", &body(second), 1),
        record("s3", &body(second), 1),
    ];
    let failures = run_in_time(&d, records).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(*d.upstream.calls.lock().unwrap(), vec![first, second]);
    assert_eq!(status(&d, second).await.status, shared::store::Status::Sent);
}

#[tokio::test]
async fn a_turn_with_a_copy_behind_it_passes_only_when_dropped() {
    let mut line = Turn::line(&["a", "b", "a"]).into_iter();
    let (_, first) = line.next().unwrap();
    let (before_second, _second) = line.next().unwrap();
    let mut before_second = before_second.unwrap();
    first.answered(true);
    first.token_taken();
    assert!(before_second.try_recv().is_err());
    drop(first);
    assert!(matches!(
        before_second.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed)
    ));
}

#[tokio::test]
async fn a_turn_passes_when_answered_2xx_or_dropped_and_not_before() {
    let mut line = Turn::line(&[1, 2, 3, 4, 5]).into_iter();
    let (before_first, first) = line.next().unwrap();
    assert!(before_first.is_none(), "the first waits for no one");
    let mut turns = line.map(|(before, turn)| (before.unwrap(), turn));
    let (mut before_second, second) = turns.next().unwrap();
    let (mut before_third, third) = turns.next().unwrap();
    let (mut before_fourth, fourth) = turns.next().unwrap();
    let (mut before_fifth, _fifth) = turns.next().unwrap();

    // No call of the line answered yet: a token taken does not pass.
    first.token_taken();
    assert!(before_second.try_recv().is_err());
    // Answered, but not a 2xx: still not.
    first.answered(false);
    assert!(before_second.try_recv().is_err());
    // Gone without passing (any other way out): the next one goes.
    drop(first);
    assert!(matches!(
        before_second.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed)
    ));

    // A 2xx passes at once; from then on, a token taken passes.
    second.answered(true);
    assert!(before_third.try_recv().is_ok());
    third.token_taken();
    assert!(before_fourth.try_recv().is_ok());
    // A later answer that is not a 2xx: one at a time again.
    third.answered(false);
    fourth.token_taken();
    assert!(before_fifth.try_recv().is_err());
    fourth.answered(true);
    assert!(before_fifth.try_recv().is_ok());
}
