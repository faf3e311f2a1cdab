//! `POST /v1/messages`: accepted, refused (400, 413, 415), the order of checks, and 503.

use super::*;

// ---------------------------------------------------------------- POST 202

#[tokio::test]
async fn a_valid_message_is_accepted_stored_and_queued() {
    let app = app();
    let a = call(&app, post("acct_1", &valid())).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    let obj = a.body.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
    let id = MessageId::parse(a.body["messageId"].as_str().unwrap()).unwrap();
    assert_eq!(id.as_uuid().get_version_num(), 7);
    assert_eq!(
        a.header(LOCATION),
        Some(format!("/v1/messages/{id}").as_str())
    );
    assert_eq!(a.header("idempotent-replayed"), None);

    let record = app.store.record("acct_1", &id).unwrap();
    assert_eq!(record.status, Status::Queued);
    assert_eq!(record.priority, Priority::High);

    let sent = app.queue.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let (msg, traceparent) = &sent[0];
    assert_eq!(msg.message_id, id);
    assert_eq!(msg.account_id.as_str(), "acct_1");
    assert_eq!(msg.recipient_id.as_str(), "fan_123");
    assert_eq!(msg.content.as_str(), "Hello!");
    assert_eq!(msg.media_urls.as_slice(), ["https://cdn.example.com/a.jpg"]);
    assert!(crate::trace::is_valid(traceparent.as_deref().unwrap()));
}

#[tokio::test]
async fn optional_fields_default_and_json_media_types_with_parameters_are_accepted() {
    let app = app();
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ] {
        let auth = bearer("acct_1");
        let req = request(
            "POST",
            "/v1/messages",
            &[("authorization", &auth), ("content-type", ct)],
            json!({"recipientId": "f", "content": "x"}).to_string(),
        );
        assert_eq!(call(&app, req).await.status, StatusCode::ACCEPTED, "{ct}");
    }
    assert!(
        app.queue
            .sent
            .lock()
            .unwrap()
            .iter()
            .all(|(m, _)| m.priority == Priority::Medium)
    );
}

#[tokio::test]
async fn a_valid_traceparent_is_forwarded() {
    let app = app();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a = call(&app, post_with("acct_1", &valid(), &[("traceparent", tp)])).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(app.queue.sent.lock().unwrap()[0].1.as_deref(), Some(tp));
}

// ---------------------------------------------------------------- POST 400

#[tokio::test]
async fn every_bad_field_is_listed_including_the_idempotency_key() {
    let app = app();
    let body = json!({"recipientId": "bad id!", "content": "   ", "priority": "urgent",
                      "mediaUrls": ["http://x.example/a", 3], "extra": true});
    let a = call(
        &app,
        post_with("acct_1", &body, &[("idempotency-key", "has space")]),
    )
    .await;
    assert_eq!(
        a.fields(),
        [
            "extra",
            "recipientId",
            "content",
            "priority",
            "mediaUrls[0]",
            "mediaUrls[1]",
            "Idempotency-Key"
        ]
    );
    assert!(a.body["type"].as_str().unwrap().starts_with("https://"));
    assert_eq!(app.queue.count(), 0);
    assert!(app.store.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn missing_fields_and_a_bad_key_on_a_good_body_are_400() {
    let app = app();
    assert_eq!(
        call(&app, post("acct_1", &json!({}))).await.fields(),
        ["recipientId", "content"]
    );
    let a = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "")]),
    )
    .await;
    assert_eq!(a.fields(), ["Idempotency-Key"]);
    let long = "k".repeat(256);
    let a = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", &long)]),
    )
    .await;
    assert_eq!(a.fields(), ["Idempotency-Key"]);
    let auth = bearer("acct_1");
    let twice = request(
        "POST",
        "/v1/messages",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("idempotency-key", "a"),
            ("idempotency-key", "b"),
        ],
        valid().to_string(),
    );
    assert_eq!(call(&app, twice).await.fields(), ["Idempotency-Key"]);
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn malformed_json_says_where() {
    let app = app();
    let auth = bearer("acct_1");
    let req = request(
        "POST",
        "/v1/messages",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        "{\"recipientId\": \"f\",\n \"content\": }",
    );
    let a = call(&app, req).await;
    let detail = a.problem(400)["detail"].as_str().unwrap();
    assert!(detail.contains("line 2 column"), "{detail}");
    assert!(a.body["type"].as_str().unwrap().ends_with("malformed-json"));

    for body in ["", "[1,2]", "\"text\"", "null"] {
        let req = request(
            "POST",
            "/v1/messages",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        );
        call(&app, req).await.problem(400);
    }
}

#[tokio::test]
async fn problem_bodies_never_echo_content_or_tokens() {
    let app = app();
    let secret_text = "my private words ".repeat(400); // > 5000 chars
    let body = json!({"recipientId": "f", "content": secret_text});
    let a = call(&app, post("acct_1", &body)).await;
    a.problem(400);
    let text = a.body.to_string();
    assert!(!text.contains("private words"), "{text}");

    let token = "Bearer abc.def.ghi";
    let req = request(
        "GET",
        "/v1/status",
        &[("authorization", token)],
        Body::Empty,
    );
    let a = call(&app, req).await;
    a.problem(401);
    assert!(!a.body.to_string().contains("abc.def.ghi"));
    assert!(!a.header(WWW_AUTHENTICATE).unwrap().contains("abc.def.ghi"));
}

// ---------------------------------------------------------------- 413, 415, order

#[tokio::test]
async fn bodies_over_256_kib_are_413() {
    let app = app();
    let auth = bearer("acct_1");
    let big = format!(
        "{{\"recipientId\":\"f\",\"content\":\"{}\"}}",
        "a".repeat(256 * 1024)
    );
    let req = request(
        "POST",
        "/v1/messages",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        big,
    );
    let a = call(&app, req).await;
    assert!(
        a.problem(413)["detail"]
            .as_str()
            .unwrap()
            .contains("262144")
    );

    // A declared Content-Length over the limit is enough.
    let req = request(
        "POST",
        "/v1/messages",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("content-length", "262145"),
        ],
        valid().to_string(),
    );
    call(&app, req).await.problem(413);

    // Exactly 256 KiB is not "over": it fails validation instead (content too long).
    let filler = 256 * 1024 - "{\"recipientId\":\"f\",\"content\":\"\"}".len();
    let exact = format!(
        "{{\"recipientId\":\"f\",\"content\":\"{}\"}}",
        "a".repeat(filler)
    );
    assert_eq!(exact.len(), 256 * 1024);
    let req = request(
        "POST",
        "/v1/messages",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        exact,
    );
    assert_eq!(call(&app, req).await.fields(), ["content"]);
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn non_json_bodies_are_415() {
    let app = app();
    let auth = bearer("acct_1");
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("json"),
        Some("text/json+xml"),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = ct {
            headers.push(("content-type", ct));
        }
        let a = call(
            &app,
            request("POST", "/v1/messages", &headers, valid().to_string()),
        )
        .await;
        a.problem(415);
    }
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn checks_run_in_the_contract_order() {
    let app = app();
    let big = "x".repeat(300 * 1024);
    // 401 before 413.
    call(
        &app,
        request(
            "POST",
            "/v1/messages",
            &[("content-type", "text/plain")],
            big.clone(),
        ),
    )
    .await
    .problem(401);
    let auth = bearer("acct_1");
    // 413 before 415.
    call(
        &app,
        request("POST", "/v1/messages", &[("authorization", &auth)], big),
    )
    .await
    .problem(413);
    // 415 before 400.
    call(
        &app,
        request("POST", "/v1/messages", &[("authorization", &auth)], "{"),
    )
    .await
    .problem(415);
    // 400 before 503 (disabled).
    let closed = app_with(Settings {
        enabled: false,
        ..settings()
    });
    call(&closed, post("acct_1", &json!({}))).await.problem(400);
}

// ---------------------------------------------------------------- 503

#[tokio::test]
async fn disabled_intake_is_503_with_retry_after() {
    let closed = app_with(Settings {
        enabled: false,
        ..settings()
    });
    let a = call(&closed, post("acct_1", &valid())).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(closed.queue.count(), 0);
    assert!(closed.store.records.lock().unwrap().is_empty());
}

#[tokio::test]
async fn accounts_outside_the_rollout_get_503() {
    let closed = app_with(Settings {
        rollout_percent: 0,
        ..settings()
    });
    let a = call(&closed, post("acct_1", &valid())).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    assert_eq!(closed.queue.count(), 0);
    let s = call(&closed, get("acct_1", "/v1/status")).await;
    assert_eq!(s.body["intakeEnabled"], false);

    // At 100 % every account is in; the bucket is the stable hash.
    let all = app();
    assert_eq!(
        call(&all, get("acct_1", "/v1/status")).await.body["intakeEnabled"],
        true
    );
}

#[tokio::test]
async fn a_queue_failure_is_503_and_leaves_nothing_behind() {
    let app = app();
    app.queue.fail.store(true, Ordering::SeqCst);
    let a = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "k-1")]),
    )
    .await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    assert!(
        a.body["type"]
            .as_str()
            .unwrap()
            .ends_with("queue-unavailable")
    );
    assert!(
        !a.body.to_string().contains("fake queue"),
        "internal error leaked: {}",
        a.body
    );
    assert!(
        app.store.records.lock().unwrap().is_empty(),
        "status record not deleted"
    );
    assert_eq!(app.store.deleted.lock().unwrap().len(), 1);
    assert_eq!(
        app.store.key("acct_1", "k-1"),
        None,
        "idempotency key not released"
    );
    assert_eq!(*app.store.released.lock().unwrap(), ["k-1"]);

    // The retry with the same key goes through once the queue is back.
    app.queue.fail.store(false, Ordering::SeqCst);
    let a = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "k-1")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(app.queue.count(), 1);
}

#[tokio::test]
async fn redis_down_is_503_and_a_corrupt_record_500() {
    let app = app();
    app.store.unreachable.store(true, Ordering::SeqCst);
    let a = call(&app, post("acct_1", &valid())).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    let a = call(
        &app,
        post_with("acct_1", &valid(), &[("idempotency-key", "k")]),
    )
    .await;
    a.problem(503);
    let a = call(
        &app,
        get("acct_1", &format!("/v1/messages/{}", MessageId::new())),
    )
    .await;
    a.problem(503);
    assert_eq!(app.queue.count(), 0);

    app.store.unreachable.store(false, Ordering::SeqCst);
    app.store.fail.store(true, Ordering::SeqCst);
    let a = call(
        &app,
        get("acct_1", &format!("/v1/messages/{}", MessageId::new())),
    )
    .await;
    a.problem(500);
    assert!(!a.body.to_string().contains("fake store"));
}
