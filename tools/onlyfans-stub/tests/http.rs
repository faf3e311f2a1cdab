//! The stub over real HTTP: each test binds its own server on `127.0.0.1:0`.

use std::time::{Duration, Instant};

use onlyfans_stub::{RequestRecord, Stats, StubConfig};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TOKEN: &str = "test-token";

struct Stub {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// A client for the stub (plain HTTP; reqwest still wants a rustls provider,
/// ring, as the workspace builds it without its aws-lc default).
fn client() -> reqwest::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
}

fn config(rate_per_minute: f64, burst: u32, tolerance_ms: u64) -> StubConfig {
    StubConfig {
        rate_per_minute,
        burst,
        tolerance_ms,
        api_token: TOKEN.to_owned(),
    }
}

impl Stub {
    /// A stub with a limit loose enough not to interfere.
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_with(config(600_000.0, 1000, 100)).await
    }

    async fn start_with(config: StubConfig) -> Result<Self, Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(onlyfans_stub::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            base: format!("http://{addr}"),
            http: client()?,
            stop: Some(stop),
            task,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send_raw(
        &self,
        account: &str,
        key: Option<&str>,
        token: Option<&str>,
        body: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/accounts/{account}/chats/fan_1/messages")))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await
    }

    /// A well-formed call.
    async fn send(&self, account: &str, key: &str) -> reqwest::Result<reqwest::Response> {
        self.send_raw(
            account,
            Some(key),
            Some(TOKEN),
            r#"{"text":"hello","mediaUrls":[]}"#,
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(self.http.get(self.url(path)).send().await?.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> Result<reqwest::Response, reqwest::Error> {
        self.http.post(self.url(path)).json(&body).send().await
    }

    async fn records(&self) -> Result<Vec<RequestRecord>, Box<dyn std::error::Error>> {
        let v = self.get("/__requests").await?;
        Ok(serde_json::from_value(v["requests"].clone())?)
    }

    async fn stats(&self) -> Result<Stats, Box<dyn std::error::Error>> {
        Ok(serde_json::from_value(self.get("/__stats").await?)?)
    }

    async fn add_fault(&self, rule: Value) -> Result<Value, Box<dyn std::error::Error>> {
        let response = self.post("/__faults", rule).await?;
        assert_eq!(response.status(), 201);
        Ok(response.json().await?)
    }

    async fn stop(mut self) -> TestResult {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(3), &mut self.task).await???;
        Ok(())
    }
}

#[tokio::test]
async fn good_send_is_recorded_without_its_text() -> TestResult {
    let stub = Stub::start().await?;
    let wall_us = || time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    let before_us = wall_us();
    let response = stub
        .send_raw(
            "acct_1",
            Some("m-1"),
            Some(TOKEN),
            r#"{"text":"héllo","mediaUrls":["https://cdn.example/a.jpg"]}"#,
        )
        .await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("idempotent-replayed").is_none());
    let body: Value = response.json().await?;
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("ofm_")));
    assert_eq!(body["accountId"], "acct_1");
    assert_eq!(body["recipientId"], "fan_1");
    let created = body["createdAt"].as_str().unwrap_or_default();
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "createdAt {created:?} is RFC 3339"
    );

    let records = stub.records().await?;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.seq, 1);
    assert_eq!(
        (r.account_id.as_str(), r.recipient_id.as_str()),
        ("acct_1", "fan_1")
    );
    assert_eq!(r.idempotency_key.as_deref(), Some("m-1"));
    assert_eq!(r.status, 200);
    assert!(!r.violation && !r.duplicate && r.fault.is_none());
    assert_eq!((r.text_len, r.media_urls), (5, 1));
    let after_us = wall_us();
    assert!((after_us - i128::from(r.received_at_us)).abs() < 10_000_000);
    // The system clock at arrival: between the client's reads around the call.
    let wall = i128::from(r.received_at_wall_us);
    assert!(
        (before_us..=after_us).contains(&wall),
        "{before_us} <= {wall} <= {after_us}"
    );
    let raw = stub.get("/__requests").await?.to_string();
    assert!(!raw.contains("héllo"), "the text itself is never stored");

    let stats = stub.stats().await?;
    assert_eq!(
        (
            stats.total,
            stats.accepted,
            stats.violations,
            stats.duplicates
        ),
        (1, 1, 0, 0)
    );
    assert_eq!(stats.accounts["acct_1"].accepted, 1);
    stub.stop().await
}

#[tokio::test]
async fn auth_key_and_body_errors() -> TestResult {
    let stub = Stub::start().await?;
    let good = r#"{"text":"hi"}"#;

    let r = stub.send_raw("acct_1", Some("k"), None, good).await?;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await?, json!({"error": "unauthorized"}));
    let r = stub
        .send_raw("acct_1", Some("k"), Some("wrong"), good)
        .await?;
    assert_eq!(r.status(), 401);

    let r = stub.send_raw("acct_1", None, Some(TOKEN), good).await?;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await?["error"], "missing_idempotency_key");

    for bad in [
        "",
        "not json",
        r#"{"text":""}"#,
        r#"{"text":"hi","unknown":1}"#,
        r#"{"mediaUrls":[]}"#,
        r#"{"text":42}"#,
        r#"{"text":"hi","mediaUrls":"https://x"}"#,
    ] {
        let r = stub.send_raw("acct_1", Some("k"), Some(TOKEN), bad).await?;
        assert_eq!(r.status(), 400, "body {bad:?}");
        let body: Value = r.json().await?;
        assert_eq!(body["error"], "invalid_body");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // None of these delivered anything, so the key is still free.
    let r = stub
        .send_raw("acct_1", Some("k"), Some(TOKEN), good)
        .await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());

    let records = stub.records().await?;
    let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [401, 401, 400, 400, 400, 400, 400, 400, 400, 400, 200]
    );
    assert_eq!(records[2].idempotency_key, None);
    let stats = stub.stats().await?;
    assert_eq!((stats.total, stats.accepted), (11, 1));
    stub.stop().await
}

#[tokio::test]
async fn status_fault_with_count_expires() -> TestResult {
    let stub = Stub::start().await?;
    let rule = stub
        .add_fault(json!({"kind": "status", "status": 503, "count": 2, "retryAfter": 7, "message": "maintenance"}))
        .await?;
    assert_eq!(rule["remaining"], 2);

    for expected_left in [1, 0] {
        let r = stub.send("acct_1", "m-1").await?;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        assert_eq!(
            r.json::<Value>().await?,
            json!({"error": "service_unavailable", "message": "maintenance"})
        );
        let faults = stub.get("/__faults").await?;
        let left = faults["faults"].as_array().map_or(0, Vec::len);
        assert_eq!(left, usize::from(expected_left > 0));
    }
    // Spent: the next call goes through, and the key was never delivered before.
    let r = stub.send("acct_1", "m-1").await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());

    let records = stub.records().await?;
    assert_eq!(records[0].fault.as_deref(), Some("status"));
    assert_eq!(records[0].status, 503);
    assert_eq!(records[2].fault, None);
    let stats = stub.stats().await?;
    assert_eq!((stats.total, stats.accepted, stats.duplicates), (3, 1, 0));
    stub.stop().await
}

#[tokio::test]
async fn injected_429_defaults_retry_after_and_other_statuses_work() -> TestResult {
    let stub = Stub::start().await?;
    stub.add_fault(json!({"kind": "status", "status": 429, "count": 1}))
        .await?;
    let r = stub.send("acct_1", "a").await?;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await?["error"], "rate_limited");

    for (status, error) in [
        (408, "request_timeout"),
        (400, "bad_request"),
        (403, "forbidden"),
        (404, "not_found"),
        (500, "internal_error"),
    ] {
        stub.add_fault(json!({"kind": "status", "status": status, "count": 1}))
            .await?;
        let r = stub.send("acct_1", "b").await?;
        assert_eq!(r.status(), status);
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(r.json::<Value>().await?["error"], error);
    }
    // An injected 429 is not a violation: the product did nothing wrong.
    let stats = stub.stats().await?;
    assert_eq!((stats.total, stats.violations, stats.accepted), (6, 0, 0));
    stub.stop().await
}

#[tokio::test]
async fn faults_target_one_account_and_first_rule_wins() -> TestResult {
    let stub = Stub::start().await?;
    stub.add_fault(json!({"account": "acct_a", "kind": "status", "status": 500}))
        .await?;
    stub.add_fault(json!({"kind": "status", "status": 502}))
        .await?;
    // acct_a: the first rule; others: the catch-all second one. No count: forever.
    for _ in 0..2 {
        assert_eq!(stub.send("acct_a", "x").await?.status(), 500);
        assert_eq!(stub.send("acct_b", "y").await?.status(), 502);
    }
    let cleared: Value = stub
        .http
        .delete(stub.url("/__faults"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(cleared["cleared"], 2);
    assert_eq!(stub.send("acct_a", "x").await?.status(), 200);

    stub.add_fault(json!({"account": "acct_a", "kind": "status", "status": 500, "count": 1}))
        .await?;
    assert_eq!(stub.send("acct_b", "z").await?.status(), 200);
    assert_eq!(stub.get("/__faults").await?["faults"][0]["remaining"], 1);
    assert_eq!(stub.send("acct_a", "z").await?.status(), 500);
    stub.stop().await
}

#[tokio::test]
async fn slow_fault_delays_then_answers_normally() -> TestResult {
    let stub = Stub::start().await?;
    stub.add_fault(json!({"kind": "slow", "delayMs": 300, "count": 1}))
        .await?;
    let started = Instant::now();
    let r = stub.send("acct_1", "m").await?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    assert_eq!(stub.send("acct_1", "m2").await?.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    let records = stub.records().await?;
    assert_eq!(records[0].fault.as_deref(), Some("slow"));
    assert_eq!(records[0].status, 200);
    assert_eq!(stub.stats().await?.accepted, 2);
    stub.stop().await
}

#[tokio::test]
async fn reset_fault_drops_the_connection() -> TestResult {
    let stub = Stub::start().await?;
    stub.add_fault(json!({"kind": "reset", "count": 1})).await?;
    let started = Instant::now();
    let outcome = stub.send("acct_1", "m").await;
    let Err(error) = outcome else {
        panic!("expected a connection error, got {outcome:?}");
    };
    assert!(
        !error.is_timeout(),
        "dropped at once, not timed out: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // The same client recovers on a new connection; nothing was delivered before.
    let r = stub.send("acct_1", "m").await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let records = stub.records().await?;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].fault.as_deref(), Some("reset"));
    assert_eq!(records[0].status, 0);
    assert!(records[0].fault_id.is_some());
    let stats = stub.stats().await?;
    assert_eq!((stats.total, stats.accepted, stats.duplicates), (2, 1, 0));
    stub.stop().await
}

#[tokio::test]
async fn reset_fault_without_kill_switch_still_drops() -> TestResult {
    // The bare router under plain axum::serve: the fallback aborts the body.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = onlyfans_stub::StubState::new(config(600_000.0, 1000, 100));
    let server =
        tokio::spawn(async move { axum::serve(listener, onlyfans_stub::router(state)).await });
    let http = client()?;
    let base = format!("http://{addr}");
    let r = http
        .post(format!("{base}/__faults"))
        .json(&json!({"kind": "reset"}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let outcome = http
        .post(format!("{base}/v1/accounts/a/chats/f/messages"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "k")
        .body(r#"{"text":"x"}"#)
        .send()
        .await;
    match outcome {
        Err(error) => assert!(!error.is_timeout(), "{error}"),
        // hyper may have flushed the head before the body failed; then the
        // body read must fail.
        Ok(response) => assert!(response.bytes().await.is_err()),
    }
    server.abort();
    Ok(())
}

#[tokio::test]
async fn idempotent_replay_is_marked_duplicate() -> TestResult {
    let stub = Stub::start().await?;
    let first = stub.send("acct_1", "m-1").await?;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await?;
    let again = stub.send("acct_1", "m-1").await?;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await?, first);
    // Keys are per account.
    let other = stub.send("acct_2", "m-1").await?;
    assert!(other.headers().get("idempotent-replayed").is_none());

    let records = stub.records().await?;
    let dup: Vec<bool> = records.iter().map(|r| r.duplicate).collect();
    assert_eq!(dup, [false, true, false]);
    let stats = stub.stats().await?;
    assert_eq!((stats.total, stats.accepted, stats.duplicates), (3, 2, 1));
    assert_eq!(stats.accounts["acct_1"].duplicates, 1);
    assert_eq!(stats.accounts["acct_2"].duplicates, 0);
    stub.stop().await
}

#[tokio::test]
async fn concurrent_same_key_delivers_once() -> TestResult {
    let stub = Stub::start().await?;
    let calls = (0..8).map(|_| stub.send("acct_1", "same"));
    let results = futures::future::join_all(calls).await;
    let mut ids = Vec::new();
    for r in results {
        let r = r?;
        assert_eq!(r.status(), 200);
        ids.push(r.json::<Value>().await?["id"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let stats = stub.stats().await?;
    assert_eq!((stats.accepted, stats.duplicates), (1, 7));
    stub.stop().await
}

#[tokio::test]
async fn violations_are_detected_with_a_fast_rate() -> TestResult {
    // 300/min = one token per 200 ms, bucket of 2, 10 ms tolerance.
    let stub = Stub::start_with(config(300.0, 2, 10)).await?;
    assert_eq!(stub.send("acct_1", "1").await?.status(), 200);
    assert_eq!(stub.send("acct_1", "2").await?.status(), 200);
    let third = stub.send("acct_1", "3").await?;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    assert_eq!(
        third.json::<Value>().await?,
        json!({"error": "rate_limited"})
    );
    // Another account has its own bucket.
    assert_eq!(stub.send("acct_2", "1").await?.status(), 200);

    // The violating call still counted: 4 calls in [0, t] need t >= 390 ms.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(stub.send("acct_1", "3").await?.status(), 200);

    let records = stub.records().await?;
    let v: Vec<(bool, u16)> = records.iter().map(|r| (r.violation, r.status)).collect();
    assert_eq!(
        v,
        [
            (false, 200),
            (false, 200),
            (true, 429),
            (false, 200),
            (false, 200)
        ]
    );
    let stats = stub.stats().await?;
    assert_eq!((stats.violations, stats.accepted), (1, 4));
    assert_eq!(stats.accounts["acct_1"].violations, 1);
    assert_eq!(stats.accounts["acct_2"].violations, 0);
    stub.stop().await
}

#[tokio::test]
async fn violation_comes_before_auth_and_faults() -> TestResult {
    let stub = Stub::start_with(config(6.0, 1, 0)).await?;
    stub.add_fault(json!({"kind": "status", "status": 500, "count": 1}))
        .await?;
    // First call: conforming, gets the fault.
    assert_eq!(stub.send("acct_1", "1").await?.status(), 500);
    // Second, immediately, unauthenticated: still judged first.
    let r = stub.send_raw("acct_1", Some("2"), None, "{}").await?;
    assert_eq!(r.status(), 429);
    let stats = stub.stats().await?;
    assert_eq!(stats.violations, 1);
    stub.stop().await
}

#[tokio::test]
async fn a_client_pacing_itself_never_violates() -> TestResult {
    let stub = Stub::start_with(config(600.0, 2, 20)).await?;
    for i in 0..2 {
        assert_eq!(stub.send("acct_1", &format!("b{i}")).await?.status(), 200);
    }
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert_eq!(stub.send("acct_1", &format!("p{i}")).await?.status(), 200);
    }
    assert_eq!(stub.stats().await?.violations, 0);
    stub.stop().await
}

#[tokio::test]
async fn reset_clears_everything_and_can_set_the_limit() -> TestResult {
    let stub = Stub::start().await?;
    stub.send("acct_1", "k").await?;
    stub.send("acct_1", "k").await?;
    stub.add_fault(json!({"kind": "reset"})).await?;
    assert_eq!(stub.stats().await?.total, 2);

    let r = stub
        .post(
            "/__reset",
            json!({"ratePerMinute": 6.0, "burst": 1, "toleranceMs": 0}),
        )
        .await?;
    assert_eq!(r.status(), 200);
    let stats = stub.stats().await?;
    assert_eq!(
        (
            stats.total,
            stats.accepted,
            stats.violations,
            stats.duplicates
        ),
        (0, 0, 0, 0)
    );
    assert!(stats.accounts.is_empty());
    assert_eq!(
        serde_json::to_value(stats.config)?,
        json!({"ratePerMinute": 6.0, "burst": 1, "toleranceMs": 0})
    );
    assert!(stub.records().await?.is_empty());
    assert_eq!(stub.get("/__faults").await?, json!({"faults": []}));

    // Idempotency memory is gone too, and the new limit applies.
    let r = stub.send("acct_1", "k").await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(stub.send("acct_1", "k2").await?.status(), 429);
    let records = stub.records().await?;
    assert_eq!(records[0].seq, 1);

    // Reset with no body keeps the limit.
    let r = stub.http.post(stub.url("/__reset")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(stub.stats().await?.config.burst, 1);
    stub.stop().await
}

#[tokio::test]
async fn config_changes_without_clearing() -> TestResult {
    let stub = Stub::start_with(config(600.0, 1, 0)).await?;
    assert_eq!(stub.send("acct_1", "1").await?.status(), 200);
    let r = stub
        .http
        .put(stub.url("/__config"))
        .json(&json!({"burst": 5}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["config"]["burst"], 5);
    assert_eq!(stub.send("acct_1", "2").await?.status(), 200);
    let stats = stub.stats().await?;
    assert_eq!((stats.total, stats.violations), (2, 0));
    assert_eq!(stats.config.rate_per_minute, 600.0);

    for bad in [
        json!({"ratePerMinute": -1.0}),
        json!({"burst": "x"}),
        json!({"nope": 1}),
    ] {
        let r = stub
            .http
            .put(stub.url("/__config"))
            .json(&bad)
            .send()
            .await?;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await?["error"], "invalid_body");
    }
    assert_eq!(stub.get("/__config").await?["config"]["burst"], 5);
    stub.stop().await
}

#[tokio::test]
async fn requests_filter_by_account_and_seq() -> TestResult {
    let stub = Stub::start().await?;
    for (account, key) in [("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")] {
        stub.send(account, key).await?;
    }
    let only_a = stub.get("/__requests?account=a").await?;
    let seqs: Vec<u64> = only_a["requests"]
        .as_array()
        .map(|l| l.iter().filter_map(|r| r["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(seqs, [1, 3]);
    let since = stub.get("/__requests?since_seq=2").await?;
    let keys: Vec<&str> = since["requests"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| r["idempotencyKey"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(keys, ["3", "4"]);
    let both = stub.get("/__requests?account=b&since_seq=3").await?;
    assert_eq!(both["requests"].as_array().map(Vec::len), Some(1));
    let record = &both["requests"][0];
    for field in [
        "seq",
        "accountId",
        "recipientId",
        "idempotencyKey",
        "receivedAtUs",
        "receivedAtWallUs",
        "status",
        "violation",
        "duplicate",
        "fault",
        "textLen",
        "mediaUrls",
    ] {
        assert!(record.get(field).is_some(), "record has {field}");
    }
    let r = stub
        .http
        .get(stub.url("/__requests?since_seq=x"))
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    stub.stop().await
}

#[tokio::test]
async fn control_validation_health_and_unknown_routes() -> TestResult {
    let stub = Stub::start().await?;
    let health = stub.http.get(stub.url("/health")).send().await?;
    assert_eq!(health.status(), 200);

    let r = stub.http.get(stub.url("/nope")).send().await?;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await?["error"], "not_found");
    let r = stub
        .http
        .get(stub.url("/v1/accounts/a/chats/f/messages"))
        .send()
        .await?;
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await?["error"], "method_not_allowed");

    for bad in [
        json!({"kind": "status"}),
        json!({"kind": "status", "status": 200}),
        json!({"kind": "slow"}),
        json!({"kind": "slow", "delayMs": 10, "status": 500}),
        json!({"kind": "boom"}),
        json!({"kind": "reset", "count": 0}),
        json!({"kind": "reset", "extra": true}),
    ] {
        let r = stub.post("/__faults", bad.clone()).await?;
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(stub.get("/__faults").await?, json!({"faults": []}));
    // Control calls are not recorded.
    assert_eq!(stub.stats().await?.total, 0);
    stub.stop().await
}

#[tokio::test]
async fn serve_stops_when_asked() -> TestResult {
    let stub = Stub::start().await?;
    assert_eq!(stub.send("acct_1", "m").await?.status(), 200);
    let base = stub.base.clone();
    stub.stop().await?;
    let after = client()?.get(format!("{base}/health")).send().await;
    assert!(after.is_err(), "no longer listening");
    Ok(())
}

#[tokio::test]
async fn an_account_is_judged_against_its_own_limit() -> TestResult {
    // Global: loose. acct_slow: 60/min, burst 2 (one token per second).
    let stub = Stub::start_with(config(600_000.0, 1000, 10)).await?;
    let url = stub.url("/__accounts/acct_slow/limit");
    let put = stub
        .http
        .put(&url)
        .json(&json!({"ratePerMinute": 60.0, "burst": 2}))
        .send()
        .await?;
    assert_eq!(put.status(), 200);
    assert_eq!(
        stub.get("/__accounts/acct_slow/limit").await?["limit"],
        json!({"ratePerMinute": 60.0, "burst": 2})
    );
    assert_eq!(stub.send("acct_slow", "1").await?.status(), 200);
    assert_eq!(stub.send("acct_slow", "2").await?.status(), 200);
    assert_eq!(stub.send("acct_slow", "3").await?.status(), 429);
    // Other accounts keep the global limit.
    for i in 0..5 {
        assert_eq!(stub.send("acct_fast", &i.to_string()).await?.status(), 200);
    }
    // Kept across a reset (it is configuration), removed by DELETE.
    assert_eq!(stub.post("/__reset", json!({})).await?.status(), 200);
    assert_eq!(stub.send("acct_slow", "a").await?.status(), 200);
    assert_eq!(stub.send("acct_slow", "b").await?.status(), 200);
    assert_eq!(stub.send("acct_slow", "c").await?.status(), 429);
    let del = stub.http.delete(&url).send().await?;
    assert_eq!(del.json::<Value>().await?["removed"], true);
    assert_eq!(stub.send("acct_slow", "d").await?.status(), 200);
    assert_eq!(
        stub.get("/__accounts/acct_slow/limit").await?["limit"],
        Value::Null
    );
    // Bad bodies are refused.
    for body in [
        json!({"ratePerMinute": 0.0, "burst": 1}),
        json!({"ratePerMinute": 1.0, "burst": 0}),
        json!({"burst": 1}),
    ] {
        let r = stub.http.put(&url).json(&body).send().await?;
        assert_eq!(r.status(), 400, "{body}");
    }
    stub.stop().await
}
