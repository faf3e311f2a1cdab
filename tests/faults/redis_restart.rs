//! Redis restarted in the middle of delivery.
//!
//! The fault stack's Redis persists every write (AOF, fsync always), as a
//! replicated ElastiCache failover keeps its data: buckets, statuses and
//! claims survive the restart. While it is down the consumer fails closed:
//! no token, no call; its records are hidden for a few seconds and come back.

use crate::harness::{Faults, Msg, arrival_wall_us, enqueue, is_2xx, messages, settle};
use anyhow::{Context, Result, ensure};
use integration_tests::{eventually, now_us, unique_account};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn redis_restarted_mid_delivery_fails_closed_and_loses_nothing() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("redis");
    // At 600/min with a burst of 10 this backlog takes about 5 s to send.
    let n = 60;
    let msgs = messages(&account, n);
    let started = Instant::now();
    enqueue(s, &msgs, "medium").await?;

    // Part of the backlog is out: stop Redis in the middle of it, while a
    // call is in flight (held 1 s by the stub), so that its answer comes
    // back to a consumer that cannot reach Redis to record it.
    eventually("the first sends", Duration::from_secs(60), || async {
        let sent = s
            .stub_requests(&account)
            .await?
            .iter()
            .filter(|r| is_2xx(r))
            .count();
        Ok((sent >= 15).then_some(()))
    })
    .await?;
    s.stub_fault(json!({"account": account, "kind": "slow", "delayMs": 1000, "count": 1}))
        .await?;
    let in_flight = eventually("a call in flight", Duration::from_secs(30), || async {
        let reqs = s.stub_requests(&account).await?;
        Ok(reqs
            .iter()
            .find(|r| r["status"] == 0)
            .and_then(|r| r["idempotencyKey"].as_str().map(str::to_owned)))
    })
    .await?;
    f.script(&["redis-stop"]).await?;
    let stopped_us = now_us();
    let down_for = Duration::from_secs(5);
    tokio::time::sleep(down_for).await;
    let restarting_us = now_us();
    f.script(&["redis-start"]).await?;

    // Through the producer as well, right after the restart. Its warm
    // instance's Redis connection died with the server, and redis-rs's
    // ConnectionManager hands the first command's "connection dropped" error
    // to the caller while it reconnects: that request is answered 503 (store
    // unavailable, nothing stored, Retry-After), and the next one is accepted.
    let late = unique_account("redis_post");
    let mut refused = 0;
    let posted = loop {
        let (status, body) = s
            .post_message(
                &late,
                &json!({"recipientId": "fan_1", "content": "after the restart"}),
            )
            .await?;
        if status == 202 {
            break body["messageId"].as_str().context("messageId")?.to_owned();
        }
        ensure!(
            status == 503,
            "POST after the restart answered {status}: {body}"
        );
        refused += 1;
        ensure!(
            refused <= 1,
            "the producer still refuses after Redis is back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut msgs = msgs;
    msgs.push(Msg {
        account: late,
        id: posted,
    });

    let report = settle(&f, &msgs, Duration::from_secs(120)).await?;
    // Fail closed: once Redis was gone nothing reached the stub until it was
    // back (a call that had its token just before may land a moment later).
    let grace = 300_000;
    let while_down = report
        .records
        .iter()
        .filter(|r| (stopped_us + grace..restarting_us).contains(&arrival_wall_us(r)))
        .count();
    let in_flight_status = report.statuses[&in_flight]["status"].clone();
    let failed_closed = f.log_count(&account, "redis unavailable: failing closed")
        + f.log_count(
            &account,
            "limiter unavailable: failing closed, nothing is sent without a token",
        );
    let recorded_later = f.log_count(
        &account,
        "recorded a delivery whose status could not be written at the time",
    );
    let sent_at_stop = report
        .records
        .iter()
        .filter(|r| is_2xx(r) && arrival_wall_us(r) < stopped_us)
        .count();
    eprintln!(
        "[faults] redis restart: {sent_at_stop} of {n} delivered when Redis stopped, down {down_for:?}, \
         {while_down} calls while it was down, {failed_closed} records failed closed (deferred); the call in flight at the stop \
         ended {in_flight_status} ({recorded_later} status recorded later from a copy); first POST after the restart: {refused} x 503 then 202; {report}; total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        sent_at_stop < n,
        "Redis stopped after the backlog was delivered"
    );
    ensure!(
        while_down == 0,
        "{while_down} calls reached the stub while Redis was down"
    );
    ensure!(
        failed_closed > 0,
        "the consumer never met the stopped Redis"
    );
    ensure!(report.sent == n + 1, "every message is sent: {report}");
    Ok(())
}
