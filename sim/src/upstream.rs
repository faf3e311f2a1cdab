//! The OnlyFans API model: records when each request arrives, per account
//! and per message, and answers after a seeded latency: 2xx, 503 at the
//! scenario's error rate or during a 5xx storm, or 429 with `Retry-After`
//! during a 429 storm.

use crate::workload::index_of;
use shared::delivery::{CallResult, Outcome, Upstream};
use shared::message::QueueMessage;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// One request as it reached the API.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Microseconds after the simulation's start.
    pub at_us: u64,
    /// The message's index in the workload (`usize::MAX`: not one of ours).
    pub message: usize,
    /// Answered 2xx.
    pub ok: bool,
    /// Answered 429.
    pub throttled: bool,
}

struct State {
    rng: fastrand::Rng,
    arrivals: Vec<Arrival>,
    refreshes: u64,
}

#[derive(Clone)]
pub struct SimUpstream {
    state: Arc<Mutex<State>>,
    start: Instant,
    latency: Duration,
    jitter_ms: u64,
    error_rate: f64,
    /// (from, until, Retry-After) in µs after the start.
    storms: Vec<(u64, u64, Duration)>,
    /// 5xx storms: (from, until) in µs after the start.
    outages: Vec<(u64, u64)>,
}

impl SimUpstream {
    pub fn new(seed: u64, start: Instant, cfg: crate::scenario::UpstreamCfg) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rng: fastrand::Rng::with_seed(seed),
                arrivals: Vec::new(),
                refreshes: 0,
            })),
            start,
            latency: Duration::from_millis(cfg.latency_ms),
            jitter_ms: cfg.jitter_ms,
            error_rate: cfg.error_rate,
            storms: cfg
                .storm
                .iter()
                .map(|st| {
                    (
                        st.at_s * 1_000_000,
                        (st.at_s + st.for_s) * 1_000_000,
                        Duration::from_secs(st.retry_after_s),
                    )
                })
                .collect(),
            outages: cfg
                .outage
                .iter()
                .map(|o| (o.at_s * 1_000_000, (o.at_s + o.for_s) * 1_000_000))
                .collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.lock().arrivals.clone()
    }
}

impl Upstream for SimUpstream {
    async fn send(&self, msg: &QueueMessage) -> CallResult {
        let (latency, ok) = {
            let mut s = self.lock();
            let extra = if self.jitter_ms > 0 {
                s.rng.u64(0..self.jitter_ms)
            } else {
                0
            };
            let ok = !(self.error_rate > 0.0 && s.rng.f64() < self.error_rate);
            (self.latency + Duration::from_millis(extra), ok)
        };
        // The request reaches the API halfway through the round trip.
        tokio::time::sleep(latency / 2).await;
        let at_us = Instant::now().duration_since(self.start).as_micros() as u64;
        let storm = self
            .storms
            .iter()
            .find(|(from, until, _)| (*from..*until).contains(&at_us))
            .map(|(_, _, retry_after)| *retry_after);
        let down = self
            .outages
            .iter()
            .any(|(from, until)| (*from..*until).contains(&at_us));
        let ok = ok && storm.is_none() && !down;
        self.lock().arrivals.push(Arrival {
            at_us,
            message: index_of(msg.message_id.as_uuid()).unwrap_or(usize::MAX),
            ok,
            throttled: storm.is_some(),
        });
        tokio::time::sleep(latency - latency / 2).await;
        let outcome = if let Some(retry_after) = storm {
            Outcome::RateLimited { retry_after }
        } else if ok {
            Outcome::Sent {
                upstream_id: Some(format!("of-{}", msg.message_id)),
            }
        } else {
            Outcome::Transient {
                reason: "upstream answered 503".into(),
            }
        };
        CallResult { outcome, latency }
    }

    async fn refresh_token(&self) {
        self.lock().refreshes += 1;
    }
}
