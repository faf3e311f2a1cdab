//! The SQS server unreachable while the producer takes requests.
//!
//! The server is paused (SIGSTOP) rather than killed: moto keeps its queues
//! in memory, so a killed server would come back without them, which is not
//! what an SQS outage looks like. A paused one accepts connections (the
//! kernel queues them) and never answers, so the SDK's calls time out, as
//! with an unreachable SQS; SIGCONT brings it back with its state.
//!
//! The producer still answers 202: SQS fails (then its breaker opens) and the
//! message goes to the Redis-stream outbox; the replay (`devctl replay
//! --every 5`, EventBridge in AWS) moves it once SQS is back. A send that
//! timed out may still have reached the paused server, which handles it on
//! resuming: that copy and the outbox's are the same message, and the
//! consumer's claim and status check let only one through.

use crate::harness::{Faults, Msg, SqsPaused, settle};
use anyhow::{Context, Result, ensure};
use integration_tests::{eventually, unique_account};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn sqs_down_while_posting_the_outbox_takes_every_message() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("sqs");
    let n = 8;
    let outbox_before = s.outbox_len().await?;
    let started = Instant::now();

    f.signal("sqs", "STOP")?;
    let paused = SqsPaused(&f);
    let mut msgs = Vec::new();
    let mut latencies = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let (status, body) = s
            .post_message(
                &account,
                &json!({"recipientId": format!("fan_{i}"), "content": format!("sent while SQS is down #{i}")}),
            )
            .await?;
        latencies.push(t.elapsed());
        ensure!(
            status == 202,
            "POST while SQS is down answered {status}: {body}"
        );
        let id = body["messageId"].as_str().context("messageId")?.to_owned();
        msgs.push(Msg {
            account: account.clone(),
            id,
        });
    }
    let in_outbox = s.outbox_len().await? - outbox_before;
    let paused_for = started.elapsed();
    drop(paused); // SIGCONT
    ensure!(
        in_outbox == n as u64,
        "{in_outbox} of {n} accepted messages are in the outbox"
    );

    let report = settle(&f, &msgs, Duration::from_secs(120)).await?;
    eventually(
        "the outbox to be empty",
        Duration::from_secs(30),
        || async { Ok((s.outbox_len().await? == 0).then_some(())) },
    )
    .await?;
    for m in &msgs {
        let (status, v) = s.message_status(&account, &m.id).await?;
        ensure!(status == 200 && v["status"] == "sent", "{}: {v}", m.id);
    }
    let dropped = f.log_count(&account, "already settled; dropping the duplicate delivery");
    let waited = f.log_count(&account, "another delivery holds this message; deferring");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    let fast = latencies
        .iter()
        .filter(|l| **l < Duration::from_millis(500))
        .count();
    eprintln!(
        "[faults] SQS paused: {n} POSTs answered 202 in {:.1}s (slowest {:.1}s, {fast} under 0.5s once the breaker was open), \
         {in_outbox} in the outbox, replayed after resuming; copies the consumer dropped as already sent: {dropped} \
         (and {waited} deferred behind a copy in flight); {report}; total {:.1}s",
        paused_for.as_secs_f64(),
        slowest.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    ensure!(report.sent == n, "every accepted message is sent: {report}");
    Ok(())
}
