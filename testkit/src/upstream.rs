use crate::lock;
use shared::delivery::{CallResult, Outcome, Upstream};
use shared::message::{MessageId, QueueMessage};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The OnlyFans API answering from a script: each call takes the next
/// outcome, and `Sent` with id `ofm_1` once the script is empty; each
/// answer comes after `latency` (none by default).
#[derive(Default)]
pub struct ScriptedUpstream {
    pub script: Mutex<VecDeque<Outcome>>,
    /// Every call, in order.
    pub calls: Mutex<Vec<MessageId>>,
    /// How long each call takes (tokio's clock).
    pub latency: Mutex<Duration>,
    /// Every call's message, start and answer (tokio's clock), in order of
    /// answer.
    pub spans: Mutex<Vec<(MessageId, tokio::time::Instant, tokio::time::Instant)>>,
    /// Token re-reads after a 401.
    pub refreshed: AtomicU32,
}

impl ScriptedUpstream {
    /// The next call answers `outcome`.
    pub fn then(&self, outcome: Outcome) -> &Self {
        lock(&self.script).push_back(outcome);
        self
    }

    /// Each call takes `latency` from now on.
    pub fn taking(&self, latency: Duration) -> &Self {
        *lock(&self.latency) = latency;
        self
    }

    /// The calls answered so far: message, start and answer.
    pub fn spans(&self) -> Vec<(MessageId, tokio::time::Instant, tokio::time::Instant)> {
        lock(&self.spans).clone()
    }

    /// Calls made so far.
    pub fn call_count(&self) -> usize {
        lock(&self.calls).len()
    }

    pub fn refresh_count(&self) -> u32 {
        self.refreshed.load(Ordering::SeqCst)
    }
}

impl Upstream for ScriptedUpstream {
    async fn send(&self, msg: &QueueMessage) -> CallResult {
        lock(&self.calls).push(msg.message_id);
        let outcome = lock(&self.script).pop_front().unwrap_or(Outcome::Sent {
            upstream_id: Some("ofm_1".into()),
        });
        let latency = *lock(&self.latency);
        let start = tokio::time::Instant::now();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        lock(&self.spans).push((msg.message_id, start, tokio::time::Instant::now()));
        CallResult {
            outcome,
            latency: latency.max(Duration::from_millis(3)),
        }
    }

    async fn refresh_token(&self) {
        self.refreshed.fetch_add(1, Ordering::SeqCst);
    }
}
