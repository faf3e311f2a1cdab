//! The handler against the real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`) and the real SQS-compatible server
//! (`AWS_ENDPOINT_URL_SQS`, required).
//!
//! Each test creates its own queue and uses its own account, so tests run in
//! parallel with each other and with anything else using the same servers.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use http::StatusCode;
use lambda_http::{Body, Request};
use producer::handler::handle;
use producer::{App, Settings};
use serde_json::{Value, json};
use shared::auth::Verifier;
use shared::config::LimiterConfig;
use shared::limiter::RedisLimiter;
use shared::message::{MessageId, Priority, QueueMessage};
use shared::queue::SqsQueue;
use shared::store::RedisStore;
use shared::telemetry::Metrics;
use std::num::NonZeroU32;
use std::time::Duration;

const SECRET: &str = "integration-test-secret";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn sqs_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SQS").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!(
            "AWS_ENDPOINT_URL_SQS is not set: these tests need the SQS-compatible server, e.g. \
             `.venv/bin/moto_server -H 127.0.0.1 -p 4577` and AWS_ENDPOINT_URL_SQS=http://127.0.0.1:4577"
        )
    })
}

/// An SQS client for the local server; region and credentials default to
/// the dummy values the local server accepts.
fn sqs() -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(shared::tls::sdk_http_client())
        .endpoint_url(sqs_endpoint())
        .region(Region::new(env_or("AWS_REGION", "us-east-1")))
        .credentials_provider(Credentials::new(
            env_or("AWS_ACCESS_KEY_ID", "test"),
            env_or("AWS_SECRET_ACCESS_KEY", "test"),
            None,
            None,
            "integration-tests",
        ))
        .build();
    Client::from_conf(config)
}

fn unique(tag: &str) -> String {
    format!("{tag}_{}", uuid::Uuid::new_v4().simple())
}

type RealApp = App<RedisStore, SqsQueue, RedisLimiter>;

/// The contract's defaults: 10 per minute, burst 10.
fn limiter_config() -> LimiterConfig {
    LimiterConfig {
        per_minute: NonZeroU32::new(10).unwrap(),
        burst: NonZeroU32::new(10).unwrap(),
        reserve_medium_percent: 10,
        reserve_low_percent: 20,
        clock: shared::config::LimiterClock::Redis,
    }
}

/// A queue and an account of its own for one test; [`Fixture::cleanup`]
/// removes the queue and the account's Redis keys.
struct Fixture {
    app: RealApp,
    sqs: Client,
    queue_url: String,
    account: String,
    redis: shared::redis_conn::RedisConn,
}

impl Fixture {
    async fn new(tag: &str) -> Self {
        Self::with_queue_url(tag, None).await
    }

    /// `queue_url`: send to this URL instead of the test's queue (to make
    /// SQS refuse).
    async fn with_queue_url(tag: &str, queue_url: Option<String>) -> Self {
        let sqs = sqs();
        let name = unique(&format!("producer-it-{tag}")).replace('_', "-");
        let created = sqs.create_queue().queue_name(&name).send().await.unwrap();
        let real_url = created.queue_url.unwrap();
        let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
        let redis = shared::store::connect(&redis_url).await.unwrap_or_else(|e| {
            panic!("Redis at {redis_url} does not answer ({e}); set REDIS_URL or start redis-server")
        });
        let send_url = queue_url.unwrap_or_else(|| real_url.clone());
        let app = App {
            store: RedisStore::new(redis.clone(), Duration::from_secs(600)),
            queue: SqsQueue::new(sqs.clone(), send_url, None),
            buckets: RedisLimiter::new(redis.clone(), limiter_config()),
            verifier: Verifier::new(SECRET).expect("a constant, non-empty secret"),
            settings: Settings {
                enabled: true,
                rollout_percent: 100,
                require_authorizer: false,
                idempotency: shared::idempotency::Polling {
                    wait: Settings::IDEMPOTENCY_WAIT,
                    every: Settings::IDEMPOTENCY_POLL,
                },
                health_timeout: Settings::HEALTH_TIMEOUT,
            },
            metrics: Metrics::disabled("Test", "producer"),
            clock: shared::clock::Clock::system(),
        };
        Self {
            app,
            sqs,
            queue_url: real_url,
            account: unique("it"),
            redis,
        }
    }

    fn token(&self) -> String {
        let now = shared::now_ms() / 1000;
        format!(
            "Bearer {}",
            shared::auth::sign(SECRET, &self.account, now, 3600).unwrap()
        )
    }

    fn post(&self, body: &Value, headers: &[(&str, &str)]) -> Request {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1/v1/messages")
            .header("authorization", self.token())
            .header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body.to_string())).unwrap()
    }

    fn get(&self, path: &str) -> Request {
        http::Request::builder()
            .method("GET")
            .uri(format!("http://127.0.0.1{path}"))
            .header("authorization", self.token())
            .body(Body::Empty)
            .unwrap()
    }

    async fn visible(&self) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        out.attributes.unwrap()[&QueueAttributeName::ApproximateNumberOfMessages]
            .parse()
            .unwrap()
    }

    /// The account's keys in Redis (a unique account, so KEYS is cheap).
    async fn redis_keys(&self, kind: &str) -> Vec<String> {
        let mut conn = self.redis.clone();
        redis::cmd("KEYS")
            .arg(format!(
                "{}:{{{}}}:{kind}*",
                shared::keys::PREFIX,
                self.account
            ))
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        let keys = self.redis_keys("").await;
        if !keys.is_empty() {
            let mut conn = self.redis.clone();
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
        let _ = self
            .sqs
            .delete_queue()
            .queue_url(&self.queue_url)
            .send()
            .await;
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

async fn call(app: &RealApp, req: Request) -> Answer {
    let (parts, body) = handle(app, req).await.unwrap().into_parts();
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
    json!({"recipientId": "fan_123", "content": "Hello from the integration test", "priority": "high",
           "mediaUrls": ["https://cdn.example.com/a.jpg"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_with_one_key_enqueue_exactly_once() {
    let f = Fixture::new("idem").await;
    let body = valid();
    let requests =
        (0..20).map(|_| call(&f.app, f.post(&body, &[("idempotency-key", "same-key-20")])));
    let answers = futures::future::join_all(requests).await;

    let ids: Vec<&str> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
            a.body["messageId"].as_str().unwrap()
        })
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "different message ids: {ids:?}"
    );
    let fresh = answers
        .iter()
        .filter(|a| a.headers.get("idempotent-replayed").is_none())
        .count();
    assert_eq!(
        fresh, 1,
        "exactly one request should have accepted the message"
    );

    assert_eq!(
        f.visible().await,
        1,
        "the queue must hold exactly one message"
    );
    assert_eq!(f.redis_keys("msg:").await.len(), 1);

    // A later retry with the same key is still a replay; a new body is 409.
    let again = call(&f.app, f.post(&body, &[("idempotency-key", "same-key-20")])).await;
    assert_eq!(again.body["messageId"], ids[0]);
    let mut other = body.clone();
    other["content"] = "changed".into();
    let conflict = call(
        &f.app,
        f.post(&other, &[("idempotency-key", "same-key-20")]),
    )
    .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(f.visible().await, 1);
    f.cleanup().await;
}

#[tokio::test]
async fn an_accepted_message_is_on_the_queue_in_the_v1_format_with_its_attributes() {
    let f = Fixture::new("body").await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let a = call(&f.app, f.post(&valid(), &[("traceparent", tp)])).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = MessageId::parse(a.body["messageId"].as_str().unwrap()).unwrap();

    let received = f
        .sqs
        .receive_message()
        .queue_url(&f.queue_url)
        .message_attribute_names("All")
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let parsed = QueueMessage::parse(m.body.as_deref().unwrap()).unwrap();
    assert_eq!(parsed.message_id, id);
    assert_eq!(parsed.account_id.as_str(), f.account);
    assert_eq!(parsed.recipient_id.as_str(), "fan_123");
    assert_eq!(parsed.content.as_str(), "Hello from the integration test");
    assert_eq!(parsed.priority, Priority::High);
    assert_eq!(
        parsed.media_urls.as_slice(),
        ["https://cdn.example.com/a.jpg"]
    );
    let attrs = m.message_attributes.as_ref().unwrap();
    let attr = |k: &str| attrs.get(k).and_then(|v| v.string_value.as_deref());
    assert_eq!(attr("priority"), Some("high"));
    assert_eq!(attr("accountId"), Some(f.account.as_str()));
    assert_eq!(attr("traceparent"), Some(tp));

    // The status record is readable by its account, and only by it.
    let s = call(&f.app, f.get(&format!("/v1/messages/{id}"))).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["status"], "queued");
    assert_eq!(s.body["priority"], "high");
    assert_eq!(s.body["attempts"], 0);
    assert_eq!(s.body["sentAt"], Value::Null);
    f.cleanup().await;
}

#[tokio::test]
async fn when_sqs_refuses_nothing_is_kept_and_the_key_can_be_retried() {
    let missing = format!(
        "{}/123456789012/{}",
        sqs_endpoint(),
        unique("no-such-queue").replace('_', "-")
    );
    let broken = Fixture::with_queue_url("refuse", Some(missing)).await;
    let a = call(
        &broken.app,
        broken.post(&valid(), &[("idempotency-key", "retry-me")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.headers.get("retry-after").is_some());
    assert!(
        broken.redis_keys("msg:").await.is_empty(),
        "status record left behind"
    );
    assert!(
        broken.redis_keys("idem:").await.is_empty(),
        "idempotency key not released"
    );

    // The same account and key, now with a working queue: accepted once.
    let mut working = Fixture::new("refuse-ok").await;
    working.account = broken.account.clone();
    let a = call(
        &working.app,
        working.post(&valid(), &[("idempotency-key", "retry-me")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(working.visible().await, 1);
    broken.cleanup().await;
    working.cleanup().await;
}

#[tokio::test]
async fn health_and_status_read_the_real_servers() {
    let f = Fixture::new("status").await;
    let h = call(
        &f.app,
        http::Request::get("http://127.0.0.1/health")
            .body(Body::Empty)
            .unwrap(),
    )
    .await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.body);
    assert_eq!(
        h.body,
        json!({"status": "ok", "checks": {"redis": "ok", "sqs": "ok"}})
    );

    for _ in 0..3 {
        assert_eq!(
            call(&f.app, f.post(&valid(), &[])).await.status,
            StatusCode::ACCEPTED
        );
    }
    let s = call(&f.app, f.get("/v1/status")).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["queue"]["visible"], 3);
    assert_eq!(s.body["queue"]["inFlight"], 0);
    assert_eq!(s.body["bucket"]["perMinute"], 10.0);
    // An untouched bucket is full.
    assert_eq!(s.body["bucket"]["tokens"], 10.0);
    assert_eq!(s.body["estimatedDrainSeconds"], 18);
    assert_eq!(s.body["intakeEnabled"], true);

    let missing = format!(
        "{}/123456789012/{}",
        sqs_endpoint(),
        unique("gone").replace('_', "-")
    );
    let broken = Fixture::with_queue_url("health", Some(missing)).await;
    let h = call(
        &broken.app,
        http::Request::get("http://127.0.0.1/health")
            .body(Body::Empty)
            .unwrap(),
    )
    .await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.body["checks"], json!({"redis": "ok", "sqs": "error"}));
    f.cleanup().await;
    broken.cleanup().await;
}

/// Redis down at cold start must not stop the function: the connection is
/// lazy, requests answer 503 meanwhile, and the manager reconnects once
/// Redis is back.
#[tokio::test]
async fn redis_down_is_503_until_it_comes_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let redis = shared::store::connect_lazy(&url).unwrap();
    let mut f = Fixture::new("redis-down").await;
    f.app.store = RedisStore::new(redis.clone(), Duration::from_secs(600));
    f.app.buckets = RedisLimiter::new(redis, limiter_config());

    let a = call(&f.app, f.post(&valid(), &[])).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(
        a.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("5")
    );
    let h = call(
        &f.app,
        http::Request::get("http://127.0.0.1/health")
            .body(Body::Empty)
            .unwrap(),
    )
    .await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_ne!(h.body["checks"]["redis"], "ok");
    assert_eq!(h.body["checks"]["sqs"], "ok");
    assert_eq!(
        f.visible().await,
        0,
        "nothing may be queued while Redis is down"
    );

    let mut server = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be on PATH for this test");
    let mut accepted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a = call(&f.app, f.post(&valid(), &[])).await;
        if a.status == StatusCode::ACCEPTED {
            accepted = Some(a);
            break;
        }
    }
    let _ = server.kill().await;
    assert!(accepted.is_some(), "no 202 within 5 s of Redis coming back");
    assert_eq!(f.visible().await, 1);
    let _ = f.sqs.delete_queue().queue_url(&f.queue_url).send().await;
}
