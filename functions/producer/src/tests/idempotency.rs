//! `Idempotency-Key`: replays, conflicts, keys in progress and released.

use super::*;

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_answer_and_enqueues_nothing() {
    let app = app();
    let first = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "order-42")]),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    // Same meaning, other formatting and key order.
    let same = json!({"mediaUrls": ["https://cdn.example.com/a.jpg"], "priority": "high", "content": "Hello!", "recipientId": "fan_123"});
    let again = call(
        &app,
        post_with("acct_1", &same, &[("idempotency-key", "order-42")]),
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header(LOCATION), first.header(LOCATION));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.queue.count(), 1);
    assert_eq!(app.store.records.lock().unwrap().len(), 1);

    // Keys are per account.
    let other = call(
        &app,
        post_with("acct_2", &valid(), &[("idempotency-key", "order-42")]),
    )
    .await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_ne!(other.body["messageId"], first.body["messageId"]);
    assert_eq!(app.queue.count(), 2);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_409() {
    let app = app();
    call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "k")]),
    )
    .await;
    let mut changed = valid();
    changed["content"] = "Something else".into();
    let a = call(
        &app,
        post_with("acct_1", &changed, &[("idempotency-key", "k")]),
    )
    .await;
    a.problem(409);
    assert!(
        a.body["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-conflict")
    );
    assert_eq!(app.queue.count(), 1);
}

#[tokio::test]
async fn a_key_still_in_progress_is_409_with_retry_after_1() {
    let app = app();
    let fp = shared::intake::fingerprint(
        &shared::intake::parse_new_message(valid().to_string().as_bytes()).unwrap(),
    );
    app.store.keys.lock().unwrap().insert(
        ("acct_1".into(), "busy".into()),
        Entry {
            done: false,
            fingerprint: fp,
            id: MessageId::new(),
        },
    );
    let started = std::time::Instant::now();
    let a = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "busy")]),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "did not wait"
    );
    assert!(
        a.problem(409)["detail"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );
    assert_eq!(a.header(RETRY_AFTER), Some("1"));
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn a_request_waiting_on_a_key_gets_the_answer_once_it_completes() {
    let app = app();
    let body = valid();
    let fp = shared::intake::fingerprint(
        &shared::intake::parse_new_message(body.to_string().as_bytes()).unwrap(),
    );
    let first = MessageId::new();
    app.store.keys.lock().unwrap().insert(
        ("acct_1".into(), "slow".into()),
        Entry {
            done: false,
            fingerprint: fp.clone(),
            id: first,
        },
    );
    let waiting = call(
        &app,
        post_with("acct_1", &body, &[("idempotency-key", "slow")]),
    );
    let finish = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let account = shared::message::AccountId::parse("acct_1").unwrap();
        let key = shared::idempotency::IdempotencyKey::parse(b"slow").unwrap();
        shared::idempotency::IdempotencyStore::complete_idempotency(
            &app.store, &account, &key, &fp, &first,
        )
        .await
        .unwrap();
    };
    let (a, ()) = tokio::join!(waiting, finish);
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.body["messageId"], first.to_string());
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn a_released_key_is_taken_over_by_the_waiting_request() {
    let app = app();
    let body = valid();
    let fp = shared::intake::fingerprint(
        &shared::intake::parse_new_message(body.to_string().as_bytes()).unwrap(),
    );
    app.store.keys.lock().unwrap().insert(
        ("acct_1".into(), "failing".into()),
        Entry {
            done: false,
            fingerprint: fp,
            id: MessageId::new(),
        },
    );
    let waiting = call(
        &app,
        post_with("acct_1", &body, &[("idempotency-key", "failing")]),
    );
    let release = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        app.store.keys.lock().unwrap().clear();
    };
    let (a, ()) = tokio::join!(waiting, release);
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(app.queue.count(), 1);
    let id = MessageId::parse(a.body["messageId"].as_str().unwrap()).unwrap();
    assert!(
        matches!(app.store.key("acct_1", "failing"), Some(Entry { done: true, id: k, .. }) if k == id)
    );
}
