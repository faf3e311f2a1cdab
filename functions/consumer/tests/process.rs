//! The delivery decisions with in-memory ports: every outcome of the
//! contract's "OnlyFans API, as the consumer calls it" section, poison
//! handling, claims, the kill switch, and the receive-count guard.

use aws_lambda_events::event::sqs::SqsEvent;
use shared::delivery::Outcome;
use shared::limiter::Decision;
use shared::message::MessageId;
use shared::store::Status;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod support;

use support::*;

#[tokio::test]
async fn a_2xx_is_sent_with_the_upstream_id() {
    let d = deps();
    let id = MessageId::new();
    assert!(run(&d, vec![record("s1", &body(id), 1)]).await.is_empty());
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_1"));
    assert!(r.sent_at.is_some());
    assert_eq!(d.store.claims_held(), 0, "claim released");
}

#[tokio::test]
async fn poison_goes_to_the_dlq_and_its_neighbours_are_delivered() {
    let d = deps();
    let (a, b) = (MessageId::new(), MessageId::new());
    let failures = run(
        &d,
        vec![
            record("s1", &body(a), 1),
            record("bad", "{nope", 1),
            record("s3", &body(b), 1),
        ],
    )
    .await;
    assert!(failures.is_empty(), "{failures:?}");
    let dead = d.queue.dead_letters().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "{nope");
    assert!(dead[0].1.contains("not valid JSON"));
    assert_eq!(d.upstream.call_count(), 2);
}

#[tokio::test]
async fn an_unknown_schema_version_is_poison() {
    let d = deps();
    let mut v: serde_json::Value = serde_json::from_str(&body(MessageId::new())).unwrap();
    v["schemaVersion"] = 7.into();
    assert!(
        run(&d, vec![record("s1", &v.to_string(), 1)])
            .await
            .is_empty()
    );
    assert!(d.queue.dead_letters()[0].1.contains("schema version 7"));
}

#[tokio::test]
async fn throttled_messages_are_deferred_not_failed() {
    let d = deps();
    let id = MessageId::new();
    d.limiter.then(throttled(Duration::from_millis(4200)));
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert_eq!(
        d.queue.deferred.lock().unwrap()[0],
        ("rh-s1".to_string(), Duration::from_secs(5))
    );
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Deferred);
    assert_eq!(r.attempts, 0, "a wait is not an attempt");
    assert!(d.upstream.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_naive_baseline_only_reports_a_failure() {
    let mut d = deps();
    d.settings.deferral = shared::config::DeferralStrategy::Naive;
    d.limiter.then(throttled(Duration::from_secs(4)));
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert!(
        d.queue.deferred.lock().unwrap().is_empty(),
        "visibility left to the queue"
    );
    // It keeps no slot, so it asks as a plain token bucket: as a newcomer
    // each retry would queue behind the slots of its own earlier denials.
    assert_eq!(d.limiter.asked_held(), vec![true]);
}

#[tokio::test]
async fn a_long_waiting_message_is_reenqueued_before_max_receive_count() {
    let d = deps();
    d.limiter.then(throttled(Duration::from_secs(3600)));
    assert!(
        run(&d, vec![record("s1", &body(MessageId::new()), 98)])
            .await
            .is_empty()
    );
    let rq = d.queue.requeues();
    assert_eq!(rq.len(), 1);
    assert_eq!(rq[0].1, Duration::from_secs(900), "SQS's longest delay");
}

#[tokio::test]
async fn a_429_pauses_the_account_and_costs_no_attempt() {
    let d = deps();
    let id = MessageId::new();
    d.upstream.then(Outcome::RateLimited {
        retry_after: Duration::from_secs(7),
    });
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert_eq!(
        d.limiter.paused.lock().unwrap().clone(),
        vec![Duration::from_secs(7)]
    );
    assert_eq!(
        d.queue.deferred.lock().unwrap()[0].1,
        Duration::from_secs(7)
    );
    let r = status(&d, id).await;
    assert_eq!((r.status, r.attempts), (Status::Deferred, 0));
}

#[tokio::test]
async fn transient_failures_back_off_then_die_in_the_dlq() {
    let d = deps();
    let id = MessageId::new();
    for _ in 0..3 {
        d.upstream.then(Outcome::Transient {
            reason: "upstream answered 503".into(),
        });
    }
    for attempt in 1..=2 {
        assert_eq!(
            run(&d, vec![record("s1", &body(id), attempt)]).await,
            vec!["s1"]
        );
        let r = status(&d, id).await;
        assert_eq!((r.status, r.attempts), (Status::Deferred, attempt));
        assert!(r.last_error.unwrap().contains("503"));
    }
    assert!(run(&d, vec![record("s1", &body(id), 3)]).await.is_empty());
    let r = status(&d, id).await;
    assert_eq!((r.status, r.attempts), (Status::Dead, 3));
    assert_eq!(d.queue.dead_letters().len(), 1);
    assert!(
        d.queue.dead_letters()[0]
            .1
            .contains("gave up after 3 attempts")
    );
}

#[tokio::test]
async fn an_open_upstream_circuit_defers_without_calling() {
    let d = deps();
    for _ in 0..3 {
        d.upstream.then(Outcome::Transient {
            reason: "upstream answered 503".into(),
        });
    }
    let ids: Vec<_> = (0..4)
        .map(|i| record(&format!("s{i}"), &body(MessageId::new()), 1))
        .collect();
    assert_eq!(run(&d, ids).await.len(), 4);
    assert_eq!(
        d.upstream.call_count(),
        3,
        "the fourth waits for the circuit"
    );
    let waits: Vec<_> = d
        .queue
        .deferred
        .lock()
        .unwrap()
        .iter()
        .map(|(_, w)| *w)
        .collect();
    assert_eq!(waits[3], Duration::from_secs(30));
}

#[tokio::test]
async fn a_permanent_4xx_fails_with_the_upstream_reason() {
    let d = deps();
    let id = MessageId::new();
    d.upstream.then(Outcome::Permanent {
        status: 403,
        reason: "upstream answered 403: blocked".into(),
    });
    assert!(run(&d, vec![record("s1", &body(id), 1)]).await.is_empty());
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        r.last_error.as_deref(),
        Some("upstream answered 403: blocked")
    );
    assert!(d.queue.dead_letters().is_empty());
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_retries() {
    let d = deps();
    d.upstream.then(Outcome::Unauthorized {
        reason: "upstream answered 401".into(),
    });
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert_eq!(d.upstream.refresh_count(), 1);
}

#[tokio::test]
async fn an_already_sent_message_is_not_sent_again() {
    let d = deps();
    let id = MessageId::new();
    assert!(run(&d, vec![record("s1", &body(id), 1)]).await.is_empty());
    assert!(run(&d, vec![record("s1", &body(id), 2)]).await.is_empty());
    assert_eq!(d.upstream.call_count(), 1);
}

#[tokio::test]
async fn a_message_claimed_elsewhere_waits() {
    let d = deps();
    let id = MessageId::new();
    d.store
        .hold_claim(&acct(), &id, "other", Duration::from_secs(3));
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert!(d.upstream.calls.lock().unwrap().is_empty());
    assert_eq!(
        d.queue.deferred.lock().unwrap()[0].1,
        Duration::from_secs(4)
    );
}

#[tokio::test]
async fn the_kill_switch_defers_everything_and_sends_nothing() {
    let mut d = deps();
    d.settings.enabled = false;
    let ids: Vec<_> = (0..3)
        .map(|i| record(&format!("s{i}"), &body(MessageId::new()), 1))
        .collect();
    assert_eq!(run(&d, ids).await.len(), 3);
    assert!(d.upstream.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn redis_down_fails_closed() {
    let d = deps();
    d.store.unreachable.store(true, Ordering::SeqCst);
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert!(d.upstream.calls.lock().unwrap().is_empty());
    let d = deps();
    d.limiter.then_unavailable();
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert!(
        d.upstream.calls.lock().unwrap().is_empty(),
        "no token, no send"
    );
}

#[tokio::test]
async fn a_record_without_an_id_never_fails_the_batch() {
    let d = deps();
    let mut r = record("", "{nope", 1);
    r.message_id = None;
    d.limiter.then(throttled(Duration::from_secs(1)));
    let mut r2 = record("", &body(MessageId::new()), 1);
    r2.message_id = None;
    let failures = run(&d, vec![r, r2, record("s3", &body(MessageId::new()), 1)]).await;
    assert!(failures.iter().all(|f| !f.is_empty()), "{failures:?}");
}

#[tokio::test]
async fn the_sample_events_are_handled() {
    for (name, ev) in [
        ("one", include_str!("../../../events/sqs-one-message.json")),
        (
            "mixed",
            include_str!("../../../events/sqs-mixed-poison.json"),
        ),
        (
            "priorities",
            include_str!("../../../events/sqs-priorities.json"),
        ),
    ] {
        let d = deps();
        let ev: SqsEvent = serde_json::from_str(ev).unwrap();
        let n = ev.records.len();
        let failures = run(&d, ev.records).await;
        assert!(failures.is_empty(), "{name}: {failures:?}");
        let sent = d.upstream.call_count();
        let dead = d.queue.dead_letters().len();
        assert_eq!(sent + dead, n, "{name}");
        if name == "mixed" {
            assert_eq!(dead, 2);
        }
    }
}

#[tokio::test]
async fn a_sent_status_is_written_even_if_redis_fails_for_a_moment() {
    let d = deps();
    d.store.sent_write_failures.store(2, Ordering::SeqCst);
    let id = MessageId::new();
    let failed = run(&d, vec![record("s1", &body(id), 1)]).await;
    assert!(failed.is_empty(), "sent: the record is deleted");
    assert_eq!(d.upstream.call_count(), 1);
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent, "{r:?}");
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_1"));
}

#[tokio::test]
async fn a_sent_status_redis_cannot_take_is_recorded_by_a_copy() {
    let d = deps();
    d.store
        .sent_write_failures
        .store(u32::MAX, Ordering::SeqCst);
    let id = MessageId::new();
    let failed = run(&d, vec![record("s1", &body(id), 1)]).await;
    assert!(failed.is_empty(), "sent: the record is deleted");
    assert_eq!(status(&d, id).await.status, Status::Sending);
    let (copy_body, _, attrs) = d.queue.requeues()[0].clone();
    let sent = attrs[shared::queue::attr::SENT_RECORD]
        .string_value()
        .unwrap()
        .to_owned();

    // Redis is back: the copy records the outcome, and calls nobody.
    d.store.sent_write_failures.store(0, Ordering::SeqCst);
    let mut copy = record("s2", &copy_body, 1);
    let mut a = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    a.string_value = Some(sent);
    a.data_type = Some("String".into());
    copy.message_attributes
        .insert(shared::queue::attr::SENT_RECORD.into(), a);
    let failed = run(&d, vec![copy]).await;
    assert!(failed.is_empty());
    assert_eq!(d.upstream.call_count(), 1, "not sent again");
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent, "{r:?}");
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_1"));
    assert_eq!(r.attempts, 1);
}

/// Opens the breaker (three transient failures), then lets its open period
/// pass (virtual time): the next call is the half-open probe.
async fn open_then_half_open(d: &TestDeps) {
    for _ in 0..3 {
        d.upstream.then(Outcome::Transient {
            reason: "upstream answered 503".into(),
        });
    }
    let records: Vec<_> = (0..3)
        .map(|i| record(&format!("o{i}"), &body(MessageId::new()), 1))
        .collect();
    assert_eq!(run(d, records).await.len(), 3);
    assert!(d.breaker.is_open());
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(!d.breaker.is_open());
}

/// A healthy message after the probe's holder went its own way is sent.
async fn a_healthy_message_is_sent(d: &TestDeps) {
    let calls = d.upstream.call_count();
    let id = MessageId::new();
    assert!(
        run(d, vec![record("healthy", &body(id), 1)])
            .await
            .is_empty(),
        "the breaker let the healthy message through"
    );
    assert_eq!(d.upstream.call_count(), calls + 1);
    assert_eq!(status(d, id).await.status, Status::Sent);
}

#[tokio::test(start_paused = true)]
async fn a_throttled_message_after_an_outage_never_stalls_the_breaker() {
    let d = deps();
    open_then_half_open(&d).await;
    d.limiter.then(throttled(Duration::from_secs(6)));
    assert_eq!(
        run(&d, vec![record("t", &body(MessageId::new()), 1)]).await,
        vec!["t"]
    );
    a_healthy_message_is_sent(&d).await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_accounts_message_after_an_outage_never_stalls_the_breaker() {
    let d = deps();
    open_then_half_open(&d).await;
    d.limiter.then(Decision::Paused {
        wait: Duration::from_secs(600),
    });
    assert_eq!(
        run(&d, vec![record("p", &body(MessageId::new()), 1)]).await,
        vec!["p"]
    );
    a_healthy_message_is_sent(&d).await;
}

#[tokio::test(start_paused = true)]
async fn a_limiter_error_after_an_outage_never_stalls_the_breaker() {
    let d = deps();
    open_then_half_open(&d).await;
    d.limiter.then_unavailable();
    assert_eq!(
        run(&d, vec![record("e", &body(MessageId::new()), 1)]).await,
        vec!["e"]
    );
    a_healthy_message_is_sent(&d).await;
}

#[tokio::test(start_paused = true)]
async fn a_401_probe_gives_the_probe_back() {
    let d = deps();
    open_then_half_open(&d).await;
    d.upstream.then(Outcome::Unauthorized {
        reason: "upstream answered 401".into(),
    });
    assert_eq!(
        run(&d, vec![record("u", &body(MessageId::new()), 1)]).await,
        vec!["u"]
    );
    assert_eq!(d.upstream.refresh_count(), 1, "the probe was made");
    a_healthy_message_is_sent(&d).await;
}

/// The claim is released on every path out of a delivery, not only the
/// happy one: throttled, paused, limiter down, 429, transient, 401,
/// permanent, and the circuit open.
#[tokio::test]
async fn the_claim_is_released_on_every_path() {
    let throttled = throttled(Duration::from_secs(9));
    let paused = Decision::Paused {
        wait: Duration::from_secs(9),
    };
    let answers = [
        Outcome::RateLimited {
            retry_after: Duration::from_secs(5),
        },
        Outcome::Transient {
            reason: "503".into(),
        },
        Outcome::Unauthorized {
            reason: "401".into(),
        },
        Outcome::Permanent {
            status: 403,
            reason: "blocked".into(),
        },
    ];
    let d = deps();
    d.limiter.then(throttled).then(paused).then_unavailable();
    for answer in answers {
        d.upstream.then(answer);
    }
    for i in 0..7 {
        let id = MessageId::new();
        run(&d, vec![record(&format!("s{i}"), &body(id), 1)]).await;
        assert_eq!(d.store.claims_held(), 0, "path {i} kept its claim");
    }
    assert_eq!(
        d.upstream.call_count(),
        4,
        "four paths reached the upstream"
    );
    // Three transient failures open the circuit: that path releases too.
    let d = deps();
    for _ in 0..3 {
        d.upstream.then(Outcome::Transient {
            reason: "503".into(),
        });
    }
    let records: Vec<_> = (0..4)
        .map(|i| record(&format!("o{i}"), &body(MessageId::new()), 1))
        .collect();
    run(&d, records).await;
    assert!(d.breaker.is_open());
    assert_eq!(d.store.claims_held(), 0);
}

#[tokio::test]
async fn a_batch_s_deferrals_go_out_ten_to_a_request() {
    let d = deps();
    let records: Vec<_> = (0..12)
        .map(|i| {
            d.limiter.then(throttled(Duration::from_millis(4200)));
            record(&format!("s{i}"), &body(MessageId::new()), 1)
        })
        .collect();
    assert_eq!(run(&d, records).await.len(), 12, "all twelve wait");
    let deferred = d.queue.deferred.lock().unwrap().clone();
    assert_eq!(deferred.len(), 12);
    assert!(
        deferred.iter().all(|(_, w)| *w == Duration::from_secs(5)),
        "{deferred:?}"
    );
    assert_eq!(
        d.queue.defer_batches.load(Ordering::SeqCst),
        2,
        "one ChangeMessageVisibilityBatch per ten records"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deferral_counts_from_its_decision_not_from_the_end_of_the_batch() {
    let mut d = deps();
    d.settings.in_process_wait = Duration::from_millis(1500);
    // The first record is hidden for 4.2 s; the second (same account, so
    // after it) waits a second in process, then goes: the batch's
    // visibility changes go out a second after the first decision.
    d.limiter.then(throttled(Duration::from_millis(4200)));
    d.limiter.then(throttled(Duration::from_secs(1)));
    let (a, b) = (MessageId::new(), MessageId::new());
    let failures = run(&d, vec![record("a", &body(a), 1), record("b", &body(b), 1)]).await;
    assert_eq!(failures, vec!["a"]);
    assert_eq!(status(&d, b).await.status, Status::Sent);
    assert_eq!(
        d.queue.deferred.lock().unwrap().clone(),
        vec![("rh-a".to_string(), Duration::from_secs(3))],
        "3.2 s left when the batch ends, less the quarter second a slot's deferral comes back \
         ahead (policy::SLOT_ADVANCE), rounded up: back at 4.0 s, within a quarter second \
         before its slot, not at 5 s + 1 s"
    );
}

/// A newcomer whose slot is under the in-process limit away, in a bucket
/// that keeps its token for seconds (60/min, burst 10: 8 s), is deferred
/// through the queue at once: the invocation does not sleep for it. With no
/// slack (600/min, burst 10) the same wait is waited out here.
#[tokio::test(start_paused = true)]
async fn a_newcomer_with_slack_is_deferred_without_holding_the_invocation() {
    let mut d = deps();
    d.settings.in_process_wait = Duration::from_millis(1500);
    let denial = |slack| shared::limiter::Decision::Throttled {
        wait: Duration::from_millis(900),
        tokens: 0.0,
        slack,
    };
    d.limiter.then(denial(Duration::from_secs(8)));
    let id = MessageId::new();
    let started = tokio::time::Instant::now();
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert!(started.elapsed() < Duration::from_millis(100), "no sleep");
    assert_eq!(
        d.queue.deferred.lock().unwrap().clone(),
        vec![("rh-s1".to_string(), Duration::from_secs(1))]
    );
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Deferred);
    assert!(r.slot_at.is_some(), "it comes back as its slot's holder");
    assert!(d.upstream.calls.lock().unwrap().is_empty());

    let mut d = deps();
    d.settings.in_process_wait = Duration::from_millis(1500);
    d.limiter.then(denial(Duration::from_millis(800)));
    let id = MessageId::new();
    let started = tokio::time::Instant::now();
    assert!(run(&d, vec![record("s2", &body(id), 1)]).await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited here"
    );
    assert_eq!(status(&d, id).await.status, Status::Sent);
    assert_eq!(d.limiter.asked_held(), vec![false, true]);
}

#[tokio::test]
async fn a_refused_visibility_change_loses_nothing() {
    let d = deps();
    d.limiter.then(throttled(Duration::from_millis(4200)));
    d.queue.fail.store(true, Ordering::SeqCst);
    let id = MessageId::new();
    // The record is still reported as a failure: the queue's visibility
    // timeout brings it back (later, not lost), and its slot is kept.
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Deferred);
    assert!(
        r.slot_at.is_some(),
        "the slot is kept for when it comes back"
    );
    assert!(d.upstream.calls.lock().unwrap().is_empty());
}
