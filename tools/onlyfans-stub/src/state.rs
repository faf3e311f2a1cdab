//! Shared state: configuration, arrival history, request records, idempotency
//! memory and fault rules, behind one async mutex.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{
    config::{LimitView, StubConfig},
    faults::FaultRule,
    limit,
};

/// Wall clock in microseconds since the Unix epoch that never goes backwards:
/// the system time read once at start, plus a monotonic [`Instant`] since then.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// System time at the anchor, µs since the Unix epoch.
    anchor_wall_us: i64,
    /// Monotonic instant of the anchor.
    anchor: Instant,
}

impl Clock {
    /// Anchors the clock now.
    #[must_use]
    pub fn new() -> Self {
        let anchor = Instant::now();
        let anchor_wall_us = system_us();
        Self {
            anchor_wall_us,
            anchor,
        }
    }

    /// Microseconds since the Unix epoch, monotonic.
    #[must_use]
    pub fn now_us(&self) -> i64 {
        let elapsed = i64::try_from(self.anchor.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.anchor_wall_us.saturating_add(elapsed)
    }

    /// The system clock now, µs since the Unix epoch: what other processes
    /// read as "now". It follows the system's corrections, so it can drift
    /// from [`Clock::now_us`] (which measures intervals) while the stub runs.
    #[must_use]
    pub fn wall_us(&self) -> i64 {
        system_us()
    }
}

fn system_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// One call to the message route, as `GET /__requests` lists it. Never holds
/// the message text, only its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Arrival number since the last reset, from 1, in arrival order.
    pub seq: u64,
    /// `{accountId}` from the path.
    pub account_id: String,
    /// `{recipientId}` from the path.
    pub recipient_id: String,
    /// The `Idempotency-Key` header, `null` when missing.
    pub idempotency_key: Option<String>,
    /// Arrival time (start of the handler), microseconds since the Unix
    /// epoch, monotonic: the limit is judged on it, and intervals between
    /// arrivals are measured with it.
    pub received_at_us: i64,
    /// The system clock at arrival, microseconds since the Unix epoch: to
    /// compare with a time another process read from its own clock (a
    /// `sendAt`, a client's send time). Not monotonic: the system may
    /// correct its clock while the stub runs (a CI run found the two 200 ms
    /// apart after 15 minutes), so `receivedAtUs` can drift from it.
    pub received_at_wall_us: i64,
    /// HTTP status answered; 0 when no answer was sent (a `reset` fault, a
    /// client that hung up first) or the answer is still being prepared.
    pub status: u16,
    /// The call broke the rate limit (answered 429 `rate_limited`).
    pub violation: bool,
    /// The call repeated an `Idempotency-Key` already answered 2xx: the
    /// product sent the same message twice.
    pub duplicate: bool,
    /// Kind of the injected fault applied (`status`, `slow`, `reset`), else `null`.
    pub fault: Option<String>,
    /// Id of the fault rule applied, else `null`.
    pub fault_id: Option<u64>,
    /// Length of `text` in characters (0 when the body had none).
    pub text_len: usize,
    /// Number of `mediaUrls` (0 when absent).
    pub media_urls: usize,
}

/// Counters of one account (or of all, at the top of [`Stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Calls recorded.
    pub total: u64,
    /// Calls answered 2xx that were not duplicates: messages delivered.
    pub accepted: u64,
    /// Calls that broke the rate limit.
    pub violations: u64,
    /// Calls that replayed an already delivered message.
    pub duplicates: u64,
}

impl Counts {
    fn add(&mut self, r: &RequestRecord) {
        self.total += 1;
        if (200..300).contains(&r.status) && !r.duplicate {
            self.accepted += 1;
        }
        if r.violation {
            self.violations += 1;
        }
        if r.duplicate {
            self.duplicates += 1;
        }
    }
}

/// Body of `GET /__stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Calls recorded since the last reset.
    pub total: u64,
    /// Messages delivered (2xx, not duplicates).
    pub accepted: u64,
    /// Rate-limit violations.
    pub violations: u64,
    /// Duplicate deliveries.
    pub duplicates: u64,
    /// The same counters per account id.
    pub accounts: BTreeMap<String, Counts>,
    /// The limit in force.
    pub config: LimitView,
}

/// What the handler learns when a call is admitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// State generation; a reset in between makes the late result be ignored.
    pub epoch: u64,
    /// The record's sequence number.
    pub seq: u64,
    /// Whether the call broke the limit.
    pub violation: bool,
    /// Seconds to send in `Retry-After` when it did.
    pub retry_after: u64,
}

/// How a call ended, written into its record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// HTTP status answered (0: none).
    pub status: u16,
    /// The call replayed an already delivered key.
    pub duplicate: bool,
    /// Kind and id of the fault rule applied.
    pub fault: Option<(String, u64)>,
    /// Characters in `text`.
    pub text_len: usize,
    /// Entries in `mediaUrls`.
    pub media_urls: usize,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// The limit and token in force.
    pub config: StubConfig,
    /// Bumped by every reset.
    pub epoch: u64,
    /// Records since the last reset; `records[i].seq == i + 1`.
    pub records: Vec<RequestRecord>,
    /// Arrival times per account, sorted ascending.
    pub arrivals: HashMap<String, Vec<i64>>,
    /// Bodies of 2xx answers per (account, idempotency key).
    pub delivered: HashMap<(String, String), serde_json::Value>,
    /// Fault rules in insertion order.
    pub faults: Vec<FaultRule>,
    /// Next fault rule id (never reused, not reset).
    pub next_fault_id: u64,
    /// Accounts with a limit of their own (`PUT /__accounts/{a}/limit`):
    /// rate per minute and burst; the tolerance stays the global one. Kept
    /// across resets, like the global limit: it is configuration.
    pub account_limits: HashMap<String, AccountLimit>,
}

/// One account's own limit at the stub.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountLimit {
    /// Sustained messages per minute (> 0).
    pub rate_per_minute: f64,
    /// Bucket capacity (>= 1).
    pub burst: u32,
}

/// The stub's shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct StubState {
    /// Everything mutable, behind one async mutex (never held across a sleep).
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// Source of arrival times.
    pub(crate) clock: Clock,
}

impl StubState {
    /// Fresh state enforcing `config`.
    #[must_use]
    pub fn new(config: StubConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                config,
                epoch: 0,
                records: Vec::new(),
                arrivals: HashMap::new(),
                delivered: HashMap::new(),
                faults: Vec::new(),
                next_fault_id: 1,
                account_limits: HashMap::new(),
            })),
            clock: Clock::new(),
        }
    }

    /// Registers an arrival, judges it against the limit and opens its record.
    pub(crate) async fn admit(
        &self,
        received_at_us: i64,
        received_at_wall_us: i64,
        account_id: &str,
        recipient_id: &str,
        idempotency_key: Option<String>,
    ) -> Ticket {
        let mut inner = self.inner.lock().await;
        let limit = inner.limit_of(account_id);
        let arrivals = inner.arrivals.entry(account_id.to_owned()).or_default();
        let index = limit::insertion_index(arrivals, received_at_us);
        arrivals.insert(index, received_at_us);
        let violation = limit::is_violation(arrivals, index, &limit);
        let retry_after = if violation {
            limit::retry_after_secs(arrivals, received_at_us, &limit)
        } else {
            0
        };
        let seq = inner.records.len() as u64 + 1;
        inner.records.push(RequestRecord {
            seq,
            account_id: account_id.to_owned(),
            recipient_id: recipient_id.to_owned(),
            idempotency_key,
            received_at_us,
            received_at_wall_us,
            status: 0,
            violation,
            duplicate: false,
            fault: None,
            fault_id: None,
            text_len: 0,
            media_urls: 0,
        });
        Ticket {
            epoch: inner.epoch,
            seq,
            violation,
            retry_after,
        }
    }

    /// Stats over the records since the last reset.
    pub async fn stats(&self) -> Stats {
        let inner = self.inner.lock().await;
        let mut all = Counts::default();
        let mut accounts: BTreeMap<String, Counts> = BTreeMap::new();
        for r in &inner.records {
            all.add(r);
            accounts.entry(r.account_id.clone()).or_default().add(r);
        }
        Stats {
            total: all.total,
            accepted: all.accepted,
            violations: all.violations,
            duplicates: all.duplicates,
            accounts,
            config: inner.config.view(),
        }
    }

    /// Records since the last reset, in arrival order, optionally only one
    /// account's and only those with `seq > since_seq`.
    pub async fn requests(&self, account: Option<&str>, since_seq: u64) -> Vec<RequestRecord> {
        let inner = self.inner.lock().await;
        let start = usize::try_from(since_seq)
            .unwrap_or(usize::MAX)
            .min(inner.records.len());
        inner.records[start..]
            .iter()
            .filter(|r| account.is_none_or(|a| r.account_id == a))
            .cloned()
            .collect()
    }
}

impl Inner {
    /// The limit an account's calls are judged against: its own, if set.
    /// Every arrival of the account since the last reset is judged against
    /// the limit in force now, so set an account's limit before it sends.
    pub(crate) fn limit_of(&self, account: &str) -> limit::RateLimit {
        let mut limit = self.config.limit();
        if let Some(own) = self.account_limits.get(account) {
            limit.rate_per_minute = own.rate_per_minute;
            limit.burst = own.burst;
        }
        limit
    }

    /// Writes how a call ended into its record, unless a reset came in between.
    pub(crate) fn finish(&mut self, ticket: &Ticket, outcome: Outcome) {
        if ticket.epoch != self.epoch {
            return;
        }
        let Some(index) = usize::try_from(ticket.seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
        else {
            return;
        };
        if let Some(record) = self.records.get_mut(index) {
            record.status = outcome.status;
            record.duplicate = outcome.duplicate;
            if let Some((kind, id)) = outcome.fault {
                record.fault = Some(kind);
                record.fault_id = Some(id);
            }
            record.text_len = outcome.text_len;
            record.media_urls = outcome.media_urls;
        }
    }

    /// Forgets everything but the configuration and the fault id counter.
    pub(crate) fn reset(&mut self) {
        self.epoch += 1;
        self.records.clear();
        self.arrivals.clear();
        self.delivered.clear();
        self.faults.clear();
    }
}
