//! A misbehaving OnlyFans API, each fault as the contract says it ends:
//! 429 waits (no attempt), 5xx/timeouts/dropped or refused connections are
//! retried with backoff up to MAX_ATTEMPTS, then dead with the reason; and
//! the circuit breaker stops calling an upstream that keeps failing.

use crate::harness::{Faults, arrival_us, enqueue, messages, settle};
use anyhow::{Result, ensure};
use integration_tests::{eventually, now_us, unique_account};
use serde_json::json;
use std::time::{Duration, Instant};

/// 429 with `Retry-After: 2` four times: every message is sent, none loses an
/// attempt for it, and after each 429 the account is left alone for 2 s.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn upstream_429_storm_is_waited_out_honouring_retry_after() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("429");
    let (storm, retry_after) = (4, 2u64);
    s.stub_fault(json!({"account": account, "kind": "status", "status": 429, "retryAfter": retry_after, "count": storm}))
        .await?;
    let n = 8;
    let msgs = messages(&account, n);
    let started = Instant::now();
    enqueue(s, &msgs, "high").await?;
    let report = settle(&f, &msgs, Duration::from_secs(90)).await?;

    let throttled: Vec<u64> = report
        .records
        .iter()
        .filter(|r| r["status"] == 429)
        .map(arrival_us)
        .collect();
    // Calls already past the limiter when a 429 came back may land a moment
    // later; after that nothing until Retry-After is over.
    let (grace, early) = (500_000, 100_000);
    let mut ignored = 0;
    for t in &throttled {
        let window = t + grace..t + retry_after * 1_000_000 - early;
        ignored += report
            .records
            .iter()
            .filter(|r| window.contains(&arrival_us(r)))
            .count();
    }
    let max_attempts = report
        .statuses
        .values()
        .filter_map(|st| st.get("attempts")?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    eprintln!(
        "[faults] 429 storm (Retry-After {retry_after}s x{storm}): {} answered 429, {ignored} calls inside a Retry-After window, \
         max attempts {max_attempts}; {report}; total {:.1}s",
        throttled.len(),
        started.elapsed().as_secs_f64()
    );
    ensure!(throttled.len() == storm, "{throttled:?}");
    ensure!(
        ignored == 0,
        "{ignored} calls ignored the upstream's Retry-After"
    );
    ensure!(report.sent == n, "{report}");
    ensure!(max_attempts == 1, "a 429 is a wait, not an attempt");
    Ok(())
}

/// A 5xx storm on every call for 10 s, then recovery. The breaker opens
/// after BREAKER_FAILURE_THRESHOLD consecutive failures: while it is open the
/// consumer defers messages uncalled and lets one probe through every
/// BREAKER_OPEN_SECS, so the calls during the storm stay bounded (without it,
/// twenty ready messages would be tried at the full rate, three times each).
/// Afterwards every message is sent, or dead with the reason if it used up
/// its attempts.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn upstream_5xx_storm_opens_the_breaker_and_then_recovers() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("5xx_storm");
    s.stub_fault(json!({"account": account, "kind": "status", "status": 503, "message": "storm"}))
        .await?;
    let n = 20;
    let msgs = messages(&account, n);
    let started = Instant::now();
    enqueue(s, &msgs, "medium").await?;
    let first = eventually(
        "the storm's first call",
        Duration::from_secs(60),
        || async {
            let reqs = s.stub_requests(&account).await?;
            Ok(reqs.first().map(arrival_us))
        },
    )
    .await?;
    let storm = Duration::from_secs(10);
    let until = first + storm.as_micros() as u64;
    tokio::time::sleep(Duration::from_micros(until.saturating_sub(now_us()))).await;
    s.stub_clear_faults().await?;
    let cleared = now_us();

    let report = settle(&f, &msgs, Duration::from_secs(120)).await?;
    let during = report
        .records
        .iter()
        .filter(|r| (first..cleared).contains(&arrival_us(r)))
        .count();
    let open = f.breaker_open.as_secs_f64();
    let probes = ((cleared - first) as f64 / 1e6 / open).ceil() as usize + 1;
    let bound = f.breaker_threshold as usize + f.max_concurrency as usize + probes;
    eprintln!(
        "[faults] 5xx storm ({:.1}s of 503 on every call, breaker {} failures / {open}s): {during} calls during the storm \
         (bound {bound}: threshold + {} in flight + {probes} probes; {n} messages were ready); {report}; total {:.1}s",
        (cleared - first) as f64 / 1e6,
        f.breaker_threshold,
        f.max_concurrency,
        started.elapsed().as_secs_f64()
    );
    ensure!(
        during <= bound,
        "the breaker did not stop the calls: {during} > {bound}"
    );
    ensure!(report.sent + report.dead == n, "{report}");
    for st in report.statuses.values() {
        if st.get("status").map(String::as_str) == Some("dead") {
            let e = st.get("lastError").cloned().unwrap_or_default();
            ensure!(e.contains("gave up") && e.contains("503"), "{st:?}");
        }
    }
    Ok(())
}

/// 500 on every call: dead after MAX_ATTEMPTS, in the DLQ with the reason;
/// a neighbour whose upstream recovers on its last attempt is sent.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn upstream_5xx_past_max_attempts_is_dead_with_the_reason() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let attempts = s.max_attempts;
    let doomed = unique_account("5xx_dead");
    let recovering = unique_account("5xx_ok");
    let dead = messages(&doomed, 2);
    let ok = messages(&recovering, 1);
    s.stub_fault(
        json!({"account": doomed, "kind": "status", "status": 500, "message": "boom",
                        "count": attempts * dead.len() as u32}),
    )
    .await?;
    s.stub_fault(
        json!({"account": recovering, "kind": "status", "status": 502, "count": attempts - 1}),
    )
    .await?;
    let started = Instant::now();
    enqueue(s, &dead, "medium").await?;
    enqueue(s, &ok, "medium").await?;
    let all: Vec<_> = dead.iter().chain(&ok).cloned().collect();
    let report = settle(&f, &all, Duration::from_secs(120)).await?;
    eprintln!(
        "[faults] 5xx past MAX_ATTEMPTS={attempts}: {report}; total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    ensure!(report.dead == dead.len() && report.sent == 1, "{report}");
    for m in &dead {
        let e = report.statuses[&m.id]
            .get("lastError")
            .cloned()
            .unwrap_or_default();
        ensure!(
            e.contains(&format!("gave up after {attempts} attempts")) && e.contains("boom"),
            "{}: {e}",
            m.id
        );
    }
    ensure!(report.statuses[&ok[0].id]["attempts"] == attempts.to_string());
    ensure!(report.calls == attempts as usize * (dead.len() + 1));
    Ok(())
}

/// Answers slower than the client's timeout: the call is abandoned (the stub
/// sees the caller hang up, nothing delivered) and retried; a message whose
/// every attempt times out is dead with the reason.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn upstream_slower_than_the_client_timeout() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let attempts = s.max_attempts;
    let delay_ms = f.upstream_timeout.as_millis() as u64 + 1500;
    let slowish = unique_account("slow_ok");
    let hopeless = unique_account("slow_dead");
    s.stub_fault(json!({"account": slowish, "kind": "slow", "delayMs": delay_ms, "count": 2}))
        .await?;
    s.stub_fault(
        json!({"account": hopeless, "kind": "slow", "delayMs": delay_ms, "count": attempts}),
    )
    .await?;
    let recovering = messages(&slowish, 3);
    let dead = messages(&hopeless, 1);
    let started = Instant::now();
    enqueue(s, &recovering, "high").await?;
    enqueue(s, &dead, "high").await?;
    let all: Vec<_> = recovering.iter().chain(&dead).cloned().collect();
    let report = settle(&f, &all, Duration::from_secs(120)).await?;
    let cut_off = report.by_status.get(&0).copied().unwrap_or(0);
    eprintln!(
        "[faults] upstream slower than the client timeout ({delay_ms} ms > {} ms): {cut_off} calls abandoned; {report}; total {:.1}s",
        f.upstream_timeout.as_millis(),
        started.elapsed().as_secs_f64()
    );
    ensure!(cut_off == 2 + attempts as usize, "{report}");
    ensure!(report.sent == 3 && report.dead == 1, "{report}");
    let e = report.statuses[&dead[0].id]
        .get("lastError")
        .cloned()
        .unwrap_or_default();
    ensure!(e.contains("timed out"), "{e}");
    Ok(())
}

/// Connections dropped mid-call (`reset`): retried and sent.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn upstream_dropping_connections_is_retried() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("reset");
    s.stub_fault(json!({"account": account, "kind": "reset", "count": 2}))
        .await?;
    let msgs = messages(&account, 3);
    let started = Instant::now();
    enqueue(s, &msgs, "high").await?;
    let report = settle(&f, &msgs, Duration::from_secs(90)).await?;
    let dropped = report.by_status.get(&0).copied().unwrap_or(0);
    eprintln!(
        "[faults] connections reset: {dropped} dropped; {report}; total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    ensure!(dropped == 2 && report.sent == 3, "{report}");
    Ok(())
}

/// Starts the stub again when dropped, if the case did not.
struct StubStopped {
    running: bool,
}

impl Drop for StubStopped {
    fn drop(&mut self) {
        if !self.running {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/faults.sh");
            let _ = std::process::Command::new("bash")
                .args([script, "start", "stub"])
                .status();
        }
    }
}

/// Connection refused: the stub is stopped, the consumer cannot connect (a
/// transient failure, retried with backoff; the breaker opens), then the stub
/// comes back and the messages go. The restarted stub starts with no records,
/// so this case's account only ever called the new one.
#[tokio::test]
#[ignore = "needs the fault stack: scripts/faults.sh test"]
async fn upstream_refusing_connections_is_retried() -> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    let account = unique_account("refused");
    let msgs = messages(&account, 3);
    f.script(&["stop", "stub"]).await?;
    let mut stopped = StubStopped { running: false };
    let started = Instant::now();
    enqueue(s, &msgs, "high").await?;
    eventually(
        "a delivery refused a connection",
        Duration::from_secs(60),
        || async {
            for m in &msgs {
                let st = s.status_of(&m.account, &m.id).await?;
                if st
                    .get("lastError")
                    .is_some_and(|e| e.contains("could not connect"))
                {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        },
    )
    .await?;
    let down_for = started.elapsed();
    f.script(&["start", "stub"]).await?;
    stopped.running = true;
    let report = settle(&f, &msgs, Duration::from_secs(90)).await?;
    let retried = report
        .statuses
        .values()
        .filter(|st| {
            st.get("attempts")
                .and_then(|a| a.parse::<u32>().ok())
                .is_some_and(|a| a > 1)
        })
        .count();
    eprintln!(
        "[faults] connection refused (stub down {:.1}s): {retried} messages needed more than one attempt; {report}; total {:.1}s",
        down_for.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    ensure!(retried + report.dead >= 1, "{report}");
    ensure!(report.sent + report.dead == msgs.len(), "{report}");
    Ok(())
}
