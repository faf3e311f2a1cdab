//! The contract's "HTTP API (producer)" section, line by line, against the
//! handler with in-memory ports. No AWS, no Redis.

mod fakes;

use crate::handler::handle;
use crate::routes::{ENDPOINTS, FALLBACK_STATUSES};
use crate::{App, Settings};
use fakes::{FakeBuckets, FakeQueue, FakeStore};
use http::header::{ALLOW, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::auth::Verifier;
use shared::message::{MessageId, Priority};
use shared::queue::QueueStats;
use shared::store::{IdempotencyState, Status, StatusRecord};
use shared::telemetry::Metrics;
use std::sync::atomic::Ordering;
use std::time::Duration;
use time::OffsetDateTime;

const SECRET: &str = "unit-test-secret";

type TestApp = App<FakeStore, FakeQueue, FakeBuckets>;

fn settings() -> Settings {
    Settings {
        enabled: true,
        rollout_percent: 100,
        require_authorizer: false,
        idempotency_wait: Duration::from_millis(300),
        idempotency_poll: Duration::from_millis(20),
        health_timeout: Duration::from_millis(200),
    }
}

fn app_with(settings: Settings) -> TestApp {
    App {
        store: FakeStore::default(),
        queue: FakeQueue::default(),
        buckets: FakeBuckets::default(),
        verifier: Verifier::new(SECRET).expect("a constant, non-empty secret"),
        settings,
        metrics: Metrics::disabled("Test", "producer"),
    }
}

fn app() -> TestApp {
    app_with(settings())
}

fn now() -> u64 {
    shared::now_ms() / 1000
}

fn bearer(sub: &str) -> String {
    format!(
        "Bearer {}",
        shared::auth::sign(SECRET, sub, now(), 3600).unwrap()
    )
}

/// A request as `cargo lambda watch` or a test client would send it (no
/// API Gateway request context).
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("https://api.example.com{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

fn post(account: &str, body: &Value) -> Request {
    post_with(account, body, &[])
}

fn post_with(account: &str, body: &Value, extra: &[(&str, &str)]) -> Request {
    let auth = bearer(account);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    request("POST", "/v1/messages", &headers, body.to_string())
}

fn get(account: &str, path: &str) -> Request {
    let auth = bearer(account);
    request(
        "GET",
        path,
        &[("authorization", auth.as_str())],
        Body::Empty,
    )
}

/// An API Gateway HTTP API v2 event whose JWT authorizer verified `sub`.
fn apigw_event(
    method: &str,
    path: &str,
    sub: Option<&str>,
    headers: Value,
    body: Option<&str>,
) -> Request {
    let mut ctx = json!({
        "accountId": "123456789012",
        "apiId": "a1b2c3d4e5",
        "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "test"},
        "requestId": "test-request-id",
        "routeKey": format!("{method} {path}"),
        "stage": "$default",
        "time": "27/Nov/2026:01:00:00 +0000",
        "timeEpoch": 1_795_741_200_000_i64,
    });
    if let Some(sub) = sub {
        ctx["authorizer"] = json!({"jwt": {"claims": {"sub": sub, "iss": "https://auth.example.com/"}, "scopes": null}});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": ctx,
        "isBase64Encoded": false,
    });
    if let Some(body) = body {
        event["body"] = body.into();
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts an RFC 9457 problem with the given status and returns its body.
    fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.header(CONTENT_TYPE), Some("application/problem+json"));
        for member in ["type", "title", "detail"] {
            assert!(
                self.body[member].is_string(),
                "{member} missing: {}",
                self.body
            );
        }
        assert_eq!(self.body["status"], status);
        &self.body
    }

    fn fields(&self) -> Vec<String> {
        self.problem(400)["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e["message"].is_string());
                e["field"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

async fn call(app: &TestApp, req: Request) -> Answer {
    let resp = handle(app, req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = match body {
        Body::Text(s) => serde_json::from_str(&s).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn valid() -> Value {
    json!({"recipientId": "fan_123", "content": "Hello!", "priority": "high", "mediaUrls": ["https://cdn.example.com/a.jpg"]})
}

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

// ---------------------------------------------------------------- 401

#[tokio::test]
async fn no_token_is_401_with_a_bare_bearer_challenge() {
    let app = app();
    for path in [
        "/v1/messages",
        "/v1/status",
        "/v1/messages/019ac2f4-5b6e-7c3a-9d1f-2e4b6a8c0d1e",
    ] {
        let method = if path == "/v1/messages" {
            "POST"
        } else {
            "GET"
        };
        let a = call(
            &app,
            request(
                method,
                path,
                &[("content-type", "application/json")],
                valid().to_string(),
            ),
        )
        .await;
        a.problem(401);
        assert_eq!(a.header(WWW_AUTHENTICATE), Some("Bearer"), "{path}");
    }
    for header in ["Basic dXNlcjpwdw==", "Bearer", "Bearer    ", "token"] {
        let a = call(
            &app,
            request(
                "GET",
                "/v1/status",
                &[("authorization", header)],
                Body::Empty,
            ),
        )
        .await;
        a.problem(401);
        assert_eq!(a.header(WWW_AUTHENTICATE), Some("Bearer"), "{header}");
    }
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let app = app();
    let expired = format!(
        "Bearer {}",
        shared::auth::sign(SECRET, "acct_1", now() - 7200, 3600).unwrap()
    );
    let other_key = format!(
        "Bearer {}",
        shared::auth::sign("other", "acct_1", now(), 3600).unwrap()
    );
    let bad_sub = format!(
        "Bearer {}",
        shared::auth::sign(SECRET, "a{b}", now(), 3600).unwrap()
    );
    let future = format!(
        "Bearer {}",
        shared::auth::sign(SECRET, "acct_1", now() + 3600, 3600).unwrap()
    );
    for (name, header) in [
        ("garbage", "Bearer not-a-jwt".to_owned()),
        ("expired", expired),
        ("signature", other_key),
        ("sub", bad_sub),
        ("nbf", future),
    ] {
        let a = call(
            &app,
            request(
                "GET",
                "/v1/status",
                &[("authorization", &header)],
                Body::Empty,
            ),
        )
        .await;
        a.problem(401);
        let challenge = a.header(WWW_AUTHENTICATE).unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains("error_description=\""),
            "{name}: {challenge}"
        );
    }
    let a = call(
        &app,
        request(
            "GET",
            "/v1/status",
            &[("authorization", "Bearer x.y.z")],
            Body::Empty,
        ),
    )
    .await;
    a.problem(401);
}

#[tokio::test]
async fn authorizer_claims_name_the_account() {
    let app = app();
    // No Authorization header at all: API Gateway already verified the token.
    let headers = json!({"content-type": "application/json"});
    let req = apigw_event(
        "POST",
        "/v1/messages",
        Some("acct_claims"),
        headers,
        Some(&valid().to_string()),
    );
    let a = call(&app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(
        app.queue.sent.lock().unwrap()[0].0.account_id.as_str(),
        "acct_claims"
    );

    // Claims win over a token for another account.
    let headers =
        json!({"content-type": "application/json", "authorization": bearer("acct_token")});
    let req = apigw_event(
        "POST",
        "/v1/messages",
        Some("acct_claims"),
        headers,
        Some(&valid().to_string()),
    );
    assert_eq!(call(&app, req).await.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.queue.sent.lock().unwrap()[1].0.account_id.as_str(),
        "acct_claims"
    );

    // A sub that cannot be an account id is refused.
    let req = apigw_event("GET", "/v1/status", Some("a/b"), json!({}), None);
    let a = call(&app, req).await;
    a.problem(401);
    assert!(
        a.header(WWW_AUTHENTICATE)
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn requiring_the_authorizer_refuses_locally_verified_tokens() {
    let app = app_with(Settings {
        require_authorizer: true,
        ..settings()
    });
    let a = call(&app, post("acct_1", &valid())).await;
    a.problem(401);
    assert_eq!(a.header(WWW_AUTHENTICATE), Some("Bearer"));
    let req = apigw_event(
        "POST",
        "/v1/messages",
        Some("acct_1"),
        json!({"content-type": "application/json"}),
        Some(&valid().to_string()),
    );
    assert_eq!(call(&app, req).await.status, StatusCode::ACCEPTED);
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
        (fp, MessageId::new(), false),
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
    app.store
        .keys
        .lock()
        .unwrap()
        .insert(("acct_1".into(), "slow".into()), (fp.clone(), first, false));
    let waiting = call(
        &app,
        post_with("acct_1", &body, &[("idempotency-key", "slow")]),
    );
    let finish = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let account = shared::message::AccountId::parse("acct_1").unwrap();
        crate::ports::MessageStore::complete_idempotency(&app.store, &account, "slow", &fp, &first)
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
        (fp, MessageId::new(), false),
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
    assert!(matches!(app.store.key("acct_1", "failing"), Some((_, k, true)) if k == id));
}

#[tokio::test]
async fn fake_store_reservations_follow_the_real_semantics() {
    // Guards the fake itself: the handler tests above rely on it.
    let store = FakeStore::default();
    let a = shared::message::AccountId::parse("acct").unwrap();
    let (one, two) = (MessageId::new(), MessageId::new());
    use crate::ports::MessageStore as _;
    assert_eq!(
        store
            .reserve_idempotency(&a, "k", "fp", &one)
            .await
            .unwrap(),
        IdempotencyState::Reserved
    );
    assert_eq!(
        store
            .reserve_idempotency(&a, "k", "fp", &two)
            .await
            .unwrap(),
        IdempotencyState::InProgress
    );
    assert_eq!(
        store
            .reserve_idempotency(&a, "k", "other", &two)
            .await
            .unwrap(),
        IdempotencyState::Conflict
    );
    store
        .complete_idempotency(&a, "k", "fp", &one)
        .await
        .unwrap();
    assert_eq!(
        store
            .reserve_idempotency(&a, "k", "fp", &two)
            .await
            .unwrap(),
        IdempotencyState::Done(one)
    );
}

// ---------------------------------------------------------------- GET message

#[tokio::test]
async fn an_account_reads_its_own_message_with_exactly_the_contract_fields() {
    let app = app();
    let posted = call(&app, post("acct_1", &valid())).await;
    let id = posted.body["messageId"].as_str().unwrap().to_owned();
    let a = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    let mut keys: Vec<&str> = a
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "createdAt",
            "lastError",
            "messageId",
            "priority",
            "sentAt",
            "status",
            "upstreamMessageId"
        ]
    );
    assert_eq!(a.body["messageId"], id);
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["priority"], "high");
    assert_eq!(a.body["attempts"], 0);
    assert!(
        OffsetDateTime::parse(
            a.body["createdAt"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert_eq!(a.body["sentAt"], Value::Null);
    assert_eq!(a.body["upstreamMessageId"], Value::Null);
    assert_eq!(a.body["lastError"], Value::Null);
}

#[tokio::test]
async fn a_sent_message_shows_its_outcome() {
    let app = app();
    let id = MessageId::new();
    let t = OffsetDateTime::from_unix_timestamp(1_795_741_200).unwrap();
    app.store.insert(
        "acct_1",
        StatusRecord {
            message_id: id,
            status: Status::Sent,
            priority: Priority::Low,
            attempts: 2,
            created_at: t,
            sent_at: Some(t + Duration::from_secs(3)),
            upstream_message_id: Some("of_msg_9".into()),
            last_error: Some("upstream 503".into()),
        },
    );
    let a = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
    assert_eq!(
        a.body,
        json!({"messageId": id.to_string(), "status": "sent", "priority": "low", "attempts": 2,
               "createdAt": "2026-11-27T01:00:00Z", "sentAt": "2026-11-27T01:00:03Z",
               "upstreamMessageId": "of_msg_9", "lastError": "upstream 503"})
    );
}

#[tokio::test]
async fn another_accounts_message_is_404_not_403() {
    let app = app();
    let posted = call(&app, post("acct_1", &valid())).await;
    let id = posted.body["messageId"].as_str().unwrap();
    let a = call(&app, get("acct_2", &format!("/v1/messages/{id}"))).await;
    a.problem(404);
    let a = call(
        &app,
        get("acct_1", &format!("/v1/messages/{}", MessageId::new())),
    )
    .await;
    a.problem(404);
}

#[tokio::test]
async fn a_malformed_message_id_is_400() {
    let app = app();
    for id in ["nope", "123", "019ac2f4-5b6e-7c3a-9d1f"] {
        let a = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
        assert!(
            a.problem(400)["type"]
                .as_str()
                .unwrap()
                .ends_with("invalid-message-id")
        );
    }
}

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_shows_queue_bucket_drain_and_intake() {
    let app = app();
    *app.queue.stats.lock().unwrap() = QueueStats {
        visible: 7,
        in_flight: 2,
        delayed: 1,
        dlq_depth: 3,
        oldest_age_secs: None,
    };
    let a = call(&app, get("acct_1", "/v1/status")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        a.body,
        json!({
            "queue": {"visible": 7, "inFlight": 2, "delayed": 1, "oldestMessageAgeSeconds": null, "dlqDepth": 3},
            "bucket": {"tokens": 7.25, "perMinute": 10.0, "burst": 10.0, "pausedForSeconds": 0},
            // 10 messages at 10 per minute.
            "estimatedDrainSeconds": 60,
            "intakeEnabled": true,
        })
    );
}

#[tokio::test]
async fn status_reports_a_pause_and_a_known_oldest_age() {
    let mut app = app();
    app.buckets.view.paused_for = Some(Duration::from_millis(2500));
    app.buckets.view.tokens = 0.0;
    app.queue.stats.lock().unwrap().oldest_age_secs = Some(42);
    let a = call(&app, get("acct_1", "/v1/status")).await;
    assert_eq!(a.body["bucket"]["pausedForSeconds"], 3);
    assert_eq!(a.body["queue"]["oldestMessageAgeSeconds"], 42);
    assert_eq!(a.body["estimatedDrainSeconds"], 0);
}

#[tokio::test]
async fn status_is_503_when_sqs_or_redis_do_not_answer() {
    let app = app();
    app.queue.fail.store(true, Ordering::SeqCst);
    let a = call(&app, get("acct_1", "/v1/status")).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    app.queue.fail.store(false, Ordering::SeqCst);
    app.buckets.fail.store(true, Ordering::SeqCst);
    call(&app, get("acct_1", "/v1/status")).await.problem(503);
}

// ---------------------------------------------------------------- health

#[tokio::test]
async fn health_is_200_when_both_answer_and_needs_no_token() {
    let app = app();
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        a.body,
        json!({"status": "ok", "checks": {"redis": "ok", "sqs": "ok"}})
    );
}

#[tokio::test]
async fn health_is_503_naming_what_failed() {
    let app = app();
    app.store.ping_fails.store(true, Ordering::SeqCst);
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert!(a.problem(503)["detail"].as_str().unwrap().contains("redis"));
    assert!(!a.body["detail"].as_str().unwrap().contains("sqs"));
    assert_eq!(a.body["checks"], json!({"redis": "error", "sqs": "ok"}));

    app.store.ping_fails.store(false, Ordering::SeqCst);
    app.queue.fail.store(true, Ordering::SeqCst);
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert!(a.problem(503)["detail"].as_str().unwrap().contains("sqs"));
    assert_eq!(a.body["checks"], json!({"redis": "ok", "sqs": "error"}));

    app.store.ping_hangs.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        a.problem(503)["checks"],
        json!({"redis": "timeout", "sqs": "error"})
    );
    assert!(a.body["detail"].as_str().unwrap().contains("redis and sqs"));
}

// ---------------------------------------------------------------- routing

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = app();
    for path in ["/", "/v2/messages", "/v1/messages/a/b", "/healthz"] {
        call(&app, get("acct_1", path)).await.problem(404);
    }
    for (method, path, allow) in [
        ("GET", "/v1/messages", "POST"),
        (
            "DELETE",
            "/v1/messages/019ac2f4-5b6e-7c3a-9d1f-2e4b6a8c0d1e",
            "GET",
        ),
        ("POST", "/v1/status", "GET"),
        ("PUT", "/health", "GET"),
    ] {
        let a = call(&app, request(method, path, &[], Body::Empty)).await;
        a.problem(405);
        assert_eq!(a.header(ALLOW), Some(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn cargo_lambda_and_stage_prefixes_are_tolerated() {
    let app = app();
    let a = call(
        &app,
        request("GET", "/lambda-url/producer/health", &[], Body::Empty),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let auth = bearer("acct_1");
    let req = request(
        "POST",
        "/lambda-url/producer/v1/messages/",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        valid().to_string(),
    );
    let a = call(&app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    // Location is the API's own path, whatever prefix the request came through.
    assert!(a.header(LOCATION).unwrap().starts_with("/v1/messages/"));

    let mut staged: Value =
        serde_json::from_str(include_str!("../../../../events/apigw-get-status.json")).unwrap();
    staged["requestContext"]["stage"] = "prod".into();
    staged["rawPath"] = "/prod/v1/status".into();
    let a = call(
        &app,
        lambda_http::request::from_str(&staged.to_string()).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

// ---------------------------------------------------------------- sample events

fn event(json: &str) -> Request {
    lambda_http::request::from_str(json).unwrap()
}

#[tokio::test]
async fn sample_event_post_message_is_accepted_for_acct_1() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-post-message.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let sent = app.queue.sent.lock().unwrap();
    assert_eq!(sent[0].0.account_id.as_str(), "acct_1");
    assert_eq!(sent[0].0.priority, Priority::High);
    assert_eq!(
        sent[0].1.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
}

#[tokio::test]
async fn sample_event_post_invalid_lists_every_field() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-post-invalid.json")),
    )
    .await;
    assert_eq!(
        a.fields(),
        [
            "sendAt",
            "recipientId",
            "content",
            "priority",
            "mediaUrls[0]"
        ]
    );
}

#[tokio::test]
async fn sample_event_get_message_reads_acct_1s_record() {
    let app = app();
    let raw: Value =
        serde_json::from_str(include_str!("../../../../events/apigw-get-message.json")).unwrap();
    let id = MessageId::parse(raw["pathParameters"]["id"].as_str().unwrap()).unwrap();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-message.json")),
    )
    .await;
    a.problem(404);
    app.store.insert(
        "acct_1",
        StatusRecord {
            message_id: id,
            status: Status::Deferred,
            priority: Priority::Medium,
            attempts: 0,
            created_at: OffsetDateTime::from_unix_timestamp(1_795_741_200).unwrap(),
            sent_at: None,
            upstream_message_id: None,
            last_error: None,
        },
    );
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-message.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "deferred");
    assert_eq!(a.body["messageId"], id.to_string());
}

#[tokio::test]
async fn sample_event_get_status_answers() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-status.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["intakeEnabled"], true);
}

// ---------------------------------------------------------------- openapi.yaml

/// `content`'s `pattern` in `openapi.yaml` is exactly the server's rule "not
/// only whitespace" (`Content::parse`: `char::is_whitespace`, Unicode's
/// White_Space): a class of every whitespace character, negated. Rebuilt
/// here from `char::is_whitespace` over all of Unicode and compared as text,
/// so the document cannot drift from the rule (ECMA-262's `\S` would: it
/// differs on U+0085 and U+FEFF).
#[test]
fn openapi_content_pattern_is_the_whitespace_rule() {
    use yaml_rust2::YamlLoader;
    let docs = YamlLoader::load_from_str(include_str!("../../../../openapi.yaml")).unwrap();
    let declared =
        docs[0]["components"]["schemas"]["NewMessage"]["properties"]["content"]["pattern"]
            .as_str()
            .map(str::to_owned);
    let escape = |c: char| match u32::from(c) {
        n @ 0..=0xFF => format!("\\x{n:02X}"),
        n => format!("\\u{n:04X}"),
    };
    let spaces: Vec<char> = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .collect();
    let mut class = String::new();
    let mut i = 0;
    while i < spaces.len() {
        let mut j = i;
        while j + 1 < spaces.len() && u32::from(spaces[j + 1]) == u32::from(spaces[j]) + 1 {
            j += 1;
        }
        if j - i >= 2 {
            class.push_str(&format!("{}-{}", escape(spaces[i]), escape(spaces[j])));
        } else {
            spaces[i..=j]
                .iter()
                .for_each(|c| class.push_str(&escape(*c)));
        }
        i = j + 1;
    }
    assert_eq!(declared, Some(format!("[^{class}]")));
    // And the rule itself: whitespace-only content is refused.
    assert!(shared::message::Content::parse("\u{85}\u{3000} \t").is_err());
    assert!(shared::message::Content::parse("\u{FEFF}").is_ok());
}

/// Every (route, method, status) the handler can answer, from the route
/// table the handler enforces, is documented in `openapi.yaml`.
#[test]
fn openapi_documents_every_route_method_and_status() {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(include_str!("../../../../openapi.yaml")).unwrap();
    let doc = &docs[0];
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true)
    );
    let has_key = |map: &Yaml, status: u16| {
        map.as_hash().is_some_and(|h| {
            h.contains_key(&Yaml::String(status.to_string()))
                || h.contains_key(&Yaml::Integer(i64::from(status)))
        })
    };
    let paths = &doc["paths"];
    for e in ENDPOINTS {
        let op = &paths[e.resource.template()][e.method.to_ascii_lowercase().as_str()];
        assert!(
            !op.is_badvalue(),
            "openapi.yaml lacks {} {}",
            e.method,
            e.resource.template()
        );
        for status in e.statuses {
            assert!(
                has_key(&op["responses"], *status),
                "openapi.yaml lacks status {status} for {} {}",
                e.method,
                e.resource.template()
            );
        }
        // Authenticated operations inherit the global bearer requirement;
        // /health opts out with an empty list.
        let security = &op["security"];
        if e.authenticated {
            assert!(
                security.is_badvalue() || security.as_vec().is_some_and(|v| !v.is_empty()),
                "{} {} must require the bearer token",
                e.method,
                e.resource.template()
            );
        } else {
            assert_eq!(
                security.as_vec().map(Vec::len),
                Some(0),
                "{} must need no auth",
                e.resource.template()
            );
        }
    }
    assert!(
        !doc["security"].is_badvalue(),
        "no global security requirement"
    );
    assert!(!doc["components"]["securitySchemes"]["bearerAuth"].is_badvalue());
    for (status, name) in FALLBACK_STATUSES {
        let r = &doc["components"]["responses"][name];
        assert!(
            !r.is_badvalue(),
            "openapi.yaml lacks components.responses.{name} ({status})"
        );
    }
    // And nothing documented that the table does not know.
    for (path, ops) in paths.as_hash().unwrap() {
        for (method, _) in ops.as_hash().unwrap() {
            let (path, method) = (path.as_str().unwrap(), method.as_str().unwrap());
            if method == "parameters" {
                continue;
            }
            assert!(
                ENDPOINTS
                    .iter()
                    .any(|e| e.resource.template() == path && e.method.eq_ignore_ascii_case(method)),
                "openapi.yaml documents {method} {path}, which the handler does not serve"
            );
        }
    }
}

// ---------------------------------------------------------------- proptest

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            "[a-z_]{1,8}".prop_map(Value::from),
            Just(Value::from("https://cdn.example.com/x.png")),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("recipientId".to_owned()),
                        Just("content".to_owned()),
                        Just("priority".to_owned()),
                        Just("mediaUrls".to_owned()),
                        ".{0,10}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Bodies that are often valid, sometimes nearly, sometimes not JSON.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            (
                "[A-Za-z0-9_-]{0,70}",
                ".{0,60}",
                prop_oneof![Just("low"), Just("medium"), Just("high"), Just("urgent")],
                prop::collection::vec(
                    prop_oneof![
                        8 => Just("https://a.example/x"),
                        1 => Just("http://a.example/x"),
                        1 => Just("nope"),
                    ],
                    0..4,
                ),
            )
                .prop_map(|(r, c, p, m)| {
                    json!({"recipientId": r, "content": c, "priority": p, "mediaUrls": m})
                        .to_string()
                        .into_bytes()
                }),
            prop::collection::vec(any::<u8>(), 0..200),
        ]
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            ".{0,40}".prop_map(String::into_bytes),
            Just(b"application/json".to_vec()),
            Just(b"application/problem+json; charset=utf-8".to_vec()),
            "[0-9]{1,12}".prop_map(String::into_bytes),
        ]
    }

    fn headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
        prop::collection::vec(
            (
                prop_oneof![
                    Just("content-type"),
                    Just("authorization"),
                    Just("idempotency-key"),
                    Just("content-length"),
                    Just("traceparent"),
                    Just("x-anything"),
                ],
                header_value(),
            ),
            0..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_body_and_headers_get_202_or_a_4xx_problem(
            body in body(),
            headers in headers(),
            authed in prop::bool::weighted(0.8),
            json_type in prop::bool::weighted(0.8),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let app = app();
            let mut b = http::Request::builder().method("POST").uri("https://api.example.com/v1/messages");
            if authed {
                b = b.header("authorization", bearer("acct_prop"));
            }
            if json_type {
                b = b.header("content-type", "application/json");
            }
            for (name, value) in &headers {
                if let Ok(v) = http::HeaderValue::from_bytes(value) {
                    b = b.header(*name, v);
                }
            }
            let req = b.body(Body::from(body)).unwrap();
            let resp = rt.block_on(handle(&app, req)).unwrap();
            let status = resp.status();
            let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let text = match resp.body() {
                Body::Text(s) => s.clone(),
                other => panic!("non-text body {other:?}"),
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if status == StatusCode::ACCEPTED {
                prop_assert_eq!(ct, "application/json");
                prop_assert_eq!(app.queue.count(), 1);
                prop_assert!(v["messageId"].is_string());
                // What was enqueued is what the consumer reads back, under
                // the id and Location the client was given, with a record.
                let (queued, _) = app.queue.sent.lock().unwrap()[0].clone();
                let id = queued.message_id.to_string();
                prop_assert_eq!(v["messageId"].as_str(), Some(id.as_str()));
                let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok());
                let expected = format!("/v1/messages/{id}");
                prop_assert_eq!(location, Some(expected.as_str()));
                let back = shared::message::QueueMessage::parse(&queued.to_body());
                prop_assert_eq!(back, Ok(queued.clone()));
                prop_assert!(app.store.record("acct_prop", &queued.message_id).is_some());
            } else {
                prop_assert!(status.is_client_error(), "status {} body {}", status, text);
                prop_assert_eq!(ct, "application/problem+json");
                prop_assert_eq!(v["status"].as_u64(), Some(u64::from(status.as_u16())));
                prop_assert_eq!(app.queue.count(), 0);
                prop_assert!(app.store.records.lock().unwrap().is_empty());
            }
        }

        /// Any method and path (with the `cargo lambda watch` prefix or
        /// not): an answer from the route table, never a panic or a 5xx.
        #[test]
        fn any_method_and_path_get_a_declared_answer(
            method in prop_oneof![
                Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH"), Just("HEAD"), Just("OPTIONS"),
            ],
            prefix in prop_oneof![Just(""), Just("/lambda-url/producer"), Just("/prod")],
            path in prop_oneof![
                Just("/v1/messages".to_owned()),
                Just("/v1/status".to_owned()),
                Just("/health".to_owned()),
                "/v1/messages/[0-9a-f-]{0,40}",
                "/[a-z0-9/._%-]{0,30}",
            ],
            trailing_slash in any::<bool>(),
            body in body(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let app = app();
            let path = format!("{prefix}{path}{}", if trailing_slash { "/" } else { "" });
            let auth = bearer("acct_prop");
            let req = request(
                method,
                &path,
                &[("authorization", auth.as_str()), ("content-type", "application/json")],
                body,
            );
            // The handler itself asserts (in test builds) that the status is
            // one routes::ENDPOINTS declares for the matched route.
            let resp = rt.block_on(handle(&app, req)).unwrap();
            prop_assert!(!resp.status().is_server_error(), "{} {} answered {}", method, path, resp.status());
            match resp.body() {
                Body::Text(s) => prop_assert!(serde_json::from_str::<Value>(s).is_ok()),
                other => prop_assert!(false, "non-text body {:?}", other),
            }
        }

        /// The same body and Idempotency-Key twice: one message, one id.
        #[test]
        fn a_repeated_key_replays_whatever_the_body(body in body(), key in "[!-~]{1,40}") {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let app = app();
            let send = || {
                let auth = bearer("acct_prop");
                let req = request(
                    "POST",
                    "/v1/messages",
                    &[
                        ("authorization", auth.as_str()),
                        ("content-type", "application/json"),
                        ("idempotency-key", key.as_str()),
                    ],
                    body.clone(),
                );
                rt.block_on(handle(&app, req)).unwrap()
            };
            let first = send();
            let second = send();
            prop_assert_eq!(first.status(), second.status());
            if first.status() == StatusCode::ACCEPTED {
                prop_assert_eq!(app.queue.count(), 1);
                prop_assert_eq!(first.headers().get(LOCATION), second.headers().get(LOCATION));
                prop_assert!(second.headers().contains_key("idempotent-replayed"));
            } else {
                prop_assert_eq!(app.queue.count(), 0);
            }
        }
    }
}
