//! The fault stack's processes, and the check every case ends with.
//!
//! `scripts/faults.sh test` starts the stack (its own ports, its own
//! persistent Redis) and runs this suite one test at a time: faults such as
//! a stopped Redis or a paused SQS server touch every message in flight, so
//! the cases never overlap.

use anyhow::{Context, Result, bail, ensure};
use integration_tests::{Stack, curve_violations, eventually, queue_body};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The stub's own allowance between the limiter's decision and arrival
/// (`STUB_TOLERANCE_MS`, 100 by default); our curve check uses the same.
const CURVE_TOLERANCE: Duration = Duration::from_millis(100);

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The running fault stack.
pub struct Faults {
    pub stack: Stack,
    stack_dir: PathBuf,
    script: PathBuf,
    /// The queue's visibility timeout: how long a record of a killed
    /// invocation stays hidden.
    pub visibility: Duration,
    pub upstream_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_open: Duration,
    /// Concurrent consumer invocations the poller makes.
    pub max_concurrency: u32,
}

impl Faults {
    /// The stack `scripts/faults.sh` started; refuses to run against any other.
    pub async fn from_env() -> Result<Self> {
        ensure!(
            std::env::var("FAULTS_STACK").as_deref() == Ok("1"),
            "the fault suite stops and kills parts of its stack: run it with `scripts/faults.sh test`"
        );
        let stack_dir = PathBuf::from(std::env::var("STACK_DIR").context("STACK_DIR")?);
        let faults = Self {
            stack: Stack::from_env(),
            stack_dir,
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/faults.sh"),
            visibility: Duration::from_secs(env_num("VISIBILITY_TIMEOUT", 20)),
            upstream_timeout: Duration::from_millis(env_num("UPSTREAM_TIMEOUT_MS", 2000)),
            breaker_threshold: env_num("BREAKER_FAILURE_THRESHOLD", 3),
            breaker_open: Duration::from_secs(env_num("BREAKER_OPEN_SECS", 3)),
            max_concurrency: env_num("MAX_CONCURRENCY", 4),
        };
        faults.ready().await?;
        Ok(faults)
    }

    /// Waits until the producer's `/health` answers 200 (Redis and SQS both
    /// answer it), so that each case starts from a healthy stack whatever
    /// the case before it did. Its first check after a Redis restart may
    /// fail: see `redis_restart`.
    pub async fn ready(&self) -> Result<()> {
        let url = format!("{}/health", self.stack.producer_url);
        eventually(
            "the stack to be healthy",
            Duration::from_secs(60),
            || async {
                let resp = self.stack.http.get(&url).send().await?;
                Ok(resp.status().is_success().then_some(()))
            },
        )
        .await
    }

    /// The PID `stack.sh` (or `faults.sh start`) recorded for one of the
    /// stack's processes: `sqs`, `stub`, `lambda`, `poller`, `replay`.
    pub fn pid_of(&self, name: &str) -> Result<u32> {
        let pids = std::fs::read_to_string(self.stack_dir.join("pids"))
            .context("reading the fault stack's pids")?;
        pids.lines()
            .rev()
            .filter_map(|l| l.split_once(' '))
            .filter(|(n, _)| *n == name)
            .find_map(|(_, p)| p.trim().parse().ok())
            .with_context(|| format!("no {name} recorded in the fault stack's pids"))
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, ...) to a recorded process's
    /// whole group (each was started with `setsid`).
    pub fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let pid = self.pid_of(name)?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{pid}"))
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -{signal} {name} (pid {pid}) failed");
        Ok(())
    }

    /// Runs `scripts/faults.sh <args>` (Redis stop/start, process restarts);
    /// the script's own waits are bounded, and so is this one.
    pub async fn script(&self, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).args(args);
        let what = format!("faults.sh {}", args.join(" "));
        let run = tokio::task::spawn_blocking(move || cmd.status());
        let status = tokio::time::timeout(Duration::from_secs(900), run)
            .await
            .with_context(|| format!("{what} took over 15 minutes"))???;
        ensure!(status.success(), "{what} failed: {status}");
        Ok(())
    }

    /// Lines of the functions' log (`logs/lambda.log`, JSON) about `account`
    /// whose message is `message`: what the consumer decided, for the report.
    pub fn log_count(&self, account: &str, message: &str) -> usize {
        let log =
            std::fs::read_to_string(self.stack_dir.join("logs/lambda.log")).unwrap_or_default();
        let (account, message) = (
            format!("\"account_id\":\"{account}\""),
            format!("\"message\":\"{message}\""),
        );
        log.lines()
            .filter(|l| l.contains(&account) && l.contains(&message))
            .count()
    }

    /// PIDs of the processes `cargo lambda watch` runs for `function`: its
    /// direct children whose program is `target/debug/<function>`.
    pub fn function_pids(&self, function: &str) -> Result<Vec<u32>> {
        let watch = self.pid_of("lambda")?;
        let suffix = format!("/{function}");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(watch) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            if String::from_utf8_lossy(program).ends_with(&suffix) {
                found.push(pid);
            }
        }
        Ok(found)
    }
}

/// Resumes the SQS server when dropped, so that a failing case never leaves
/// it paused for the next one.
pub struct SqsPaused<'a>(pub &'a Faults);

impl Drop for SqsPaused<'_> {
    fn drop(&mut self) {
        let _ = self.0.signal("sqs", "CONT");
    }
}

/// One accepted message the case follows.
#[derive(Debug, Clone)]
pub struct Msg {
    pub account: String,
    pub id: String,
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `n` new messages for `account`.
pub fn messages(account: &str, n: usize) -> Vec<Msg> {
    (0..n)
        .map(|_| Msg {
            account: account.to_owned(),
            id: new_id(),
        })
        .collect()
}

/// Puts the messages on the main queue as the producer would.
pub async fn enqueue(stack: &Stack, msgs: &[Msg], priority: &str) -> Result<()> {
    let bodies: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            (
                queue_body(&m.account, &m.id, priority, "fan_1"),
                m.account.clone(),
            )
        })
        .collect();
    stack.enqueue_bodies(&bodies).await
}

/// The stub's records for these accounts, in arrival order.
pub async fn stub_records(stack: &Stack, accounts: &BTreeSet<String>) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    for a in accounts {
        all.extend(stack.stub_requests(a).await?);
    }
    all.sort_by_key(|r| r["receivedAtUs"].as_u64().unwrap_or(0));
    Ok(all)
}

pub fn is_2xx(r: &Value) -> bool {
    r["status"]
        .as_u64()
        .is_some_and(|s| (200..300).contains(&s))
}

/// Waits (up to 120 s) until the stub took `n` 2xx sends of every account.
/// (The failover cases use it; tests/faults does not.)
#[allow(dead_code)]
pub async fn each_sent(s: &Stack, accounts: &[&str], n: usize) -> Result<()> {
    eventually(
        &format!("every account past {n} sends"),
        Duration::from_secs(120),
        || async {
            for a in accounts {
                let sent = s
                    .stub_requests(a)
                    .await?
                    .iter()
                    .filter(|r| is_2xx(r))
                    .count();
                if sent < n {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

/// When a record reached the stub on its monotonic clock: for intervals
/// between arrivals (the limit's curve).
pub fn arrival_us(r: &Value) -> u64 {
    r["receivedAtUs"].as_u64().unwrap_or(0)
}

/// When a record reached the stub on the system clock: for comparing with a
/// time this test read from its own clock (a kill, a stop, a promotion).
pub fn arrival_wall_us(r: &Value) -> u64 {
    r["receivedAtWallUs"].as_u64().unwrap_or(0)
}

/// Status records (the Redis hash: `status`, `attempts`, `lastError`, ...)
/// by message id.
pub type Statuses = HashMap<String, HashMap<String, String>>;

/// What a case saw once everything settled.
#[derive(Debug, Default)]
pub struct Settled {
    pub messages: usize,
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
    /// Calls the stub received for the case's accounts.
    pub calls: usize,
    /// Of which answered 2xx.
    pub delivered: usize,
    /// Calls by the status answered; 0 is no answer (the caller hung up:
    /// a timeout, a dropped connection, a killed consumer).
    pub by_status: BTreeMap<u64, usize>,
    /// Highest `attempts` of a sent message.
    pub max_attempts_sent: u32,
    /// Every stub record of the case's accounts, in arrival order.
    pub records: Vec<Value>,
    /// Status records by message id.
    pub statuses: Statuses,
    pub took: Duration,
}

impl fmt::Display for Settled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} messages: {} sent, {} failed, {} dead; stub: {} calls, {} delivered (2xx), by status {:?}; \
             0 duplicates, 0 limit violations; max attempts of a sent message {}; settled in {:.1}s",
            self.messages,
            self.sent,
            self.failed,
            self.dead,
            self.calls,
            self.delivered,
            self.by_status,
            self.max_attempts_sent,
            self.took.as_secs_f64()
        )
    }
}

/// How long `settle` waits after the queue drained before reading the stub:
/// a late second delivery would show up in that time.
const LATE_DELIVERY_GRACE: Duration = Duration::from_secs(2);

/// Waits until every message is `sent`, `failed` or `dead` and the queue is
/// empty, then checks the contract's guarantees against the stub's records:
/// none lost, none sent twice (one 2xx per idempotency key, no `duplicate`),
/// no limit violation (the stub's flag and our own curve check), a reason on
/// every failed or dead message, and every dead one in the DLQ. Each step is
/// a function of its own below, in the order `settle` runs them.
pub async fn settle(f: &Faults, msgs: &[Msg], limit: Duration) -> Result<Settled> {
    let s = &f.stack;
    let started = Instant::now();
    let statuses = wait_until_final(s, msgs, limit).await?;
    wait_until_queue_empty(s).await?;
    let took = started.elapsed();
    tokio::time::sleep(LATE_DELIVERY_GRACE).await;

    let accounts: BTreeSet<String> = msgs.iter().map(|m| m.account.clone()).collect();
    let records = stub_records(s, &accounts).await?;
    let mut report = Settled {
        messages: msgs.len(),
        took,
        ..Settled::default()
    };
    let delivered = count_calls(&records, &mut report)?;
    check_curve(s, &accounts, &records)?;
    check_only_these_delivered(msgs, &delivered)?;
    let dead_accounts = check_outcomes(s, msgs, &statuses, &delivered, &mut report)?;
    check_dead_in_dlq(s, msgs, &statuses, &dead_accounts).await?;
    report.records = records;
    report.statuses = statuses;
    Ok(report)
}

/// Polls every message's status record until each is `sent`, `failed` or
/// `dead`; fails after `limit` naming what the rest last showed.
pub async fn wait_until_final(s: &Stack, msgs: &[Msg], limit: Duration) -> Result<Statuses> {
    let started = Instant::now();
    let mut statuses = HashMap::new();
    let mut pending: Vec<&Msg> = msgs.iter().collect();
    let mut last_seen = BTreeMap::new();
    loop {
        let mut still = Vec::new();
        for m in pending {
            match s.status_of(&m.account, &m.id).await {
                Ok(r) if is_final(&r) => {
                    statuses.insert(m.id.clone(), r);
                }
                Ok(r) => {
                    last_seen.insert(m.id.clone(), r);
                    still.push(m);
                }
                // Redis may be on its way back: look again.
                Err(_) => still.push(m),
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(statuses);
        }
        if started.elapsed() > limit {
            let detail: Vec<_> = pending
                .iter()
                .map(|m| format!("{}: {:?}", m.id, last_seen.get(&m.id)))
                .collect();
            bail!(
                "{} of {} messages not settled after {limit:?}: {detail:#?}",
                pending.len(),
                msgs.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_final(status: &HashMap<String, String>) -> bool {
    matches!(
        status.get("status").map(String::as_str),
        Some("sent" | "failed" | "dead")
    )
}

/// Nothing left behind: no deferred or duplicate copy still to come.
pub async fn wait_until_queue_empty(s: &Stack) -> Result<()> {
    eventually("the queue to drain", Duration::from_secs(60), || async {
        let q = s.queue_stats().await?;
        Ok((q.visible + q.in_flight + q.delayed == 0).then_some(()))
    })
    .await
}

/// Counts the stub's calls into `report` (by status answered, 2xx) and
/// refuses any the stub flagged as a limit violation or a duplicate.
/// Returns the 2xx calls per idempotency key (= message id).
fn count_calls(records: &[Value], report: &mut Settled) -> Result<HashMap<String, usize>> {
    let mut delivered: HashMap<String, usize> = HashMap::new();
    report.calls = records.len();
    for r in records {
        *report
            .by_status
            .entry(r["status"].as_u64().unwrap_or(0))
            .or_default() += 1;
        ensure!(
            r["violation"] == false,
            "the stub counted a limit violation: {r}"
        );
        ensure!(
            r["duplicate"] == false,
            "a message reached the stub twice: {r}"
        );
        if is_2xx(r) {
            let key = r["idempotencyKey"].as_str().unwrap_or_default().to_owned();
            *delivered.entry(key).or_default() += 1;
            report.delivered += 1;
        }
    }
    Ok(delivered)
}

/// Our own check of the contract's curve (`burst + rate × t / 60`) over the
/// arrival times of every call of each account, beside the stub's.
fn check_curve(s: &Stack, accounts: &BTreeSet<String>, records: &[Value]) -> Result<()> {
    for account in accounts {
        let times: Vec<u64> = records
            .iter()
            .filter(|r| r["accountId"] == account.as_str())
            .map(arrival_us)
            .collect();
        let over = curve_violations(&times, s.rate_per_minute, s.burst, CURVE_TOLERANCE);
        ensure!(over == 0, "{account}: {over} calls over the limit's curve");
    }
    Ok(())
}

/// Every 2xx the stub gave was for one of the case's messages.
fn check_only_these_delivered(msgs: &[Msg], delivered: &HashMap<String, usize>) -> Result<()> {
    let ids: BTreeSet<&str> = msgs.iter().map(|m| m.id.as_str()).collect();
    for key in delivered.keys() {
        ensure!(
            ids.contains(key.as_str()),
            "the stub delivered {key}, which this case never sent"
        );
    }
    Ok(())
}

/// Each `sent` message reached the stub exactly once within `MAX_ATTEMPTS`;
/// each `failed` or `dead` one never did and says why. Counts the outcomes
/// into `report`; returns the accounts with a dead message.
fn check_outcomes(
    s: &Stack,
    msgs: &[Msg],
    statuses: &Statuses,
    delivered: &HashMap<String, usize>,
    report: &mut Settled,
) -> Result<BTreeSet<String>> {
    let mut dead_accounts = BTreeSet::new();
    for m in msgs {
        let st = &statuses[&m.id];
        let n = delivered.get(&m.id).copied().unwrap_or(0);
        match st.get("status").map(String::as_str) {
            Some("sent") => {
                report.sent += 1;
                ensure!(n == 1, "{} is sent but reached the stub {n} times", m.id);
                let attempts = st.get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0);
                ensure!(
                    (1..=s.max_attempts).contains(&attempts),
                    "{}: {attempts} attempts: {st:?}",
                    m.id
                );
                report.max_attempts_sent = report.max_attempts_sent.max(attempts);
            }
            other => {
                if other == Some("dead") {
                    report.dead += 1;
                    dead_accounts.insert(m.account.clone());
                } else {
                    report.failed += 1;
                }
                ensure!(n == 0, "{} is {other:?} but was delivered {n} times", m.id);
                ensure!(
                    st.get("lastError").is_some_and(|e| !e.is_empty()),
                    "{} is {other:?} without a reason: {st:?}",
                    m.id
                );
            }
        }
    }
    Ok(dead_accounts)
}

/// Every dead message of these accounts is in the DLQ with its `deadReason`.
async fn check_dead_in_dlq(
    s: &Stack,
    msgs: &[Msg],
    statuses: &Statuses,
    dead_accounts: &BTreeSet<String>,
) -> Result<()> {
    for account in dead_accounts {
        let dead: Vec<&Msg> = msgs
            .iter()
            .filter(|m| &m.account == account && statuses[&m.id]["status"] == "dead")
            .collect();
        eventually(
            "every dead message in the DLQ with its reason",
            Duration::from_secs(30),
            || async {
                let in_dlq = s.dlq_matching(account).await?;
                let all = dead.iter().all(|m| {
                    in_dlq.iter().any(|(body, reason)| {
                        body.contains(&m.id) && reason.as_deref().is_some_and(|r| !r.is_empty())
                    })
                });
                Ok(all.then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}
