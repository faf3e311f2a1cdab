use crate::lock;
use shared::limiter::{
    AccountLimit, AccountLimits, BucketView, BucketViewer, Decision, LimitView, Limiter,
    LimiterError, Rate,
};
use shared::message::{AccountId, Priority};
use std::collections::HashMap;
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
    /// For every `acquire`, whether the message held a slot.
    pub held: Mutex<Vec<bool>>,
    /// For every `acquire`, when the message was due (µs), if given.
    pub due: Mutex<Vec<Option<u64>>>,
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

    /// For every `acquire` so far, whether the message held a slot.
    pub fn asked_held(&self) -> Vec<bool> {
        lock(&self.held).clone()
    }

    /// For every `acquire` so far, when the message was due (µs).
    pub fn asked_due(&self) -> Vec<Option<u64>> {
        lock(&self.due).clone()
    }
}

impl Limiter for ScriptedLimiter {
    async fn acquire_as(
        &self,
        _: &AccountId,
        _: Priority,
        held: bool,
        due_us: Option<u64>,
    ) -> Result<Decision, LimiterError> {
        lock(&self.held).push(held);
        lock(&self.due).push(due_us);
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

/// One bucket view for every account (`GET /v1/status`), and accounts' own
/// limits as the Redis adapter keeps them (an own limit replaces the view's
/// rate and burst, and caps its tokens, as the script does).
pub struct MemBuckets {
    pub view: BucketView,
    /// Accounts' own limits, by account id.
    pub limits: Mutex<HashMap<String, AccountLimit>>,
    /// Every call fails as an unreachable Redis would.
    pub fail: AtomicBool,
}

impl MemBuckets {
    fn defaults(&self) -> Rate {
        Rate {
            per_minute: self.view.per_minute,
            burst: self.view.burst,
        }
    }

    fn check(&self) -> Result<(), LimiterError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(LimiterError::Reply("fake limiter is down".into()));
        }
        Ok(())
    }
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
            limits: Mutex::default(),
            fail: AtomicBool::new(false),
        }
    }
}

impl BucketViewer for MemBuckets {
    async fn view(&self, account: &AccountId) -> Result<BucketView, LimiterError> {
        self.check()?;
        let rate = self.limit(account).await?.rate;
        Ok(BucketView {
            tokens: self.view.tokens.min(rate.burst),
            per_minute: rate.per_minute,
            burst: rate.burst,
            ..self.view
        })
    }
}

impl AccountLimits for MemBuckets {
    async fn limit(&self, account: &AccountId) -> Result<LimitView, LimiterError> {
        self.check()?;
        let own = lock(&self.limits).get(account.as_str()).copied();
        Ok(LimitView::of(self.defaults(), own))
    }

    async fn set_limit(
        &self,
        account: &AccountId,
        limit: AccountLimit,
    ) -> Result<(), LimiterError> {
        self.check()?;
        lock(&self.limits).insert(account.as_str().to_owned(), limit);
        Ok(())
    }

    async fn clear_limit(&self, account: &AccountId) -> Result<bool, LimiterError> {
        self.check()?;
        Ok(lock(&self.limits).remove(account.as_str()).is_some())
    }
}
