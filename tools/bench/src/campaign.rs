//! `POST /v1/campaigns` with 1,000 recipients through the running stack: the
//! answer's latency (p50, p95) and how many messages a second it stores. Each
//! round is a campaign of its own account, scheduled an hour ahead so none of
//! it competes with the other measurements for the stub, and cancelled once
//! measured.
//!
//! Locally the figure is bound by the SQS stand-in: moto answered one
//! `SendMessageBatch` in 30-190 ms on the shared 2-core machine (a single
//! `SendMessage` costs about the same), and more slowly as its queue grows,
//! so 100 calls take seconds there; SQS itself answers in tens of ms.
//! Measured with `bench campaign --rounds 3` on a fresh local stack
//! (2026-12-02, stack at nice 19 beside other builds): p50 20.4 s, p95
//! 23.5 s; on a stack holding ~3,000 more delayed messages, 27-64 s a round.

use crate::stack::{self, now_us};
use crate::stats::{percentile, round};
use anyhow::Result;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

pub struct Args {
    pub prefix: String,
    pub producer_url: String,
    pub jwt_secret: String,
    pub rounds: usize,
    pub recipients: usize,
}

pub async fn run(args: &Args) -> Result<Value> {
    let http = stack::http()?;
    let send_at = (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).format(&Rfc3339)?;
    let recipients: Vec<String> = (0..args.recipients)
        .map(|i| format!("fan_{i:05}"))
        .collect();
    let body = json!({
        "content": "campaign benchmark",
        "priority": "low",
        "sendAt": send_at,
        "recipientIds": recipients,
    });
    let mut ms = Vec::with_capacity(args.rounds);
    let mut stored = 0u64;
    let mut failed = 0usize;
    for i in 0..args.rounds {
        let account = format!("{}-camp-{i:03}", args.prefix);
        let token = shared::auth::sign(&args.jwt_secret, &account, shared::now_ms() / 1000, 3600)?;
        let started = now_us();
        let resp = match http
            .post(format!("{}/v1/campaigns", args.producer_url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("[bench] campaign round {i}: no answer ({e})");
                failed += 1;
                continue;
            }
        };
        let took_ms = (now_us() - started) as f64 / 1000.0;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 202 {
            // Counted, not fatal: the local SQS stand-in can be slower than
            // `cargo lambda watch`'s 30 s invocation timeout.
            eprintln!("[bench] campaign round {i}: {status} after {took_ms:.0} ms");
            failed += 1;
            continue;
        }
        stored += v["accepted"].as_u64().unwrap_or(0);
        ms.push(took_ms);
        if let Some(id) = v["campaignId"].as_str() {
            let _ = http
                .delete(format!("{}/v1/campaigns/{id}", args.producer_url))
                .bearer_auth(&token)
                .send()
                .await;
        }
    }
    let total_s: f64 = ms.iter().sum::<f64>() / 1000.0;
    let p = |q: f64| percentile(&ms, q).map(|x| round(x, 1));
    eprintln!(
        "[bench] campaign: {} rounds of {} recipients; p50 {:?} ms, p95 {:?} ms",
        args.rounds,
        args.recipients,
        p(50.0),
        p(95.0)
    );
    Ok(json!({
        "p50_ms": p(50.0),
        "p95_ms": p(95.0),
        "max_ms": p(100.0),
        "messages_per_s": (total_s > 0.0).then(|| round(stored as f64 / total_s, 0)),
        "rounds": args.rounds,
        "recipients": args.recipients,
        "stored": stored,
        "failed_rounds": failed,
    }))
}
