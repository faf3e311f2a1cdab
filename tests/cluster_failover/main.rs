//! A Redis Cluster loses a primary mid-delivery: its replica takes over,
//! the functions follow (`MOVED`, a refreshed slot map), and the failed node
//! comes back as the new primary's replica.
//!
//! `scripts/cluster-failover.sh test` (`make test-cluster`, and `make test`)
//! starts a 3-shard cluster (3 primaries, 3 replicas), the fault stack on it
//! with `REDIS_CLUSTER=true` and `REDIS_WAIT_REPLICAS=1`, and runs this case.
//!
//! The case: three accounts, one on each shard, each with a backlog
//! delivered at the limit. Once every account is past its burst, the
//! primary serving the first account is killed (`kill -9`), its replica is
//! promoted at once (`CLUSTER FAILOVER TAKEOVER`, what ElastiCache's
//! automatic failover does), and a few seconds later the dead node starts
//! again and rejoins as the new primary's replica. Required: every message
//! sent exactly once (no duplicate at the stub, none lost), no call over any
//! account's curve (`harness::settle`), nothing of the first account sent
//! while its shard had no replica to confirm a token (`WAIT 1`), the other
//! shards' accounts delivered meanwhile (`WAIT` goes to the written key's
//! shard only), and the first account's backlog delivered by the promoted
//! node once the node is back.
//!
//! The second case moves an account's slot to another shard mid-backlog, as
//! `redis-cli --cluster reshard` (and ElastiCache's online resharding) does:
//! a few keys at a time, so for seconds some of the account's keys are on
//! each node and the functions meet `ASK` (a key already moved) and
//! `TRYAGAIN` (a script whose keys are split) on every kind of call. Same
//! requirements: exactly once, on the curve, and the account delivered
//! while its slot was migrating and from its new shard after.

#[allow(dead_code)]
#[path = "../faults/harness.rs"]
mod harness;

use anyhow::{Context, Result, ensure};
use harness::{Faults, Msg, arrival_us, each_sent, enqueue, is_2xx, messages, stub_records};
use integration_tests::{now_us, unique_account};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const PER_ACCOUNT: usize = 100;
/// Sends per account before the primary dies: the burst (10) and as many
/// again at the rate, so every bucket runs empty.
const SENT_BEFORE_KILL: usize = 20;
/// When the dead node starts again after the takeover.
const REJOIN_AFTER: Duration = Duration::from_secs(3);

/// Runs `scripts/redis-cluster.sh <args>` on the case's cluster; its stdout.
fn cluster_sh(args: &[&str]) -> Result<String> {
    let script = std::env::var("CLUSTER_SCRIPT").context("CLUSTER_SCRIPT")?;
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .context("running redis-cluster.sh")?;
    ensure!(
        out.status.success(),
        "redis-cluster.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The port of the primary serving `account`'s keys.
fn shard_of(account: &str) -> Result<String> {
    cluster_sh(&["primary-of", &format!("of:{{{account}}}:bucket")])
}

/// One account on each shard: fresh ids until every primary has one.
fn one_account_per_shard() -> Result<Vec<(String, String)>> {
    let mut by_shard: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..200 {
        let a = unique_account(&format!("cfo{i}"));
        by_shard.entry(shard_of(&a)?).or_insert(a);
        if by_shard.len() == 3 {
            return Ok(by_shard.into_iter().map(|(p, a)| (a, p)).collect());
        }
    }
    anyhow::bail!("200 accounts did not cover three shards: {by_shard:?}")
}

/// The accounts of `one_account_per_shard`, without their ports.
fn names(accounts: &[(String, String)]) -> Vec<&str> {
    accounts.iter().map(|(a, _)| a.as_str()).collect()
}

/// Every account's backlog in the queue at once: interleaved (in account
/// order the first one would be delivered before the others start).
fn interleaved(accounts: &[(String, String)]) -> Vec<Msg> {
    let per_account: Vec<Vec<Msg>> = accounts
        .iter()
        .map(|(a, _)| messages(a, PER_ACCOUNT))
        .collect();
    (0..PER_ACCOUNT)
        .flat_map(|i| per_account.iter().map(move |m| m[i].clone()))
        .collect()
}

/// Writes a case's report under target/cluster-failover/ and prints it.
fn write_report(name: &str, report: &serde_json::Value) -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/cluster-failover")
        .join(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(report)?)?;
    eprintln!("[cluster-failover] {name}: {report}");
    Ok(())
}

/// Records the functions failed closed on (Redis unreachable or refusing).
fn failed_closed(f: &Faults, accounts: &BTreeSet<String>) -> usize {
    accounts
        .iter()
        .map(|a| {
            f.log_count(
                a,
                "limiter unavailable: failing closed, nothing is sent without a token",
            ) + f.log_count(a, "redis unavailable: failing closed")
        })
        .sum()
}

#[tokio::test]
#[ignore = "needs the cluster fault stack: scripts/cluster-failover.sh test"]
async fn a_primary_killed_mid_backlog_is_taken_over_without_a_duplicate_or_an_overgrant()
-> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    ensure!(
        std::env::var("REDIS_CLUSTER").as_deref() == Ok("true"),
        "the functions must run with REDIS_CLUSTER=true"
    );
    let accounts = one_account_per_shard()?;
    let (victim_account, victim_port) = accounts[0].clone();
    let msgs = interleaved(&accounts);
    let started = Instant::now();
    enqueue(s, &msgs, "high").await?;
    each_sent(s, &names(&accounts), SENT_BEFORE_KILL).await?;
    cluster_sh(&["kill", &victim_port])?;
    let killed_us = now_us();
    let promoted_port = cluster_sh(&["takeover", &victim_port])?;
    let promoted_us = now_us();
    tokio::time::sleep(REJOIN_AFTER).await;
    cluster_sh(&["start", &victim_port])?;
    let rejoined_us = now_us();

    let settled = harness::settle(&f, &msgs, Duration::from_secs(240)).await?;
    eprintln!("[cluster-failover] settled: {settled}");
    let all: BTreeSet<String> = accounts.iter().map(|(a, _)| a.clone()).collect();
    let records = stub_records(s, &all).await?;
    let delivered_after = |account: &str, from_us: u64| {
        records
            .iter()
            .filter(|r| r["accountId"] == account && is_2xx(r) && arrival_us(r) >= from_us)
            .count()
    };
    let victim_after = delivered_after(&victim_account, promoted_us);
    let others_after: usize = accounts[1..]
        .iter()
        .map(|(a, _)| delivered_after(a, killed_us))
        .sum();
    let delivered_between = |account: &str, from_us: u64, to_us: u64| {
        records
            .iter()
            .filter(|r| {
                r["accountId"] == account && is_2xx(r) && (from_us..to_us).contains(&arrival_us(r))
            })
            .count()
    };
    // While the killed shard had no replica, nothing of its account could be
    // confirmed (WAIT 1): nothing may have gone. The other shards' replicas
    // confirm their own writes: their accounts go on.
    let victim_without_replica = delivered_between(&victim_account, promoted_us, rejoined_us);
    let others_without_replica: usize = accounts[1..]
        .iter()
        .map(|(a, _)| delivered_between(a, promoted_us, rejoined_us))
        .sum();
    let failed_closed = failed_closed(&f, &all);
    let report = json!({
        "accounts": accounts.iter().map(|(a, p)| json!({"account": a, "primary": p})).collect::<Vec<_>>(),
        "messages": msgs.len(),
        "killed_primary": victim_port,
        "promoted": promoted_port,
        "takeover_ms": (promoted_us - killed_us) / 1000,
        "rejoined_after_ms": (rejoined_us - killed_us) / 1000,
        "delivered": settled.delivered,
        "calls": settled.calls,
        "duplicates": 0,
        "limit_violations": 0,
        "victim_account_delivered_after_takeover": victim_after,
        "other_accounts_delivered_after_kill": others_after,
        "victim_account_delivered_while_its_shard_had_no_replica": victim_without_replica,
        "other_accounts_delivered_while_the_killed_shard_had_no_replica": others_without_replica,
        "records_failed_closed": failed_closed,
        "took_s": started.elapsed().as_secs_f64(),
    });
    write_report("report.json", &report)?;
    ensure!(
        victim_after > 0,
        "the killed primary's account was not delivered through the promoted node: {report}"
    );
    ensure!(
        victim_without_replica == 0,
        "the killed shard's account was sent while no replica could confirm its tokens: {report}"
    );
    ensure!(
        others_without_replica > 0,
        "the other shards' accounts waited for the killed shard's replica: {report}"
    );
    ensure!(
        others_after > 0,
        "the other shards' accounts were not delivered after the kill: {report}"
    );
    Ok(())
}

/// Moving fewer keys per step, or pausing longer, widens the window in which
/// the account's keys are split between two nodes.
const MIGRATE_BATCH: &str = "3";
const MIGRATE_PAUSE_S: &str = "0.3";
/// Messages of the moved account enqueued once its slot has moved.
const AFTER_MIGRATION: usize = 10;

#[tokio::test]
#[ignore = "needs the cluster fault stack: scripts/cluster-failover.sh test"]
async fn a_slot_migrated_mid_backlog_is_followed_through_ask_without_a_duplicate_or_an_overgrant()
-> Result<()> {
    let f = Faults::from_env().await?;
    let s = &f.stack;
    ensure!(
        std::env::var("REDIS_CLUSTER").as_deref() == Ok("true"),
        "the functions must run with REDIS_CLUSTER=true"
    );
    let accounts = one_account_per_shard()?;
    let (moving, from_port) = accounts[0].clone();
    let to_port = accounts[1].1.clone();
    let msgs = interleaved(&accounts);
    let started = Instant::now();
    enqueue(s, &msgs, "high").await?;
    each_sent(s, &names(&accounts), SENT_BEFORE_KILL).await?;

    let bucket = format!("of:{{{moving}}}:bucket");
    let script = std::env::var("CLUSTER_SCRIPT").context("CLUSTER_SCRIPT")?;
    let migrate_started_us = now_us();
    // In the background: the deliveries go on while it runs.
    let migration = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .args(["migrate", &bucket, &to_port, MIGRATE_BATCH, MIGRATE_PAUSE_S])
            .output()
    });
    let out = migration
        .await?
        .context("running redis-cluster.sh migrate")?;
    let migrated_us = now_us();
    ensure!(
        out.status.success(),
        "redis-cluster.sh migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let keys_moved: usize = moved
        .split_whitespace()
        .nth(3)
        .and_then(|k| k.parse().ok())
        .context("migrate's SLOT FROM TO KEYS line")?;

    // The backlog may have drained while the slot moved: a few more for the
    // account, served from its new shard only.
    let extra = messages(&moving, AFTER_MIGRATION);
    enqueue(s, &extra, "high").await?;
    let msgs: Vec<Msg> = msgs.into_iter().chain(extra).collect();
    let settled = harness::settle(&f, &msgs, Duration::from_secs(240)).await?;
    eprintln!("[cluster-failover] settled: {settled}");
    let now_on = shard_of(&moving)?;
    let all: BTreeSet<String> = accounts.iter().map(|(a, _)| a.clone()).collect();
    let records = stub_records(s, &all).await?;
    let delivered_between = |from_us: u64, to_us: u64| {
        records
            .iter()
            .filter(|r| {
                r["accountId"] == moving.as_str()
                    && is_2xx(r)
                    && (from_us..to_us).contains(&arrival_us(r))
            })
            .count()
    };
    let during = delivered_between(migrate_started_us, migrated_us);
    let after = delivered_between(migrated_us, u64::MAX);
    let moving_failed_closed = failed_closed(&f, &BTreeSet::from([moving.clone()]));
    let report = json!({
        "accounts": accounts.iter().map(|(a, p)| json!({"account": a, "primary": p})).collect::<Vec<_>>(),
        "messages": msgs.len(),
        "moved_account": moving,
        "from": from_port,
        "migration": moved,
        "keys_moved": keys_moved,
        "migration_ms": (migrated_us - migrate_started_us) / 1000,
        "now_served_by": now_on,
        "delivered": settled.delivered,
        "calls": settled.calls,
        "sent": settled.sent,
        "duplicates": 0,
        "limit_violations": 0,
        "moved_account_delivered_while_migrating": during,
        "moved_account_delivered_after": after,
        "moved_account_records_failed_closed": moving_failed_closed,
        "records_failed_closed": failed_closed(&f, &all),
        "took_s": started.elapsed().as_secs_f64(),
    });
    write_report("report-migration.json", &report)?;
    ensure!(
        settled.sent == msgs.len(),
        "not every message was sent: {report}"
    );
    ensure!(
        now_on == accounts[1].1,
        "the account's slot is not on its new shard: {report}"
    );
    ensure!(
        keys_moved > 0,
        "the migration moved no key: nothing to follow: {report}"
    );
    // The consumer worked on the account while its keys were split: it
    // either followed the redirections and sent, or met TRYAGAIN and failed
    // closed. Which of the two depends on which keys the batches moved
    // first (one run: 22 sent while migrating; another: 0 sent, 25 failed
    // closed), so neither alone is required.
    ensure!(
        during > 0 || moving_failed_closed > 0,
        "the consumer never touched the account while its slot was migrating: {report}"
    );
    ensure!(
        after >= AFTER_MIGRATION,
        "the account was not delivered from its new shard: {report}"
    );
    Ok(())
}
