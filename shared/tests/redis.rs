//! The Lua scripts against a real Redis (`REDIS_URL`, default
//! redis://127.0.0.1:6379). Each test uses its own account ids, so tests
//! sharing the server never touch each other's keys.

use shared::config::{LimiterClock, LimiterConfig};
use shared::idempotency::{IdempotencyKey, IdempotencyState, IdempotencyStore};
use shared::limiter::bucket::{self, BucketState, Input, Rate};
use shared::limiter::{BucketViewer, Decision, Limiter, RedisLimiter};
use shared::message::{AccountId, MessageId, Priority};
use shared::store::{ClaimOutcome, ClaimStore, RedisStore, Status, StatusStore, Transition};
use std::num::NonZeroU32;
use std::time::Duration;
use time::OffsetDateTime;

async fn conn() -> redis::aio::ConnectionManager {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    shared::store::connect(&url)
        .await
        .expect("a Redis must answer at REDIS_URL")
}

fn account(tag: &str) -> AccountId {
    AccountId::parse(&format!("t_{tag}_{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn limiter(
    conn: redis::aio::ConnectionManager,
    per_minute: u32,
    burst: u32,
    clock: LimiterClock,
) -> RedisLimiter {
    RedisLimiter::new(
        conn,
        LimiterConfig {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            reserve_medium_percent: 10,
            reserve_low_percent: 20,
            clock,
        },
    )
}

#[tokio::test]
async fn script_matches_twin() {
    // Same inputs, same clock (client mode makes it deterministic): the Lua
    // script and the Rust twin must decide alike, step by step.
    let l = limiter(conn().await, 600, 3, LimiterClock::Client);
    let a = account("twin");
    let rate = Rate {
        per_minute: 600.0,
        burst: 3.0,
    };
    let (mut bucket_state, mut horizon): (Option<BucketState>, Option<u64>) = (None, None);
    let t0 = 1_800_000_000_000_000u64;
    let steps: [(u64, f64); 12] = [
        (0, 0.0),
        (0, 0.0),
        (0, 1.0),
        (0, 0.0),
        (0, 0.0),
        (50_000, 0.0),
        (50_000, 0.0),
        (250_000, 2.0),
        (0, 0.0),
        (10_000_000, 1.0),
        (0, 2.0),
        (0, 0.0),
    ];
    let mut now = t0;
    for (i, (gap, reserve)) in steps.iter().enumerate() {
        now += gap;
        let out = bucket::decide(
            rate,
            Input {
                bucket: bucket_state,
                horizon_us: horizon,
                pause_us: None,
                now_us: now,
                reserve: *reserve,
            },
        );
        if let Some(b) = out.bucket {
            bucket_state = Some(b);
        }
        if let Some(h) = out.horizon_us {
            horizon = Some(h);
        }
        let got = l
            .acquire_raw(&a, Priority::High, *reserve, now)
            .await
            .unwrap();
        match (out.decision, got) {
            (Decision::Allowed { tokens_left: x }, Decision::Allowed { tokens_left: y }) => {
                assert!((x - y).abs() < 0.002, "step {i}: {x} vs {y}")
            }
            (Decision::Throttled { wait: x, .. }, Decision::Throttled { wait: y, .. }) => {
                assert_eq!(x, y, "step {i}")
            }
            (x, y) => panic!("step {i}: twin {x:?}, script {y:?}"),
        }
    }
}

#[tokio::test]
async fn redis_clock_bucket_allows_burst_then_throttles() {
    let l = limiter(conn().await, 60, 5, LimiterClock::Redis);
    let a = account("burst");
    for _ in 0..5 {
        assert!(l.acquire(&a, Priority::High).await.unwrap().is_allowed());
    }
    let d = l.acquire(&a, Priority::High).await.unwrap();
    assert!(matches!(d, Decision::Throttled { .. }), "{d:?}");
    assert!(
        d.wait() > Duration::from_millis(500) && d.wait() <= Duration::from_secs(1),
        "{d:?}"
    );
    // The next denial is spread one interval (1 s) further.
    let d2 = l.acquire(&a, Priority::High).await.unwrap();
    assert!(
        d2.wait() >= d.wait() + Duration::from_millis(900),
        "{d:?} then {d2:?}"
    );
}

#[tokio::test]
async fn priorities_keep_headroom_in_redis() {
    let l = limiter(conn().await, 60, 10, LimiterClock::Redis);
    let a = account("prio");
    let mut low = 0;
    while l.acquire(&a, Priority::Low).await.unwrap().is_allowed() {
        low += 1;
    }
    assert_eq!(low, 8, "low leaves 20 % of the burst");
    assert!(
        l.acquire(&a, Priority::Medium).await.unwrap().is_allowed(),
        "medium leaves 10 %"
    );
    assert!(!l.acquire(&a, Priority::Medium).await.unwrap().is_allowed());
    assert!(
        l.acquire(&a, Priority::High).await.unwrap().is_allowed(),
        "high takes the last token"
    );
    assert!(!l.acquire(&a, Priority::High).await.unwrap().is_allowed());
}

#[tokio::test]
async fn a_pause_holds_every_priority_and_keeps_the_longer() {
    let l = limiter(conn().await, 600, 10, LimiterClock::Redis);
    let a = account("pause");
    l.pause(&a, Duration::from_secs(30)).await.unwrap();
    l.pause(&a, Duration::from_secs(2)).await.unwrap();
    let d = l.acquire(&a, Priority::High).await.unwrap();
    assert!(matches!(d, Decision::Paused { .. }), "{d:?}");
    assert!(d.wait() > Duration::from_secs(25), "{d:?}");
    let v = l.view(&a).await.unwrap();
    assert_eq!(v.tokens, 10.0, "a paused call takes nothing");
    assert!(v.paused_for.is_some());
}

#[tokio::test]
async fn concurrent_callers_never_take_more_than_the_burst() {
    let c = conn().await;
    let a = account("race");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let l = limiter(c.clone(), 1, 7, LimiterClock::Redis);
            let a = a.clone();
            tokio::spawn(async move { l.acquire(&a, Priority::High).await.unwrap().is_allowed() })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap());
    }
    assert_eq!(allowed, 7);
}

#[tokio::test]
async fn client_clock_never_runs_backwards() {
    let l = limiter(conn().await, 60, 1, LimiterClock::Client);
    let a = account("skew");
    let t = 1_900_000_000_000_000u64;
    assert!(
        l.acquire_raw(&a, Priority::High, 0.0, t)
            .await
            .unwrap()
            .is_allowed()
    );
    // An instance whose clock is an hour behind cannot mint tokens.
    assert!(
        !l.acquire_raw(&a, Priority::High, 0.0, t - 3_600_000_000)
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        l.acquire_raw(&a, Priority::High, 0.0, t + 1_000_000)
            .await
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test]
async fn status_transitions_never_leave_a_terminal_state() {
    let s = RedisStore::new(conn().await, Duration::from_secs(60));
    let a = account("status");
    let id = MessageId::new();
    let created = OffsetDateTime::now_utc();
    s.put_queued(&a, &id, Priority::Low, created).await.unwrap();
    let fb = Some((Priority::Low, created));
    assert_eq!(
        s.transition(&a, &id, Status::Sending, Transition::default(), fb)
            .await
            .unwrap(),
        Some(Status::Sending)
    );
    let sent = Transition {
        attempts: Some(1),
        sent_at: Some(created),
        upstream_message_id: Some("u1".into()),
        last_error: None,
    };
    assert_eq!(
        s.transition(&a, &id, Status::Sent, sent, fb).await.unwrap(),
        Some(Status::Sent)
    );
    assert_eq!(
        s.transition(&a, &id, Status::Deferred, Transition::default(), fb)
            .await
            .unwrap(),
        Some(Status::Sent)
    );
    let r = s.get(&a, &id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.attempts, r.priority),
        (Status::Sent, 1, Priority::Low)
    );
    assert_eq!(r.upstream_message_id.as_deref(), Some("u1"));
    // Another account cannot see it.
    assert!(s.get(&account("other"), &id).await.unwrap().is_none());
}

fn key1() -> IdempotencyKey {
    IdempotencyKey::parse(b"key-1").unwrap()
}

#[tokio::test]
async fn one_idempotency_key_is_reserved_once_under_concurrency() {
    let c = conn().await;
    let a = account("idem");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let s = RedisStore::new(c.clone(), Duration::from_secs(60));
            let a = a.clone();
            tokio::spawn(async move {
                s.reserve_idempotency(&a, &key1(), "fp", &MessageId::new())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut reserved = 0;
    for t in tasks {
        match t.await.unwrap() {
            IdempotencyState::Reserved => reserved += 1,
            IdempotencyState::InProgress => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reserved, 1);
    let s = RedisStore::new(c, Duration::from_secs(60));
    let id = MessageId::new();
    s.complete_idempotency(&a, &key1(), "fp", &id)
        .await
        .unwrap();
    assert_eq!(
        s.reserve_idempotency(&a, &key1(), "fp", &MessageId::new())
            .await
            .unwrap(),
        IdempotencyState::Done(id)
    );
    assert_eq!(
        s.reserve_idempotency(&a, &key1(), "other", &MessageId::new())
            .await
            .unwrap(),
        IdempotencyState::Conflict
    );
    s.release_idempotency(&a, &key1()).await.unwrap();
    assert_eq!(
        s.reserve_idempotency(&a, &key1(), "other", &MessageId::new())
            .await
            .unwrap(),
        IdempotencyState::Reserved
    );
}

#[tokio::test]
async fn claims_exclude_each_other_and_release_only_by_owner() {
    let s = RedisStore::new(conn().await, Duration::from_secs(60));
    let a = account("claim");
    let id = MessageId::new();
    let lease = Duration::from_secs(10);
    assert_eq!(
        s.claim(&a, &id, "one", lease).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert!(matches!(
        s.claim(&a, &id, "two", lease).await.unwrap(),
        ClaimOutcome::Held(_)
    ));
    s.release(&a, &id, "two").await.unwrap();
    assert!(matches!(
        s.claim(&a, &id, "two", lease).await.unwrap(),
        ClaimOutcome::Held(_)
    ));
    s.release(&a, &id, "one").await.unwrap();
    assert_eq!(
        s.claim(&a, &id, "two", lease).await.unwrap(),
        ClaimOutcome::Claimed
    );
}

#[tokio::test]
async fn only_dead_messages_are_revived() {
    let s = RedisStore::new(conn().await, Duration::from_secs(60));
    let a = account("revive");
    let (dead, sent) = (MessageId::new(), MessageId::new());
    let created = OffsetDateTime::now_utc();
    let fb = Some((Priority::High, created));
    let t = |e: &str| Transition {
        attempts: Some(5),
        last_error: Some(e.into()),
        ..Transition::default()
    };
    s.transition(&a, &dead, Status::Dead, t("gave up"), fb)
        .await
        .unwrap();
    s.transition(&a, &sent, Status::Sent, t("x"), fb)
        .await
        .unwrap();
    assert!(s.revive(&a, &dead).await.unwrap());
    assert!(!s.revive(&a, &sent).await.unwrap());
    let r = s.get(&a, &dead).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.attempts, r.last_error),
        (Status::Queued, 0, None)
    );
    assert_eq!(
        s.get(&a, &sent).await.unwrap().unwrap().status,
        Status::Sent
    );
}
