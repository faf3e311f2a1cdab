use crate::lock;
use shared::limiter::{BucketView, BucketViewer, Decision, Limiter, LimiterError};
use shared::message::{AccountId, Priority};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Limiter decisions from a script: each `acquire` takes the next one
/// (`Err` for a limiter that cannot be reached), and allows once it is empty.
#[derive(Default)]
pub struct ScriptedLimiter {
    pub script: Mutex<VecDeque<Result<Decision, ()>>>,
    /// Every pause asked for (the upstream's `Retry-After`).
    pub paused: Mutex<Vec<Duration>>,
}

impl ScriptedLimiter {
    /// The next `acquire` answers `decision`.
    pub fn then(&self, decision: Decision) -> &Self {
        lock(&self.script).push_back(Ok(decision));
        self
    }

    /// The next `acquire` fails as an unreachable Redis would.
    pub fn then_unavailable(&self) -> &Self {
        lock(&self.script).push_back(Err(()));
        self
    }

    pub fn pauses(&self) -> Vec<Duration> {
        lock(&self.paused).clone()
    }
}

impl Limiter for ScriptedLimiter {
    async fn acquire(&self, _: &AccountId, _: Priority) -> Result<Decision, LimiterError> {
        match lock(&self.script).pop_front() {
            None => Ok(Decision::Allowed { tokens_left: 5.0 }),
            Some(Ok(d)) => Ok(d),
            Some(Err(())) => Err(LimiterError::Reply("fake limiter is down".into())),
        }
    }

    async fn pause(&self, _: &AccountId, wait: Duration) -> Result<(), LimiterError> {
        lock(&self.paused).push(wait);
        Ok(())
    }
}

/// One bucket view for every account (`GET /v1/status`).
pub struct MemBuckets {
    pub view: BucketView,
    pub fail: AtomicBool,
}

impl Default for MemBuckets {
    fn default() -> Self {
        Self {
            view: BucketView {
                tokens: 7.25,
                per_minute: 10.0,
                burst: 10.0,
                paused_for: None,
            },
            fail: AtomicBool::new(false),
        }
    }
}

impl BucketViewer for MemBuckets {
    async fn view(&self, _: &AccountId) -> Result<BucketView, LimiterError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(LimiterError::Reply("fake limiter is down".into()));
        }
        Ok(self.view)
    }
}
