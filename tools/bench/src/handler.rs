//! Intake in process: the producer's real handler (`producer::handler::handle`)
//! on an `App` built with in-memory ports, timed call by call, so p50/p99 are
//! per request. The producer's own fakes live in its `#[cfg(test)]` module
//! and are not reachable from here, so this module has minimal ones: a map
//! for status records and idempotency keys, and a queue that serialises the
//! body (as the SQS adapter does) and counts.
//!
//! Logging is on, in the production format (JSON, as `shared::telemetry::init`
//! configures it) but written to a sink: the per-request log line is part of
//! the handler's cost in Lambda. EMF metrics are off, as `METRICS_DISABLED`
//! makes them locally.

use crate::stats::{median, percentile_sorted, round};
use anyhow::Result;
use lambda_http::{Body, Request};
use producer::ports::{BucketViewer, MessageStore, QueueInfo};
use producer::{App, Settings};
use serde_json::{Value, json};
use shared::auth::Verifier;
use shared::limiter::{BucketView, LimiterError};
use shared::message::{AccountId, MessageId, Priority, QueueMessage};
use shared::queue::{Enqueue, QueueError, QueueStats};
use shared::store::{IdempotencyState, Status, StatusRecord, StoreError};
use shared::telemetry::Metrics;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use time::OffsetDateTime;

const SECRET: &str = "bench-secret";

type IdemEntry = (String, MessageId, bool);

#[derive(Default)]
struct MemStore {
    records: Mutex<HashMap<(String, MessageId), StatusRecord>>,
    keys: Mutex<HashMap<(String, String), IdemEntry>>,
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("lock poisoned".into())
}

impl MessageStore for MemStore {
    async fn put_queued(
        &self,
        account: &AccountId,
        id: &MessageId,
        priority: Priority,
        created_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let record = StatusRecord {
            message_id: *id,
            status: Status::Queued,
            priority,
            attempts: 0,
            created_at,
            sent_at: None,
            upstream_message_id: None,
            last_error: None,
        };
        self.records
            .lock()
            .map_err(|_| poisoned())?
            .insert((account.to_string(), *id), record);
        Ok(())
    }

    async fn delete(&self, account: &AccountId, id: &MessageId) -> Result<(), StoreError> {
        self.records
            .lock()
            .map_err(|_| poisoned())?
            .remove(&(account.to_string(), *id));
        Ok(())
    }

    async fn get(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<StatusRecord>, StoreError> {
        Ok(self
            .records
            .lock()
            .map_err(|_| poisoned())?
            .get(&(account.to_string(), *id))
            .cloned())
    }

    async fn reserve_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<IdempotencyState, StoreError> {
        let mut keys = self.keys.lock().map_err(|_| poisoned())?;
        let entry = keys
            .entry((account.to_string(), key.to_owned()))
            .or_insert_with(|| (fingerprint.to_owned(), *id, false));
        Ok(match entry {
            (fp, _, _) if fp != fingerprint => IdempotencyState::Conflict,
            (_, first, true) => IdempotencyState::Done(*first),
            (_, first, false) if first == id => IdempotencyState::Reserved,
            _ => IdempotencyState::InProgress,
        })
    }

    async fn complete_idempotency(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        self.keys.lock().map_err(|_| poisoned())?.insert(
            (account.to_string(), key.to_owned()),
            (fingerprint.to_owned(), *id, true),
        );
        Ok(())
    }

    async fn release_idempotency(&self, account: &AccountId, key: &str) -> Result<(), StoreError> {
        self.keys
            .lock()
            .map_err(|_| poisoned())?
            .remove(&(account.to_string(), key.to_owned()));
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Default)]
struct MemQueue {
    sent: AtomicU64,
    bytes: AtomicU64,
}

impl Enqueue for MemQueue {
    async fn enqueue(
        &self,
        msg: &QueueMessage,
        _traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        // What the SQS adapter does before the network: the body and its attributes.
        let body = msg.to_body();
        let attrs = shared::queue::message_attributes(msg, None);
        self.bytes
            .fetch_add((body.len() + attrs.len()) as u64, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl QueueInfo for MemQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Ok(QueueStats::default())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

struct MemBuckets;

impl BucketViewer for MemBuckets {
    async fn view(&self, _account: &AccountId) -> Result<BucketView, LimiterError> {
        Ok(BucketView {
            tokens: 10.0,
            per_minute: 10.0,
            burst: 10.0,
            paused_for: None,
        })
    }
}

type BenchApp = App<MemStore, MemQueue, MemBuckets>;

fn app() -> BenchApp {
    App {
        // Room for every record of the run: no rehash in the middle of a call.
        store: MemStore {
            records: Mutex::new(HashMap::with_capacity(200_000)),
            keys: Mutex::new(HashMap::with_capacity(200_000)),
        },
        queue: MemQueue::default(),
        buckets: MemBuckets,
        verifier: Verifier::new(SECRET).expect("a constant, non-empty secret"),
        settings: Settings {
            enabled: true,
            rollout_percent: 100,
            require_authorizer: false,
            idempotency_wait: Settings::IDEMPOTENCY_WAIT,
            idempotency_poll: Settings::IDEMPOTENCY_POLL,
            health_timeout: Settings::HEALTH_TIMEOUT,
        },
        metrics: Metrics::disabled("Bench", "producer"),
    }
}

/// A request as `cargo lambda watch` hands it to the function.
fn request(auth: &str, body: &str, idem: Option<&str>) -> Result<Request> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri("https://api.example.com/v1/messages")
        .header("authorization", auth)
        .header("content-type", "application/json");
    if let Some(k) = idem {
        b = b.header("idempotency-key", k);
    }
    Ok(b.body(Body::from(body.to_owned()))?)
}

/// Times `n` calls one by one; returns sorted microseconds.
async fn sample(
    app: &BenchApp,
    auth: &str,
    body: &str,
    n: usize,
    idempotent: bool,
    round_no: usize,
) -> Result<Vec<f64>> {
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let key = idempotent.then(|| format!("bench-{round_no}-{i}"));
        let req = request(auth, body, key.as_deref())?;
        let started = Instant::now();
        let resp = producer::handler::handle(app, req)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let elapsed = started.elapsed();
        if resp.status() != http::StatusCode::ACCEPTED {
            anyhow::bail!("handler answered {} instead of 202", resp.status());
        }
        drop(resp);
        us.push(elapsed.as_secs_f64() * 1e6);
    }
    us.sort_by(f64::total_cmp);
    Ok(us)
}

pub async fn run(rounds: usize, per_round: usize) -> Result<Value> {
    // The production log format, into a sink.
    shared::telemetry::init_with(std::io::sink, Some("info"));

    let now = shared::now_ms() / 1000;
    let token = shared::auth::sign(SECRET, "bench_acct", now, 3600)?;
    let auth = format!("Bearer {token}");
    let body = json!({
        "recipientId": "fan_123",
        "content": "Hello from the benchmark! A message of ordinary length, with an emoji 🙂.",
        "priority": "high",
        "mediaUrls": ["https://cdn.example.com/a.jpg"],
    })
    .to_string();

    let mut variants = Vec::new();
    for (name, idempotent) in [("post", false), ("post_idempotency_key", true)] {
        let app = app();
        // Warm-up: allocator, caches, lazy statics.
        sample(&app, &auth, &body, 2_000, idempotent, 999).await?;
        let (mut p50s, mut p99s, mut means) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let us = sample(&app, &auth, &body, per_round, idempotent, r).await?;
            p50s.push(percentile_sorted(&us, 50.0));
            p99s.push(percentile_sorted(&us, 99.0));
            means.push(us.iter().sum::<f64>() / us.len().max(1) as f64);
        }
        let sent = app.queue.sent.load(Ordering::Relaxed);
        eprintln!(
            "[bench] intake handler {name}: p50 {:.1} us, p99 {:.1} us ({} calls)",
            median(&p50s),
            median(&p99s),
            sent
        );
        variants.push(json!({
            "name": name,
            "p50_us": round(median(&p50s), 1),
            "p99_us": round(median(&p99s), 1),
            "mean_us": round(median(&means), 1),
            "round_p50_us": p50s.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "round_p99_us": p99s.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "calls_per_round": per_round,
            "enqueued": sent,
        }));
    }
    let head = variants[0].clone();
    Ok(json!({
        "handler_p50_us": head["p50_us"],
        "handler_p99_us": head["p99_us"],
        "rounds": rounds,
        "variants": variants,
        "runtime": "tokio current-thread; one request at a time",
        "timer": "Instant around each producer::handler::handle call",
    }))
}
