//! The producer's HTTP handler on arbitrary Lambda HTTP events.
//!
//! The input is the event JSON as the Lambda runtime hands it over: API
//! Gateway HTTP API v2, the only kind the producer's `lambda_http` is built
//! to read. Whatever parses as such an event is turned into a request by
//! `lambda_http` itself, exactly as at run time, and goes through
//! `producer::handler::handle` with the in-memory ports of the `testkit` crate.
//!
//! `lambda_http`'s event-to-request conversion panics (`unwrap`/`expect`) on
//! events API Gateway never sends: a Host or `x-forwarded-proto` that makes
//! no URL, a raw query string that is no URI, a body flagged base64 that is
//! not. Those are `lambda_http`'s, not the producer's, and under the Lambda
//! runtime they become an invocation error, not a crash; [`converts`] leaves
//! such events out so the fuzzer spends its time on the handler.
//!
//! With every port healthy, each request must get an answer (no panic, no
//! `Err`), never a 5xx, only a status `routes` declares for the route, a JSON
//! body, and an RFC 9457 problem for every non-2xx. A 202 must have put
//! exactly one message on the queue whose body the consumer reads back
//! unchanged; any other answer must have left nothing queued or stored.
//! A 202 for a request with an `Idempotency-Key` is sent again and must be
//! replayed: same message id, nothing enqueued twice.

#![no_main]

use base64::Engine;
use http::StatusCode;
use http::header::{CONTENT_TYPE, LOCATION};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use libfuzzer_sys::fuzz_target;
use producer::handler::{IDEMPOTENT_REPLAYED, handle};
use producer::routes::{self, Routing};
use producer::{App, Settings};
use serde_json::Value;
use shared::auth::Verifier;
use shared::clock::Clock;
use shared::idempotency::Polling;
use shared::message::{MessageId, Priority, QueueMessage};
use shared::store::{Status, StatusRecord};
use shared::telemetry::Metrics;
use std::sync::OnceLock;
use std::time::Duration;
use testkit::{MemBuckets, MemQueue, MemStore};
use time::OffsetDateTime;

/// `AUTH_JWT_SECRET`'s local default: the bearer tokens in `events/` verify.
const SECRET: &str = "local-dev-jwt-secret-change-me";
/// The record `events/apigw-get-message.json` reads.
const SAMPLE_ACCOUNT: &str = "acct_1";
const SAMPLE_ID: &str = "019ac2f4-5b6e-7c3a-9d1f-2e4b6a8c0d1e";

type FuzzApp = App<MemStore, MemQueue, MemBuckets>;

fn app() -> FuzzApp {
    let store = MemStore::default();
    let id = MessageId::parse(SAMPLE_ID).unwrap();
    store.insert(
        SAMPLE_ACCOUNT,
        StatusRecord {
            message_id: id,
            status: Status::Sent,
            priority: Priority::High,
            attempts: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            sent_at: Some(OffsetDateTime::UNIX_EPOCH),
            upstream_message_id: Some("up_1".into()),
            last_error: None,
            recipient_id: Some("fan_1".into()),
            campaign_id: None,
            send_at: None,
            slot_at: None,
        },
    );
    App {
        store,
        queue: MemQueue::default(),
        buckets: MemBuckets::default(),
        verifier: Verifier::new(SECRET).expect("a constant, non-empty secret"),
        settings: Settings {
            enabled: true,
            rollout_percent: 100,
            require_authorizer: false,
            idempotency: Polling {
                wait: Duration::from_millis(10),
                every: Duration::from_millis(5),
            },
            health_timeout: Duration::from_millis(100),
        },
        metrics: Metrics::disabled("Fuzz", "producer"),
        clock: Clock::system(),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime")
    })
}

struct Answer {
    status: StatusCode,
    content_type: String,
    location: Option<String>,
    replayed: bool,
    body: Value,
}

fn call(app: &FuzzApp, req: Request) -> Answer {
    let resp = runtime()
        .block_on(handle(app, req))
        .unwrap_or_else(|e| panic!("handler returned Err: {e}"));
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let text = match resp.body() {
        Body::Text(s) => s,
        other => panic!("{} with a non-text body {other:?}", resp.status()),
    };
    Answer {
        status: resp.status(),
        content_type: header(CONTENT_TYPE).unwrap_or_default(),
        location: header(LOCATION),
        replayed: resp.headers().contains_key(IDEMPOTENT_REPLAYED),
        body: serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}")),
    }
}

/// Whether `lambda_http` 1.3 turns this event into a request without
/// panicking: the checks its `into_api_gateway_v2_request` and
/// `build_request_uri` make with `unwrap`/`expect`, made fallibly.
fn converts(ev: &ApiGatewayV2httpRequest) -> bool {
    let host = ev
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(ev.request_context.domain_name.as_deref());
    let raw_path = ev.raw_path.as_deref().unwrap_or_default();
    let path = match ev.request_context.stage.as_deref() {
        None | Some("$default") => raw_path.to_owned(),
        Some(stage) if raw_path.starts_with(&format!("/{stage}/")) => raw_path.to_owned(),
        Some(stage) => format!("/{stage}{raw_path}"),
    };
    let mut uri = match host {
        None => match url::Url::parse(&format!("http://localhost{path}")) {
            Ok(u) => u.path().to_owned(),
            Err(_) => return false,
        },
        Some(host) => {
            let scheme = ev
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("https");
            match url::Url::parse(&format!("{scheme}://{host}{path}")) {
                Ok(u) => u.to_string(),
                Err(_) => return false,
            }
        }
    };
    if let Some(q) = ev.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.push_str(q);
    }
    if http::Uri::try_from(uri).is_err() {
        return false;
    }
    match (&ev.body, ev.is_base64_encoded) {
        (Some(b), true) => base64::engine::general_purpose::STANDARD.decode(b).is_ok(),
        _ => true,
    }
}

/// `FUZZ_TRACE=1` prints each answer (to see what seeds reach).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

/// The statuses `routes` declares for this request's route (what the
/// handler asserts in test builds only), or the fallback 404/405.
fn declared(req: &Request) -> Vec<u16> {
    let path = match req.raw_http_path() {
        "" => req.uri().path(),
        raw => raw,
    };
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.as_deref(),
        _ => None,
    };
    match routes::route(req.method(), path, stage) {
        Routing::Found(endpoint, _) => endpoint.statuses.to_vec(),
        Routing::MethodNotAllowed { .. } => vec![405],
        Routing::NotFound => vec![404],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = std::str::from_utf8(data) else {
        return;
    };
    match serde_json::from_str::<ApiGatewayV2httpRequest>(event) {
        Ok(ev) if converts(&ev) => {}
        _ => return,
    }
    let Ok(req) = lambda_http::request::from_str(event) else {
        return;
    };
    let has_key = req.headers().contains_key("idempotency-key");
    let declared = declared(&req);
    let app = app();
    let records_before = app.store.records.lock().unwrap().len();

    let a = call(&app, req);
    let code = a.status.as_u16();
    if trace() {
        eprintln!("http_request: {code} {}", a.body);
    }
    assert!(
        !a.status.is_server_error(),
        "{code} with every port healthy: {}",
        a.body
    );
    assert!(
        declared.contains(&code),
        "{code} is not among the statuses routes declares for this request: {declared:?}"
    );

    let sent: Vec<QueueMessage> = app
        .queue
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(m, _)| m.clone())
        .collect();
    if a.status.is_success() {
        assert_eq!(a.content_type, "application/json");
    } else {
        assert_eq!(a.content_type, "application/problem+json");
        assert_eq!(
            a.body["status"].as_u64(),
            Some(u64::from(code)),
            "{}",
            a.body
        );
        for member in ["type", "title", "detail"] {
            assert!(
                a.body[member].is_string(),
                "problem without {member}: {}",
                a.body
            );
        }
    }

    if a.status == StatusCode::ACCEPTED {
        assert_eq!(sent.len(), 1, "202 but {} messages enqueued", sent.len());
        let queued = &sent[0];
        let id = queued.message_id.to_string();
        assert_eq!(a.body["messageId"].as_str(), Some(id.as_str()));
        assert_eq!(
            a.location.as_deref(),
            Some(format!("/v1/messages/{id}").as_str())
        );
        assert!(!a.replayed);
        // The consumer reads what the producer wrote, unchanged.
        let back = QueueMessage::parse(&queued.to_body()).expect("producer enqueued poison");
        assert_eq!(&back, queued);
        assert!(
            app.store
                .records
                .lock()
                .unwrap()
                .contains_key(&(queued.account_id.to_string(), queued.message_id)),
            "202 without a queued record"
        );

        if has_key {
            // The same request again is replayed, not enqueued again.
            let again = lambda_http::request::from_str(event).expect("parsed once already");
            let b = call(&app, again);
            assert_eq!(
                b.status,
                StatusCode::ACCEPTED,
                "retry with the same key: {}",
                b.body
            );
            assert!(b.replayed, "retry with the same key not marked as replayed");
            assert_eq!(b.body["messageId"], a.body["messageId"]);
            assert_eq!(
                app.queue.sent.lock().unwrap().len(),
                1,
                "retry with the same key enqueued again"
            );
        }
    } else {
        assert!(sent.is_empty(), "{code} but a message was enqueued");
        assert_eq!(
            app.store.records.lock().unwrap().len(),
            records_before,
            "{code} but a record was left"
        );
    }
});
