//! One scenario's run: the real consumer (`consumer::handler::handle` and
//! everything under it) on a paused current-thread tokio runtime, fed by the
//! SQS model through an event-source-mapping model.
//!
//! Nothing sleeps for real: every sleep and timeout, the consumer's and the
//! models', is on tokio's paused clock, which jumps to the next timer
//! whenever every task waits. Wall time for the consumer comes from
//! [`Clock::starting_at`], derived from that clock. One seed draws the
//! traffic and seeds every other random source, and a current-thread
//! runtime polls tasks in a fixed order, so a seed replays a run exactly.

use crate::limiter::TwinLimiter;
use crate::queue::SimQueue;
use crate::scenario::{Deferral, Scenario};
use crate::upstream::SimUpstream;
use crate::workload::{ID_BASE, Workload};
use aws_lambda_events::event::sqs::SqsEvent;
use consumer::process::{Deps, Settings};
use shared::breaker::{Breaker, BreakerConfig, Permit};
use shared::clock::Clock;
use shared::config::DeferralStrategy;
use shared::delivery::Jitter;
use shared::message::{
    AccountId, Content, MediaUrls, MessageId, NewMessage, QueueMessage, RecipientId,
};
use shared::telemetry::Metrics;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::MemStore;
use tokio::time::Instant;

/// The simulation's wall time at its start.
pub const WALL_START: time::OffsetDateTime = time::macros::datetime!(2026-12-01 00:00 UTC);
/// How long an empty receive waits for a message (SQS long polling's most).
const LONG_POLL: Duration = Duration::from_secs(20);
/// Most messages one `ReceiveMessage` returns.
const RECEIVE_MAX: usize = 10;
/// How often the end of the drain is looked for.
const DRAIN_CHECK: Duration = Duration::from_secs(5);

pub type SimDeps = Deps<MemStore, SimQueue, SimUpstream, TwinLimiter>;

/// What the Lambda side did.
#[derive(Debug, Clone, Copy, Default)]
pub struct LambdaStats {
    pub invocations: u64,
    /// Billed milliseconds (each invocation rounded up to 1 ms).
    pub billed_ms: u64,
    /// Invocations ended by the function timeout (nothing of the batch deleted).
    pub timeouts: u64,
    /// Invocations whose process died (`faults.crash_rate`).
    pub crashes: u64,
    pub records: u64,
}

/// Everything a run leaves for the checker.
pub struct Run {
    pub workload: Workload,
    pub queue: SimQueue,
    pub upstream: SimUpstream,
    pub deps: Arc<SimDeps>,
    pub lambda: LambdaStats,
    pub simulated: Duration,
}

/// Runs `s` on a fresh paused runtime.
pub fn run(s: &Scenario) -> anyhow::Result<Run> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    rt.block_on(simulate(s))
}

fn settings(s: &Scenario) -> Settings {
    let upstream_timeout = Duration::from_millis(s.consumer.upstream_timeout_ms);
    Settings {
        enabled: true,
        max_attempts: s.consumer.max_attempts,
        max_receive_count: s.queue.max_receive_count,
        claim_lease: upstream_timeout + Settings::CLAIM_MARGIN,
        record_budget: upstream_timeout + Settings::RECORD_MARGIN,
        in_process_wait: Duration::from_millis(s.consumer.in_process_wait_ms),
        queue_lateness: shared::delivery::policy::queue_lateness(Duration::from_secs(
            s.lambda.batching_window_s,
        )),
        deferral: match s.consumer.deferral {
            Deferral::Spread => DeferralStrategy::Spread,
            Deferral::Naive => DeferralStrategy::Naive,
        },
    }
}

async fn simulate(s: &Scenario) -> anyhow::Result<Run> {
    let mut rng = fastrand::Rng::with_seed(s.seed);
    let workload = Workload::generate(s, &mut rng);
    let clock = Clock::starting_at(WALL_START);
    let start = Instant::now();
    let queue = SimQueue::new(s.queue, rng.u64(..));
    let upstream = SimUpstream::new(rng.u64(..), start, s.upstream.clone());
    let mut limiter = TwinLimiter::new(
        clock,
        s.limits.per_minute,
        s.limits.burst,
        (
            s.limits.reserve_medium_percent,
            s.limits.reserve_low_percent,
        ),
    );
    if s.faults.limiter_extra_token {
        limiter = limiter.with_extra_token();
    }
    for own in &s.limits.accounts {
        let account = shared::message::AccountId::parse(&own.account)
            .map_err(|e| anyhow::anyhow!("limits.accounts: {}: {}", own.account, e.0))?;
        limiter.set_limit(
            &account,
            Some(shared::limiter::Rate {
                per_minute: f64::from(own.per_minute),
                burst: f64::from(own.burst),
            }),
        );
    }
    let deps = Arc::new(Deps {
        store: MemStore::default(),
        queue: queue.clone(),
        upstream: upstream.clone(),
        limiter,
        metrics: Metrics::disabled("Simulation", "consumer"),
        settings: settings(s),
        breaker: Breaker::new(BreakerConfig::default()),
        clock,
        jitter: Jitter::seeded(rng.u64(..)),
    });

    let bodies = bodies(&workload, clock)?;
    let arrivals: Vec<(u64, Option<u32>)> = workload
        .arrivals
        .iter()
        .map(|a| (a.at_us, a.batch))
        .collect();
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            // Entries so far per campaign source: every tenth starts a request.
            let mut batched: HashMap<u32, usize> = HashMap::new();
            for ((at_us, batch), (body, attrs)) in arrivals.into_iter().zip(bodies) {
                tokio::time::sleep_until(start + Duration::from_micros(at_us)).await;
                let first = batch.is_none_or(|source| {
                    let n = batched.entry(source).or_default();
                    *n += 1;
                    (*n - 1).is_multiple_of(shared::queue::BATCH_MAX)
                });
                if let Err(e) = queue.send_entry(body, attrs, Duration::ZERO, first) {
                    return Err(anyhow::anyhow!("the producer's send failed: {e}"));
                }
            }
            Ok(())
        })
    };

    let keep_waited = s.redis.wait_replicas > 0;
    for o in s.faults.redis_outage.clone() {
        let deps = Arc::clone(&deps);
        tokio::spawn(async move {
            let at = start + Duration::from_secs(o.at_s);
            // The replica's copy: the data as it was `loses_ms` before the
            // failover (asynchronous replication that far behind).
            let replica = if o.loses_ms > 0 {
                tokio::time::sleep_until(at - Duration::from_millis(o.loses_ms)).await;
                Some((deps.limiter.snapshot(), deps.store.snapshot()))
            } else {
                None
            };
            tokio::time::sleep_until(at).await;
            deps.limiter.down.store(true, Ordering::SeqCst);
            deps.store.unreachable.store(true, Ordering::SeqCst);
            if let Some((limiter_keys, store)) = &replica {
                deps.limiter.fail_over_to(limiter_keys, keep_waited);
                deps.store.fail_over_to(store, keep_waited);
            }
            if o.loses_limiter_keys {
                deps.limiter.forget_all();
            }
            tokio::time::sleep(Duration::from_secs(o.for_s)).await;
            deps.limiter.down.store(false, Ordering::SeqCst);
            deps.store.unreachable.store(false, Ordering::SeqCst);
        });
    }

    if s.faults.breaker_probe_leak {
        tokio::spawn(leak_first_probe(Arc::clone(&deps)));
    }

    let stats = Arc::new(Mutex::new(LambdaStats::default()));
    let crash = Crash {
        rate: s.faults.crash_rate,
        within: Duration::from_millis(s.faults.crash_within_ms),
    };
    let crash_seed = rng.u64(..);
    let pollers: Vec<_> = (0..s.lambda.max_concurrency)
        .map(|p| {
            tokio::spawn(poller(
                p,
                crash,
                fastrand::Rng::with_seed(crash_seed ^ u64::from(p)),
                Arc::clone(&deps),
                queue.clone(),
                s.lambda.batch_size as usize,
                Duration::from_secs(s.lambda.batching_window_s),
                Duration::from_secs(s.lambda.timeout_s),
                Arc::clone(&stats),
            ))
        })
        .collect();

    producer.await??;
    tokio::time::sleep_until(start + Duration::from_secs(s.duration_s)).await;
    let end = start + Duration::from_secs(s.duration_s + s.drain_s);
    while !queue.is_empty() && Instant::now() < end {
        tokio::time::sleep(DRAIN_CHECK).await;
    }
    for p in &pollers {
        p.abort();
    }
    let simulated = Instant::now().duration_since(start);
    let lambda = *stats.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Run {
        workload,
        queue,
        upstream,
        deps,
        lambda,
        simulated,
    })
}

/// `faults.breaker_probe_leak`: waits for the upstream's breaker to open,
/// takes the half-open probe the moment the open spell ends (before any
/// delivery can) and never settles it. Should a delivery win the probe, it
/// waits for the next opening.
async fn leak_first_probe(deps: Arc<SimDeps>) {
    loop {
        match deps.breaker.refusing() {
            Some(wait) if deps.breaker.is_open() => tokio::time::sleep(wait).await,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        if let Permit::Go(call) = deps.breaker.permit()
            && call.is_probe()
        {
            std::mem::forget(call);
            return;
        }
    }
}

/// The queue bodies and attributes the producer would enqueue.
fn bodies(w: &Workload, clock: Clock) -> anyhow::Result<Vec<(String, shared::queue::Attributes)>> {
    let content = Content::parse("Hello from the simulation")
        .map_err(|e| anyhow::anyhow!("content: {}", e.0))?;
    let accounts = w
        .accounts
        .iter()
        .map(|a| AccountId::parse(a).map_err(|e| anyhow::anyhow!("account {a}: {}", e.0)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    w.arrivals
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let id = uuid::Uuid::from_u128(ID_BASE + i as u128);
            let id = MessageId::parse(&id.hyphenated().to_string())
                .map_err(|e| anyhow::anyhow!("message id: {}", e.0))?;
            let recipient = RecipientId::parse(&format!("fan_{i}"))
                .map_err(|e| anyhow::anyhow!("recipient: {}", e.0))?;
            let account = accounts
                .get(a.account as usize)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("arrival for an unknown account"))?;
            let created = clock.now_utc() + Duration::from_micros(a.at_us);
            let msg = QueueMessage::new(
                id,
                account,
                NewMessage {
                    recipient_id: recipient,
                    content: content.clone(),
                    priority: a.priority,
                    media_urls: MediaUrls::default(),
                    send_at: None,
                },
                created,
            );
            let attrs = shared::queue::message_attributes(&msg, None);
            Ok((msg.to_body(), attrs))
        })
        .collect()
}

/// One concurrent slot of the event source mapping: receive a batch (long
/// polling while the queue is empty, holding a short batch for the batching
/// window), invoke the consumer with the
/// function's deadline, delete what is not in `batchItemFailures`. A timed
/// out invocation deletes nothing, as Lambda's does.
#[derive(Clone, Copy)]
struct Crash {
    rate: f64,
    within: Duration,
}

#[allow(clippy::too_many_arguments)]
async fn poller(
    slot: u32,
    crash: Crash,
    mut rng: fastrand::Rng,
    deps: Arc<SimDeps>,
    queue: SimQueue,
    batch_size: usize,
    window: Duration,
    timeout: Duration,
    stats: Arc<Mutex<LambdaStats>>,
) {
    let mut n = 0u64;
    // One ReceiveMessage returns at most 10.
    let per_request = batch_size.min(RECEIVE_MAX);
    loop {
        // One `ReceiveMessage` long-polling up to 20 s: a message that
        // becomes visible meanwhile is its answer; only an expired wait
        // ends it empty (and the next poll is a new request).
        let mut records = queue.take_visible(per_request);
        let until = Instant::now() + LONG_POLL;
        while records.is_empty() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let left = until - now;
            let wait = queue
                .next_visible()
                .map_or(left, |t| t.saturating_duration_since(now).min(left))
                .max(Duration::from_millis(10));
            let _ = tokio::time::timeout(wait, queue.notify().notified()).await;
            records = queue.take_visible(per_request);
        }
        queue.count_long_poll(records.is_empty());
        if records.is_empty() {
            continue;
        }
        // The batching window: a short batch waits for more, then is topped
        // up by receives of up to 10 until it is full or the queue has no
        // more (a batch of more than 10 needs a window, as in Lambda).
        if records.len() < batch_size && !window.is_zero() {
            tokio::time::sleep(window).await;
            loop {
                let want = (batch_size - records.len()).min(RECEIVE_MAX);
                let more = queue.receive(want);
                let got = more.len();
                records.extend(more);
                if got < want || records.len() >= batch_size {
                    break;
                }
            }
        }
        n += 1;
        let id = format!("sim-{slot}-{n}");
        let handles: Vec<(String, String)> = records
            .iter()
            .map(|r| {
                (
                    r.message_id.clone().unwrap_or_default(),
                    r.receipt_handle.clone().unwrap_or_default(),
                )
            })
            .collect();
        let count = records.len() as u64;
        let mut event = SqsEvent::default();
        event.records = records;
        let started = Instant::now();
        let deadline = started + timeout;
        let crash_after = (crash.rate > 0.0 && rng.f64() < crash.rate)
            .then(|| Duration::from_micros(rng.u64(0..crash.within.as_micros() as u64)));
        let invocation = tokio::time::timeout(
            timeout,
            consumer::handler::handle(&*deps, event, &id, deadline),
        );
        // A crash drops the invocation wherever it is: what it did so far
        // stays done, nothing after happens.
        let answer = match crash_after {
            Some(after) => tokio::select! {
                a = invocation => Some(a),
                () = tokio::time::sleep(after) => None,
            },
            None => Some(invocation.await),
        };
        let took = Instant::now().duration_since(started);
        {
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            s.invocations += 1;
            s.records += count;
            s.billed_ms += (took.as_micros() as u64).div_ceil(1000).max(1);
            match answer {
                None => s.crashes += 1,
                Some(Err(_)) => s.timeouts += 1,
                Some(Ok(_)) => {}
            }
        }
        if let Some(Ok(resp)) = answer {
            let failed: HashSet<&str> = resp
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            let done: Vec<String> = handles
                .into_iter()
                .filter(|(id, _)| !failed.contains(id.as_str()))
                .map(|(_, h)| h)
                .collect();
            queue.delete_batch(&done);
        }
    }
}
