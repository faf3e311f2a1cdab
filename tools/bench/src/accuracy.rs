//! Delivery accuracy under backlog: a backlog of one account and a backlog
//! spread over many, put straight on the queue (SendMessageBatch, v1 bodies,
//! the producer's attributes), delivered by the real poller, consumer and
//! stub; then the stub's records and the poller's log say how it went.

use crate::stack::{self, StubRecord};
use crate::stats::round;
use anyhow::Result;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Args {
    pub label: String,
    pub prefix: String,
    pub queue_url: String,
    pub dlq_url: Option<String>,
    pub stub_url: String,
    pub poller_log: PathBuf,
    pub rate_per_minute: f64,
    pub burst: f64,
    pub solo_messages: usize,
    pub spread_messages: usize,
    pub spread_accounts: usize,
    pub priority: String,
    pub timeout: Duration,
}

/// The default run (`bench accuracy`'s defaults, and `bench accuracy-pair`'s).
pub const SOLO_MESSAGES: usize = 1000;
pub const SPREAD_MESSAGES: usize = 1000;
pub const SPREAD_ACCOUNTS: usize = 100;
pub const PRIORITY: &str = "medium";
pub const TIMEOUT: Duration = Duration::from_secs(420);

impl Default for Args {
    /// The default backlogs; the stack's URLs, the label and the limits are
    /// left empty for the caller.
    fn default() -> Self {
        Args {
            label: String::new(),
            prefix: String::new(),
            queue_url: String::new(),
            dlq_url: None,
            stub_url: String::new(),
            poller_log: PathBuf::new(),
            rate_per_minute: 0.0,
            burst: 0.0,
            solo_messages: SOLO_MESSAGES,
            spread_messages: SPREAD_MESSAGES,
            spread_accounts: SPREAD_ACCOUNTS,
            priority: PRIORITY.to_owned(),
            timeout: TIMEOUT,
        }
    }
}

struct AccountResult {
    sends: Vec<i64>,
    violations: u64,
    duplicates: u64,
    calls: u64,
}

fn budget(sends: &[i64], rate_per_minute: f64, burst: f64) -> f64 {
    match (sends.first(), sends.last()) {
        (Some(a), Some(b)) => burst + rate_per_minute * ((b - a) as f64 / 1e6) / 60.0,
        _ => 0.0,
    }
}

pub async fn run(args: &Args) -> Result<Value> {
    let http = stack::http()?;
    let sqs = shared::queue::sqs_client(&shared::tls::sdk_config().await);
    let solo = format!("{}-{}-solo", args.prefix, args.label);
    let spread: Vec<String> = (0..args.spread_accounts)
        .map(|i| format!("{}-{}-s{i:03}", args.prefix, args.label))
        .collect();

    // Interleaved: the single account's backlog and the spread one share the queue.
    let mut msgs = Vec::with_capacity(args.solo_messages + args.spread_messages);
    for i in 0..args.solo_messages.max(args.spread_messages) {
        if i < args.solo_messages {
            msgs.push(stack::queue_message(&solo, &args.priority, i)?);
        }
        if i < args.spread_messages && !spread.is_empty() {
            msgs.push(stack::queue_message(
                &spread[i % spread.len()],
                &args.priority,
                i,
            )?);
        }
    }
    let total = msgs.len() as u64;
    let log_offset = stack::file_len(&args.poller_log);

    let t0 = stack::now_us();
    let started = Instant::now();
    stack::enqueue(&sqs, &args.queue_url, &msgs).await?;
    let enqueue_s = started.elapsed().as_secs_f64();
    eprintln!(
        "[bench] accuracy {}: {total} messages enqueued in {enqueue_s:.1}s; waiting for delivery",
        args.label
    );

    let mine = |a: &str| a == solo || spread.iter().any(|s| s == a);
    let mut delivered = 0;
    let mut last_progress = Instant::now();
    let mut last_print = Instant::now();
    // Bounded: at most `timeout`, and 120 s without progress ends it early.
    while started.elapsed() < args.timeout {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now: u64 = stack::stub_accepted(&http, &args.stub_url)
            .await?
            .iter()
            .filter(|(a, _)| mine(a))
            .map(|(_, (acc, _))| acc)
            .sum();
        if now > delivered {
            delivered = now;
            last_progress = Instant::now();
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "[bench] accuracy {}: {delivered}/{total} delivered after {:.0}s",
                args.label,
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if delivered >= total || last_progress.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    // Let the poller log the last invocations' completions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let poller = stack::poller_totals(&args.poller_log, log_offset)?;

    let mut per_account: BTreeMap<String, AccountResult> = BTreeMap::new();
    for a in std::iter::once(&solo).chain(spread.iter()) {
        let records: Vec<StubRecord> = stack::stub_requests(&http, &args.stub_url, Some(a)).await?;
        let mut sends: Vec<i64> = records
            .iter()
            .filter(|r| r.accepted())
            .map(|r| r.received_at_us)
            .collect();
        sends.sort_unstable();
        per_account.insert(
            a.clone(),
            AccountResult {
                sends,
                violations: records.iter().filter(|r| r.violation).count() as u64,
                duplicates: records.iter().filter(|r| r.duplicate).count() as u64,
                calls: records.len() as u64,
            },
        );
    }
    let dlq_depth = match &args.dlq_url {
        Some(url) => stack::queue_depth(&sqs, url).await.ok(),
        None => None,
    };
    let queue_left = stack::queue_depth(&sqs, &args.queue_url).await.ok();

    let (rate, burst) = (args.rate_per_minute, args.burst);
    let sent: u64 = per_account.values().map(|r| r.sends.len() as u64).sum();
    let violations: u64 = per_account.values().map(|r| r.violations).sum();
    let duplicates: u64 = per_account.values().map(|r| r.duplicates).sum();
    let calls: u64 = per_account.values().map(|r| r.calls).sum();
    // The budget only binds for an account with more to send than its burst:
    // there it is the headline. Over every account it is shown too, but an
    // account with <= burst messages "wastes" budget simply by having nothing
    // more to send.
    let backlogged: Vec<&AccountResult> = per_account
        .values()
        .filter(|r| r.sends.len() as f64 > burst)
        .collect();
    let ratio = |rs: &[&AccountResult]| {
        let s: f64 = rs.iter().map(|r| r.sends.len() as f64).sum();
        let b: f64 = rs.iter().map(|r| budget(&r.sends, rate, burst)).sum();
        if b > 0.0 { s / b } else { f64::NAN }
    };
    let all: Vec<&AccountResult> = per_account.values().collect();
    let solo_r = &per_account[&solo];
    let last_send = per_account
        .values()
        .filter_map(|r| r.sends.last())
        .max()
        .copied()
        .unwrap_or(t0);
    let rel =
        |v: &[i64]| -> Vec<f64> { v.iter().map(|t| round((t - t0) as f64 / 1e6, 4)).collect() };
    let spread_times: BTreeMap<&String, Vec<f64>> = spread
        .iter()
        .map(|a| (a, rel(&per_account[a].sends)))
        .collect();
    let spread_max_share = spread
        .iter()
        .map(|a| {
            let s = &per_account[a].sends;
            s.len() as f64 / budget(s, rate, burst).max(1.0)
        })
        .fold(0.0, f64::max);
    let per_delivered = |x: f64| if sent > 0 { x / sent as f64 } else { f64::NAN };

    let budget_used = ratio(&backlogged);
    eprintln!(
        "[bench] accuracy {}: delivered {sent}/{total}, violations {violations}, budget used {:.2} %, \
         receives/delivered {:.2}, handler ms/delivered {:.1}",
        args.label,
        budget_used * 100.0,
        per_delivered(poller.receives as f64),
        per_delivered(poller.invoke_ms as f64),
    );
    Ok(json!({
        "label": args.label,
        "messages": total,
        "delivered": sent,
        "violations": violations,
        "duplicates": duplicates,
        "stub_calls": calls,
        "budget_used": round(budget_used, 4),
        "budget_used_all_accounts": round(ratio(&all), 4),
        "receives": poller.receives,
        "receives_per_delivered": round(per_delivered(poller.receives as f64), 3),
        "invocations": poller.invocations,
        "handler_ms_total": poller.invoke_ms,
        "handler_ms_per_delivered": round(per_delivered(poller.invoke_ms as f64), 2),
        "failed_items": poller.failed_items,
        "failed_invocations": poller.failed_invocations,
        "dlq_depth": dlq_depth,
        "queue_left": queue_left,
        "enqueue_s": round(enqueue_s, 2),
        "wall_s": round(wall_s, 1),
        "drain_s": round((last_send - t0) as f64 / 1e6, 2),
        "rate_per_minute": rate,
        "burst": burst,
        "priority": args.priority,
        "solo": {
            "account": solo,
            "messages": args.solo_messages,
            "sent": solo_r.sends.len(),
            "violations": solo_r.violations,
            "first_s": rel(&solo_r.sends[..solo_r.sends.len().min(1)]).first(),
            "last_s": rel(&solo_r.sends).last(),
            "budget": round(budget(&solo_r.sends, rate, burst), 2),
            "budget_used": round(solo_r.sends.len() as f64 / budget(&solo_r.sends, rate, burst).max(1.0), 4),
        },
        "spread": {
            "accounts": spread.len(),
            "messages": args.spread_messages,
            "sent": spread.iter().map(|a| per_account[a].sends.len()).sum::<usize>(),
            "violations": spread.iter().map(|a| per_account[a].violations).sum::<u64>(),
            "max_account_budget_share": round(spread_max_share, 4),
            "last_s": spread_times.values().filter_map(|v| v.last()).fold(0.0f64, |a, b| a.max(*b)),
        },
        "timelines": {
            "t0_us": t0,
            "solo": rel(&solo_r.sends),
            "spread": spread_times,
        },
    }))
}
