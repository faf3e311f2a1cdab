//! The contract's "HTTP API (producer)" section, line by line, against the
//! handler with in-memory ports. No AWS, no Redis.

use crate::handler::handle;
use crate::routes::{ENDPOINTS, FALLBACK_STATUSES};
use crate::{App, Settings};
use http::header::{ALLOW, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::auth::Verifier;
use shared::idempotency::{Entry, Polling};
use shared::message::{MessageId, Priority};
use shared::queue::QueueStats;
use shared::store::{Status, StatusRecord};
use shared::telemetry::Metrics;
use std::sync::atomic::Ordering;
use std::time::Duration;
use testkit::{MemBuckets, MemQueue, MemStore};
use time::OffsetDateTime;

const SECRET: &str = "unit-test-secret";

type TestApp = App<MemStore, MemQueue, MemBuckets>;

fn settings() -> Settings {
    Settings {
        enabled: true,
        rollout_percent: 100,
        require_authorizer: false,
        idempotency: Polling {
            wait: Duration::from_millis(300),
            every: Duration::from_millis(20),
        },
        health_timeout: Duration::from_millis(200),
    }
}

fn app_with(settings: Settings) -> TestApp {
    App {
        store: MemStore::default(),
        queue: MemQueue::default(),
        buckets: MemBuckets::default(),
        verifier: Verifier::new(SECRET).expect("a constant, non-empty secret"),
        settings,
        metrics: Metrics::disabled("Test", "producer"),
        clock: shared::clock::Clock::system(),
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

mod auth;
mod campaigns;
mod cancel;
mod get_message;
mod health;
mod idempotency;
mod limits;
mod openapi;
mod post;
mod properties;
mod routing;
mod samples;
mod status;
