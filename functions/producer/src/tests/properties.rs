//! Property tests of the handler: whatever the body, an answer of the contract.

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
