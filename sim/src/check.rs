//! Judges a run against the contract and measures it.
//!
//! - **violations**: requests that reached the OnlyFans API beyond
//!   `burst + rate × t / 60` in some interval of `t` seconds ending at them,
//!   per account (every request counts, answered 2xx or not).
//! - **lost**: accepted messages that were neither sent, failed, dead-lettered
//!   nor still queued at the end (includes messages SQS's retention expired).
//! - **duplicates**: messages the API answered 2xx more than once.
//! - **dlq_throttled_only**: dead-lettered messages whose upstream calls never
//!   failed (429s are waits, not failures): they only waited.
//! - **stalled_quiet**: messages of accounts that never exceeded their
//!   bucket still queued at the end, more than [`STALL_AFTER_S`] after they
//!   arrived: an account under its limit has nothing to wait for, so such a
//!   message is one that would never end `sent`, `failed` or `dead`.
//! - **lateness**: a sent message's time against the earliest a perfect
//!   bucket (FIFO per account, full burst) could have sent it; and against
//!   a perfect bucket that keeps each class's reserve back as the limiter
//!   does (a `medium` message needs one token more than it takes at a burst
//!   of 10, a `low` one two, every class at least the guard against the
//!   upstream's latency spread): the "ideal slot", where capacity
//!   kept for higher-priority traffic or for the curve is not lateness.

use crate::engine::{LambdaStats, Run};
use crate::limiter::class;
use crate::plot::{Busiest, PlotData};
use crate::queue::{DeadCause, Requests};
use crate::scenario::Scenario;
use crate::workload::index_of;
use serde::Serialize;
use shared::limiter::Rate;
use shared::message::QueueMessage;
use shared::store::Status;

/// AWS list prices (us-east-1, arm64), USD.
const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
const LAMBDA_PER_GB_S: f64 = 0.000_013_333_4;
const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
/// How long a quiet account's message may still be queued at the end of a
/// run before it counts as stalled: longer than any wait a scenario imposes
/// on purpose (429 storms, outages).
pub const STALL_AFTER_S: u64 = 3600;
/// Float slack of the curve check (counts are integers, times are µs).
const EPS: f64 = 1e-6;

/// One scenario's line in `report.json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScenarioReport {
    pub name: String,
    pub seed: u64,
    /// Real seconds the run took (the only field that differs between runs).
    pub wall_s: f64,
    pub simulated_s: f64,
    pub messages: u64,
    pub accounts: u64,
    pub violations: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub dlq_throttled_only: u64,
    /// Quiet accounts' messages still queued more than an hour after they
    /// arrived when the run ended.
    pub stalled_quiet: u64,
    /// Over accounts that had to wait: the time a perfect bucket needs for
    /// the messages they sent, over the time it took (1: every token used).
    pub budget_used_backlogged: Option<f64>,
    /// The most any account's k-th delivery trailed a perfect bucket's k-th.
    pub max_lateness_s: f64,
    /// The same, over backlogged accounts only.
    pub max_lateness_backlogged_s: f64,
    /// Over backlogged accounts, against a perfect bucket that keeps each
    /// class's reserve back (issue 15's "ideal slot + 2 s").
    pub max_lateness_backlogged_reserve_s: f64,
    /// p99 of arrival → upstream for accounts that never exceeded their bucket.
    pub quiet_p99_s: Option<f64>,
    pub sqs_requests_per_delivered: Option<f64>,
    pub handler_ms_per_delivered: Option<f64>,
    pub lambda_gb_s_per_delivered: Option<f64>,
    /// Lambda requests and GB-s plus SQS requests; Redis (a fixed node) not included.
    pub cost_per_million_usd: Option<f64>,
    pub detail: Detail,
    /// What the plots are drawn from (not in `report.json`).
    #[serde(skip)]
    pub plots: PlotData,
}

/// What the headline numbers are made of.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Detail {
    pub sent: u64,
    pub failed: u64,
    pub dead: u64,
    pub dead_by_redrive: u64,
    /// Still in the queue when the drain time ran out.
    pub pending: u64,
    pub expired: u64,
    pub upstream_requests: u64,
    /// Requests answered 429.
    pub upstream_429s: u64,
    /// The largest excess over the curve, in messages.
    pub worst_excess: f64,
    pub max_latency_s: f64,
    /// p99 of arrival → upstream (s) per priority: high, medium, low.
    pub p99_latency_s_by_priority: [Option<f64>; 3],
    pub invocations: u64,
    pub invocation_timeouts: u64,
    pub invocation_crashes: u64,
    pub sqs_receives: u64,
    pub sqs_empty_receives: u64,
    /// Of them, long polls that found nothing in their 20 s (an idle
    /// queue's cost; the rest are batching-window top-ups).
    pub sqs_empty_long_polls: u64,
    pub sqs_deletes: u64,
    pub sqs_visibility_changes: u64,
    pub sqs_sends: u64,
    pub stale_receipt_deletes: u64,
    pub visibility_refused: u64,
    pub visibility_refused_past_12h: u64,
    pub receives_over_in_flight_limit: u64,
    /// Records handed to the consumer (SQS receives of a message) per
    /// delivered message: `make bench`'s `receives_per_delivered`.
    pub receives_per_delivered: Option<f64>,
    /// `make bench`'s `budget_used`: over accounts that sent more than their
    /// burst, messages sent over `burst + rate × (last − first send) / 60`.
    pub budget_used_sent_over_curve: Option<f64>,
    /// A hash of every upstream request (time, message, answer): equal runs
    /// have equal fingerprints.
    pub fingerprint: String,
}

impl ScenarioReport {
    /// Whether the contract's guarantees held.
    pub fn passed(&self) -> bool {
        self.violations == 0
            && self.lost == 0
            && self.duplicates == 0
            && self.dlq_throttled_only == 0
            && self.stalled_quiet == 0
    }
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

fn per(x: f64, sent: u64, places: i32) -> Option<f64> {
    (sent > 0).then(|| round(x / sent as f64, places))
}

/// Earliest send times of a perfect bucket for sorted arrivals (µs).
fn ideal_times(arrivals: &[u64], per_minute: f64, burst: f64) -> Vec<u64> {
    ideal_times_keeping(arrivals, std::iter::repeat((1.0, 1.0)), per_minute, burst)
}

/// The same, where the k-th message needs the k-th of `need_take`'s first
/// figure in the bucket and takes its second (one token, plus what a bucket
/// too small to keep its class's reserve and guard owes:
/// [`Rate::need_and_take`]).
fn ideal_times_keeping(
    arrivals: &[u64],
    need_take: impl IntoIterator<Item = (f64, f64)>,
    per_minute: f64,
    burst: f64,
) -> Vec<u64> {
    let per_us = per_minute / 60e6;
    let mut tokens = burst;
    let mut last = 0u64;
    arrivals
        .iter()
        .zip(need_take)
        .map(|(&a, (need, take))| {
            let mut t = a.max(last);
            tokens = (tokens + (t - last) as f64 * per_us).min(burst);
            if tokens < need {
                t += ((need - tokens) / per_us).ceil() as u64;
                tokens = need;
            }
            tokens -= take;
            last = t;
            t
        })
        .collect()
}

/// Requests beyond the curve among sorted times, and the worst excess.
fn curve_violations(times: &[u64], per_minute: f64, burst: f64) -> (u64, f64) {
    let per_us = per_minute / 60e6;
    let mut min_g = f64::INFINITY;
    let (mut n, mut worst) = (0u64, 0.0f64);
    for (k, &t) in times.iter().enumerate() {
        // g(k) = k - rate·t; the window i..=k holds k - i + 1 requests in
        // t_k - t_i: too many when g(k) - g(i) + 1 > burst.
        let g = k as f64 - t as f64 * per_us;
        min_g = min_g.min(g);
        let excess = g - min_g + 1.0 - burst;
        if excess > EPS {
            n += 1;
            worst = worst.max(excess);
        }
    }
    (n, worst)
}

fn fnv(hash: &mut u64, x: u64) {
    for b in x.to_le_bytes() {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

fn p99(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

pub fn report(s: &Scenario, run: &Run, wall_s: f64) -> ScenarioReport {
    let w = &run.workload;
    let n = w.arrivals.len();
    let arrivals = run.upstream.arrivals();

    let mut ok_count = vec![0u32; n];
    let mut first_ok: Vec<Option<u64>> = vec![None; n];
    let mut failed_calls = vec![0u32; n];
    let mut throttled_calls = 0u64;
    let mut per_account: Vec<Vec<u64>> = vec![Vec::new(); w.accounts.len()];
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for a in &arrivals {
        fnv(&mut hash, a.at_us);
        fnv(&mut hash, a.message as u64);
        fnv(&mut hash, u64::from(a.ok));
        let Some(m) = w.arrivals.get(a.message) else {
            continue;
        };
        per_account[m.account as usize].push(a.at_us);
        if a.ok {
            ok_count[a.message] += 1;
            first_ok[a.message].get_or_insert(a.at_us);
        } else if a.throttled {
            throttled_calls += 1;
        } else {
            failed_calls[a.message] += 1;
        }
    }

    let (mut violations, mut worst_excess) = (0, 0.0f64);
    for (account, times) in per_account.iter().enumerate() {
        let (rate, burst) = s.limits.of(&w.accounts[account]);
        let (v, worst) = curve_violations(times, rate, burst);
        violations += v;
        worst_excess = worst_excess.max(worst);
    }

    let index = |body: &str| {
        QueueMessage::parse(body)
            .ok()
            .and_then(|m| index_of(m.message_id.as_uuid()))
    };
    let mut dead = vec![false; n];
    let (mut dead_count, mut by_redrive, mut throttled_only) = (0, 0, 0);
    for d in run.queue.dlq() {
        if let Some(i) = index(&d.body) {
            dead_count += 1;
            dead[i] = true;
            if d.cause == DeadCause::Redrive {
                by_redrive += 1;
            }
            if failed_calls[i] == 0 {
                throttled_only += 1;
            }
        }
    }
    let mut pending = vec![false; n];
    for b in run.queue.remaining_bodies() {
        if let Some(i) = index(&b) {
            pending[i] = true;
        }
    }
    let expired = run.queue.expired().len() as u64;

    let (mut sent, mut failed, mut lost, mut duplicates, mut pending_count) = (0, 0, 0, 0, 0);
    for i in 0..n {
        if ok_count[i] > 1 {
            duplicates += 1;
        }
        if ok_count[i] > 0 {
            sent += 1;
            continue;
        }
        let a = &w.arrivals[i];
        let id = uuid::Uuid::from_u128(crate::workload::ID_BASE + i as u128);
        let is_failed = shared::message::MessageId::parse(&id.to_string())
            .ok()
            .zip(shared::message::AccountId::parse(&w.accounts[a.account as usize]).ok())
            .and_then(|(id, acct)| run.deps.store.record(acct.as_str(), &id))
            .is_some_and(|r| r.status == Status::Failed);
        if is_failed {
            failed += 1;
        } else if pending[i] {
            pending_count += 1;
        } else if !dead[i] {
            lost += 1;
        }
    }

    // Lateness against a perfect bucket, per account, in arrival order.
    let mut by_account: Vec<Vec<usize>> = vec![Vec::new(); w.accounts.len()];
    for (i, a) in w.arrivals.iter().enumerate() {
        by_account[a.account as usize].push(i);
    }
    let (mut max_lateness, mut max_latency) = (0.0f64, 0.0f64);
    let (mut max_lateness_backlogged, mut max_lateness_reserve) = (0.0f64, 0.0f64);
    let reserve_pct = [
        0,
        s.limits.reserve_medium_percent,
        s.limits.reserve_low_percent,
    ];
    let mut quiet = Vec::new();
    let mut quiet_points: Vec<(f64, f64)> = Vec::new();
    let end_us = run.simulated.as_micros() as u64;
    let mut stalled_quiet = 0u64;
    let busiest_index =
        (0..by_account.len()).max_by_key(|&a| (by_account[a].len(), usize::MAX - a));
    let mut busiest = None;
    let mut by_priority: [Vec<f64>; 3] = Default::default();
    let (mut ideal_span, mut actual_span) = (0.0f64, 0.0f64);
    let (mut curve_sent, mut curve_budget) = (0.0f64, 0.0f64);
    for (account, ids) in by_account.iter().enumerate() {
        if ids.is_empty() {
            continue;
        }
        let times: Vec<u64> = ids.iter().map(|&i| w.arrivals[i].at_us).collect();
        // Each account against the limit in force for it.
        let (rate, burst) = s.limits.of(&w.accounts[account]);
        let ideal = ideal_times(&times, rate, burst);
        let backlogged = ideal.iter().zip(&times).any(|(i, t)| i > t);
        // Only backlogged accounts are measured against it.
        let ideal_reserve = if backlogged {
            let limit = Rate {
                per_minute: rate,
                burst,
            };
            let kept = ids
                .iter()
                .map(|&i| limit.need_and_take(reserve_pct[class(w.arrivals[i].priority)]));
            ideal_times_keeping(&times, kept, rate, burst)
        } else {
            Vec::new()
        };
        if !backlogged {
            stalled_quiet += ids
                .iter()
                .zip(&times)
                .filter(|&(&i, &t)| {
                    first_ok[i].is_none()
                        && pending[i]
                        && end_us.saturating_sub(t) > STALL_AFTER_S * 1_000_000
                })
                .count() as u64;
        }
        // Lateness is the account's k-th delivery against the perfect
        // bucket's k-th: order within an account is not promised, and a
        // reordering is not a delay of the account.
        let mut sends: Vec<u64> = Vec::with_capacity(ids.len());
        for (k, &i) in ids.iter().enumerate() {
            let Some(at) = first_ok[i] else {
                continue;
            };
            sends.push(at);
            let latency = at.saturating_sub(times[k]) as f64 / 1e6;
            max_latency = max_latency.max(latency);
            by_priority[class(w.arrivals[i].priority)].push(latency);
            if !backlogged {
                quiet.push(latency);
                quiet_points.push((times[k] as f64 / 1e6, latency));
            }
        }
        sends.sort_unstable();
        if busiest_index == Some(account) {
            busiest = Some(Busiest {
                account: w.accounts[account].clone(),
                arrivals_s: times.iter().map(|t| *t as f64 / 1e6).collect(),
                sends_s: sends.iter().map(|t| *t as f64 / 1e6).collect(),
                per_minute: rate,
                burst,
            });
        }
        for (at, ideal_at) in sends.iter().zip(&ideal) {
            let late = at.saturating_sub(*ideal_at) as f64 / 1e6;
            max_lateness = max_lateness.max(late);
            if backlogged {
                max_lateness_backlogged = max_lateness_backlogged.max(late);
            }
        }
        for (at, reserve_at) in sends.iter().zip(&ideal_reserve) {
            let late = at.saturating_sub(*reserve_at) as f64 / 1e6;
            max_lateness_reserve = max_lateness_reserve.max(late);
        }
        let last_actual = sends.last().copied().unwrap_or(0);
        if sends.len() as f64 > burst {
            let first_send = sends.first().copied().unwrap_or(0);
            curve_sent += sends.len() as f64;
            curve_budget += burst + rate * (last_actual - first_send) as f64 / 60e6;
        }
        // The perfect bucket's time for as many messages as went out,
        // against the time they took.
        if backlogged && !sends.is_empty() {
            let first = times[0];
            ideal_span += ideal[sends.len() - 1].saturating_sub(first) as f64;
            actual_span += last_actual.saturating_sub(first) as f64;
        }
    }

    let req: Requests = run.queue.requests();
    let refusals = run.queue.refusals();
    let l: LambdaStats = run.lambda;
    let gb_s = l.billed_ms as f64 / 1000.0 * f64::from(s.lambda.memory_mb) / 1024.0;
    let cost = l.invocations as f64 * LAMBDA_PER_REQUEST
        + gb_s * LAMBDA_PER_GB_S
        + req.total() as f64 * SQS_PER_REQUEST;

    ScenarioReport {
        name: s.name.clone(),
        seed: s.seed,
        wall_s: round(wall_s, 3),
        simulated_s: round(run.simulated.as_secs_f64(), 3),
        messages: n as u64,
        accounts: w.accounts.len() as u64,
        violations,
        lost,
        duplicates,
        dlq_throttled_only: throttled_only,
        stalled_quiet,
        budget_used_backlogged: (actual_span > 0.0).then(|| round(ideal_span / actual_span, 4)),
        max_lateness_s: round(max_lateness, 3),
        max_lateness_backlogged_s: round(max_lateness_backlogged, 3),
        max_lateness_backlogged_reserve_s: round(max_lateness_reserve, 3),
        quiet_p99_s: p99(quiet).map(|x| round(x, 3)),
        sqs_requests_per_delivered: per(req.total() as f64, sent, 4),
        handler_ms_per_delivered: per(l.billed_ms as f64, sent, 2),
        lambda_gb_s_per_delivered: per(gb_s, sent, 6),
        cost_per_million_usd: per(cost * 1e6, sent, 4),
        detail: Detail {
            sent,
            failed,
            dead: dead_count,
            dead_by_redrive: by_redrive,
            pending: pending_count,
            expired,
            upstream_requests: arrivals.len() as u64,
            upstream_429s: throttled_calls,
            worst_excess: round(worst_excess, 4),
            max_latency_s: round(max_latency, 3),
            p99_latency_s_by_priority: by_priority.map(|v| p99(v).map(|x| round(x, 3))),
            invocations: l.invocations,
            invocation_timeouts: l.timeouts,
            invocation_crashes: l.crashes,
            sqs_receives: req.receive,
            sqs_empty_receives: req.receive_empty,
            sqs_empty_long_polls: req.long_poll_empty,
            sqs_deletes: req.delete,
            sqs_visibility_changes: req.change_visibility,
            sqs_sends: req.send,
            stale_receipt_deletes: refusals.stale_deletes,
            visibility_refused: refusals.visibility_refused,
            visibility_refused_past_12h: refusals.visibility_past_12h,
            receives_over_in_flight_limit: refusals.over_limit,
            receives_per_delivered: per(l.records as f64, sent, 4),
            budget_used_sent_over_curve: (curve_budget > 0.0)
                .then(|| round(curve_sent / curve_budget, 4)),
            fingerprint: format!("{hash:016x}"),
        },
        plots: PlotData {
            busiest,
            quiet: quiet_points,
            simulated_s: run.simulated.as_secs_f64(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn the_curve_check_counts_what_exceeds_burst_plus_rate() {
        // 10/min, burst 10: ten at once are fine, an eleventh is not ...
        assert_eq!(curve_violations(&[0; 10], 10.0, 10.0).0, 0);
        assert_eq!(curve_violations(&[0; 11], 10.0, 10.0).0, 1);
        // ... unless it comes one refill (6 s) later.
        let mut t = vec![0; 10];
        t.push(6 * S);
        assert_eq!(curve_violations(&t, 10.0, 10.0).0, 0);
        t.push(6 * S + 1);
        assert_eq!(curve_violations(&t, 10.0, 10.0).0, 1);
        // A violation in a window that does not start at the first request.
        let t = [0, 100 * S, 100 * S, 100 * S + 1];
        assert_eq!(curve_violations(&t, 1.0, 2.0).0, 1);
    }

    #[test]
    fn a_perfect_bucket_sends_the_burst_then_one_per_interval() {
        let ideal = ideal_times(&[0; 12], 10.0, 10.0);
        assert_eq!(&ideal[..10], &[0; 10]);
        assert_eq!(ideal[10], 6 * S);
        assert_eq!(ideal[11], 12 * S);
        assert_eq!(curve_violations(&ideal, 10.0, 10.0).0, 0);
    }

    #[test]
    fn a_perfect_bucket_keeping_a_reserve_sends_one_fewer_at_once() {
        // medium at burst 10 keeps one token: nine at once, then one per
        // interval, one interval behind the full bucket.
        let ideal = ideal_times_keeping(&[0; 12], [(2.0, 1.0); 12], 10.0, 10.0);
        assert_eq!(&ideal[..9], &[0; 9]);
        assert_eq!(&ideal[9..], &[6 * S, 12 * S, 18 * S]);
        // A high message (nothing kept) behind them takes the reserve.
        let mut need_take = [(2.0, 1.0); 10];
        need_take[9] = (1.0, 1.0);
        assert_eq!(
            ideal_times_keeping(&[0; 10], need_take, 10.0, 10.0),
            [0; 10]
        );
        assert_eq!(curve_violations(&ideal, 10.0, 10.0).0, 0);
    }

    #[test]
    fn the_ideal_keeps_what_the_limiter_keeps() {
        // The limiter's own figures: at 60/min a high send leaves the guard
        // (a tenth of a token), so the tenth of a burst of 10 waits for it.
        // (Float refill: a microsecond either way.)
        let near = |got: u64, want: u64| got.abs_diff(want) <= 2;
        let limit = Rate {
            per_minute: 60.0,
            burst: 10.0,
        };
        let ideal = ideal_times_keeping(&[0; 10], [limit.need_and_take(0); 10], 60.0, 10.0);
        assert_eq!(&ideal[..9], &[0; 9]);
        assert!(near(ideal[9], S / 10), "{ideal:?}");
        // A burst of 1 owes the guard: one interval and the spread apart.
        let one = Rate {
            per_minute: 60.0,
            burst: 1.0,
        };
        let ideal = ideal_times_keeping(&[0; 3], [one.need_and_take(0); 3], 60.0, 1.0);
        assert_eq!(ideal[0], 0);
        assert!(near(ideal[1], S + S / 10), "{ideal:?}");
        assert!(near(ideal[2], 2 * (S + S / 10)), "{ideal:?}");
    }
}
