//! The breaker's half-open probe after an outage: whatever the first message
//! after the open period is (here one of an account the upstream paused), it
//! cannot leave the breaker refusing every later call.

use crate::harness::{Faults, enqueue, messages};
use anyhow::{Result, ensure};
use integration_tests::{eventually, unique_account};
use serde_json::json;
use std::time::{Duration, Instant};

/// Every message of `msgs` has reached one of `statuses`.
async fn all_in(f: &Faults, msgs: &[crate::harness::Msg], statuses: &[&str]) -> Result<bool> {
    for m in msgs {
        let r = f.stack.status_of(&m.account, &m.id).await?;
        let st = r.get("status").map(String::as_str).unwrap_or_default();
        if !statuses.contains(&st) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An outage opens the breaker; after its open period the first messages
/// belong to an account the upstream paused (a 429's `Retry-After`), so the
/// first permit asked for is theirs; a healthy account's messages are then
/// still delivered within seconds. Before the fix, the paused account's
/// message took the half-open probe and never settled it: every later
/// message of every account was deferred for the life of the process.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn a_paused_accounts_message_after_an_outage_does_not_stall_delivery() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let outage = unique_account("outage");
    let paused = unique_account("paused");
    let healthy = unique_account("healthy");
    let max_attempts: u32 = std::env::var("MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    // The outage: 503 for `outage`. Its messages are on their last attempt,
    // so the failures that open the breaker also end them (dead): nothing of
    // the outage is left to come back when the breaker half-opens.
    s.stub_fault(json!({"account": outage, "kind": "status", "status": 503, "message": "outage"}))
        .await?;
    let doomed = messages(&outage, f.breaker_threshold as usize);
    let mut redis = s.redis().await?;
    for m in &doomed {
        let key = format!("of:{{{}}}:msg:{}", m.account, m.id);
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("status")
            .arg("deferred")
            .arg("priority")
            .arg("high")
            .arg("attempts")
            .arg(max_attempts - 1)
            .arg("createdAt")
            .arg("2026-12-01T00:00:00Z")
            .query_async(&mut redis)
            .await?;
    }
    enqueue(s, &doomed, "high").await?;
    eventually(
        "the outage's messages to end dead (the breaker is open)",
        Duration::from_secs(60),
        || async { Ok(all_in(&f, &doomed, &["dead"]).await?.then_some(())) },
    )
    .await?;
    let opened = Instant::now();
    s.stub_clear_faults().await?;

    // The upstream asked `paused` to wait (what a 429 with `Retry-After`
    // leaves in Redis): longer than the healthy account is given below, and
    // short enough that its messages are sent before the case ends, so the
    // next case starts from an empty queue.
    let pause = Duration::from_secs(20);
    let _: () = redis::cmd("SET")
        .arg(format!("of:{{{paused}}}:pause"))
        .arg("1")
        .arg("PX")
        .arg(pause.as_millis() as u64)
        .query_async(&mut redis)
        .await?;

    // Past the open period, the paused account's messages come first.
    tokio::time::sleep(
        (f.breaker_open + Duration::from_millis(500)).saturating_sub(opened.elapsed()),
    )
    .await;
    let held = messages(&paused, 3);
    enqueue(s, &held, "high").await?;
    eventually(
        "the paused account's messages to be deferred",
        Duration::from_secs(30),
        || async { Ok(all_in(&f, &held, &["deferred"]).await?.then_some(())) },
    )
    .await?;

    let fine = messages(&healthy, 3);
    let started = Instant::now();
    enqueue(s, &fine, "high").await?;
    let delivered = eventually(
        "the healthy account's messages to be sent",
        Duration::from_secs(15),
        || async { Ok(all_in(&f, &fine, &["sent"]).await?.then_some(())) },
    )
    .await;
    let took = started.elapsed();
    let paused_calls = s.stub_requests(&paused).await?.len();
    eprintln!(
        "[faults] breaker probe after an outage: healthy messages sent after {:.1}s ({}), paused account's calls {paused_calls}",
        took.as_secs_f64(),
        if delivered.is_ok() {
            "delivered"
        } else {
            "NOT delivered"
        }
    );
    delivered?;
    ensure!(
        paused_calls == 0,
        "the paused account was called during its pause"
    );
    eventually(
        "the paused account's messages to be sent once its pause is over",
        pause + Duration::from_secs(30),
        || async { Ok(all_in(&f, &held, &["sent"]).await?.then_some(())) },
    )
    .await?;
    Ok(())
}
