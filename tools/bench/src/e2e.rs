//! End to end: POST /v1/messages → the stub's receipt, under the limit (one
//! message per account, so nothing is throttled). Latency is the stub's
//! `receivedAtWallUs` minus the client's clock just before the request.

use crate::stack::{self, now_us};
use crate::stats::{percentile, round};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Args {
    pub prefix: String,
    pub producer_url: String,
    pub stub_url: String,
    pub jwt_secret: String,
    pub messages: usize,
    pub per_second: f64,
    pub timeout: Duration,
}

struct Sent {
    account: String,
    message_id: String,
    sent_us: i64,
    accepted_us: i64,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    account: String,
) -> Result<Option<Sent>> {
    let token = shared::auth::sign(secret, &account, shared::now_ms() / 1000, 3600)?;
    let body = json!({"recipientId": "fan_e2e", "content": "end to end", "priority": "high"});
    let sent_us = now_us();
    let resp = http
        .post(format!("{url}/v1/messages"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .context("POST /v1/messages")?;
    let accepted_us = now_us();
    if resp.status().as_u16() != 202 {
        return Ok(None);
    }
    let v: Value = resp.json().await?;
    Ok(v["messageId"].as_str().map(|id| Sent {
        account,
        message_id: id.to_owned(),
        sent_us,
        accepted_us,
    }))
}

pub async fn run(args: &Args) -> Result<Value> {
    let http = stack::http()?;
    let interval = Duration::from_secs_f64(1.0 / args.per_second.max(0.1));
    let mut tasks = Vec::with_capacity(args.messages);
    let mut tick = tokio::time::interval(interval);
    // Paced, each request on its own task, so a slow one does not delay the schedule.
    for i in 0..args.messages {
        tick.tick().await;
        let account = format!("{}-e2e-{i:04}", args.prefix);
        let (http, url, secret) = (
            http.clone(),
            args.producer_url.clone(),
            args.jwt_secret.clone(),
        );
        tasks.push(tokio::spawn(async move {
            post(&http, &url, &secret, account).await
        }));
    }
    let mut sent = Vec::new();
    let mut rejected = 0;
    for t in tasks {
        match t.await? {
            Ok(Some(s)) => sent.push(s),
            Ok(None) | Err(_) => rejected += 1,
        }
    }

    // Wait for the stub to have every accepted message (bounded).
    let started = Instant::now();
    let mut received: HashMap<String, i64> = HashMap::new();
    let wanted: HashMap<&str, &str> = sent
        .iter()
        .map(|s| (s.message_id.as_str(), s.account.as_str()))
        .collect();
    while started.elapsed() < args.timeout && received.len() < sent.len() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for r in stack::stub_requests(&http, &args.stub_url, None).await? {
            if let Some(k) = r.idempotency_key.as_deref()
                && r.accepted()
                && wanted.contains_key(k)
            {
                received.insert(k.to_owned(), r.received_at_wall_us);
            }
        }
    }
    let e2e_ms: Vec<f64> = sent
        .iter()
        .filter_map(|s| {
            received
                .get(&s.message_id)
                .map(|r| (r - s.sent_us) as f64 / 1000.0)
        })
        .collect();
    let post_ms: Vec<f64> = sent
        .iter()
        .map(|s| (s.accepted_us - s.sent_us) as f64 / 1000.0)
        .collect();
    let p = |v: &[f64], q: f64| percentile(v, q).map(|x| round(x, 1));
    eprintln!(
        "[bench] e2e: {} delivered of {} sent; p50 {:?} ms, p95 {:?} ms",
        e2e_ms.len(),
        sent.len(),
        p(&e2e_ms, 50.0),
        p(&e2e_ms, 95.0)
    );
    Ok(json!({
        "p50_ms": p(&e2e_ms, 50.0),
        "p95_ms": p(&e2e_ms, 95.0),
        "p99_ms": p(&e2e_ms, 99.0),
        "max_ms": p(&e2e_ms, 100.0),
        "post_p50_ms": p(&post_ms, 50.0),
        "post_p95_ms": p(&post_ms, 95.0),
        "messages": args.messages,
        "accepted": sent.len(),
        "rejected": rejected,
        "delivered": e2e_ms.len(),
        "per_second": args.per_second,
        "accounts": args.messages,
    }))
}
