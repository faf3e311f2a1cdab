//! The consumer killed in the middle of a batch.
//!
//! A slow upstream holds the first call of a batch; the consumer process is
//! killed (SIGKILL) while that call is in flight. Its records were received
//! but never deleted, so SQS hands them out again once the visibility
//! timeout ends; by then the claim lease has run out, and the message that
//! was in flight goes again with the same `Idempotency-Key`. The stub saw the
//! killed call hang up (no answer), then exactly one 2xx per message.
//!
//! `cargo lambda watch` (1.9) does not start a function again once its
//! process has exited: the dead instance stays in its pool and every later
//! invocation waits forever. In Lambda a crashed execution environment is
//! replaced on the next invocation, so the harness does what Lambda would:
//! it restarts `cargo lambda watch` (`faults.sh restart lambda`), which starts
//! fresh function processes.

use crate::harness::{Faults, arrival_wall_us, enqueue, is_2xx, messages, settle};
use anyhow::{Result, ensure};
use integration_tests::{eventually, now_us, unique_account};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn consumer_killed_mid_batch_redelivers_exactly_once() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("crash");
    let n = 6;
    // Slow, but within the client's timeout: the first calls of whatever
    // batches hold this account's records are in flight for 1.5 s.
    let delay_ms = 1500;
    s.stub_fault(json!({"account": account, "kind": "slow", "delayMs": delay_ms, "count": 3}))
        .await?;
    let msgs = messages(&account, n);
    let started = Instant::now();
    enqueue(s, &msgs, "high").await?;

    // A call is in flight at the stub (recorded, not yet answered): kill the
    // process serving that invocation.
    let in_flight = eventually(
        "a call in flight at the stub",
        Duration::from_secs(60),
        || async {
            let reqs = s.stub_requests(&account).await?;
            Ok(reqs
                .iter()
                .find(|r| r["status"] == 0)
                .and_then(|r| r["idempotencyKey"].as_str().map(str::to_owned)))
        },
    )
    .await?;
    let victims = f.function_pids("consumer")?;
    ensure!(
        victims.len() == 1,
        "expected one consumer process, found {victims:?}"
    );
    let killed_us = now_us();
    std::process::Command::new("kill")
        .args(["-KILL", &victims[0].to_string()])
        .status()?;
    eventually(
        "the consumer to be gone",
        Duration::from_secs(10),
        || async { Ok(f.function_pids("consumer")?.is_empty().then_some(())) },
    )
    .await?;
    // What Lambda does for a crashed environment: a new one.
    let restart = Instant::now();
    f.script(&["restart", "lambda"]).await?;
    let restarted_in = restart.elapsed();

    let limit = f.visibility * 2 + Duration::from_secs(60);
    let report = settle(&f, &msgs, limit).await?;
    let again = report
        .records
        .iter()
        .find(|r| is_2xx(r) && r["idempotencyKey"] == in_flight.as_str())
        .map(|r| (arrival_wall_us(r).saturating_sub(killed_us)) as f64 / 1e6);
    let unanswered = report.by_status.get(&0).copied().unwrap_or(0);
    eprintln!(
        "[faults] consumer killed mid-batch (pid {}): {unanswered} call(s) cut off, consumer restarted in {:.1}s, \
         the message in flight delivered again {:.1}s after the kill (visibility timeout {:?}); {report}; total {:.1}s",
        victims[0],
        restarted_in.as_secs_f64(),
        again.unwrap_or(f64::NAN),
        f.visibility,
        started.elapsed().as_secs_f64()
    );
    ensure!(
        unanswered >= 1,
        "the killed call should have been cut off at the stub"
    );
    ensure!(report.sent == n, "every message is sent: {report}");
    Ok(())
}
