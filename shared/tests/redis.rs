//! The Lua scripts against a real Redis (`REDIS_URL`, default
//! redis://127.0.0.1:6379), or a Redis Cluster when `REDIS_CLUSTER_URL` is
//! set ([`testkit::test_redis`]). Each test uses its own account ids, so
//! tests sharing the server never touch each other's keys.

use shared::config::{LimiterClock, LimiterConfig};
use shared::idempotency::{IdempotencyKey, IdempotencyState, IdempotencyStore};
use shared::limiter::bucket::{self, BucketState, Input, Rate};
use shared::limiter::{
    AccountLimit, AccountLimits, BucketViewer, Decision, LimitSource, Limiter, RedisLimiter,
};
use shared::message::{AccountId, MessageId, Priority};
use shared::redis_conn::RedisConn;
use shared::store::{ClaimOutcome, ClaimStore, RedisStore, Status, StatusStore, Transition};
use std::num::NonZeroU32;
use std::time::Duration;
use time::OffsetDateTime;

async fn conn() -> RedisConn {
    testkit::test_redis().await.expect("the Redis under test")
}

fn account(tag: &str) -> AccountId {
    AccountId::parse(&format!("t_{tag}_{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn limiter(conn: RedisConn, per_minute: u32, burst: u32, clock: LimiterClock) -> RedisLimiter {
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

/// A step of the twin test that changes the account's own limit.
#[derive(Clone, Copy)]
enum LimitChange {
    Keep,
    /// `PUT`: a valid own limit.
    Set(u32, u32),
    /// A hash the script must ignore (written by hand, not by the API).
    Raw(&'static str, &'static str),
    /// `DELETE`: back to the defaults.
    Clear,
}

#[tokio::test]
async fn script_matches_twin() {
    // Same inputs, same clock (client mode makes it deterministic): the Lua
    // script and the Rust twin must decide alike, step by step, with the
    // same limit in force, while the account's own limit changes under them.
    let c = conn().await;
    let l = limiter(c.clone(), 600, 3, LimiterClock::Client);
    let a = account("twin");
    let rate = Rate {
        per_minute: 600.0,
        burst: 3.0,
    };
    let (mut bucket_state, mut horizon): (Option<BucketState>, Option<u64>) = (None, None);
    let mut own: Option<Rate> = None;
    let t0 = 1_800_000_000_000_000u64;
    use LimitChange::{Clear, Keep, Raw, Set};
    // (gap µs, reserve percent, holds a slot, due this long before the step
    // (0: unknown), limit change before the step)
    let steps: [(u64, u8, bool, u64, LimitChange); 69] = [
        (0, 0, false, 1_500_000, Keep),
        (0, 0, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (50_000, 0, false, 0, Keep),
        (50_000, 0, true, 0, Keep),
        (50_000, 0, false, 0, Keep),
        (250_000, 67, false, 0, Keep),
        (0, 0, true, 0, Keep),
        (0, 0, false, 0, Keep),
        (10_000_000, 34, false, 1_500_000, Keep),
        (0, 67, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (60_000, 0, true, 0, Keep),
        (3_000_000, 0, false, 0, Keep),
        // An own limit, slower and smaller: tokens kept, capped at 2.
        (0, 0, false, 0, Set(120, 2)),
        (0, 67, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (400_000, 0, true, 0, Keep),
        (100_000, 0, true, 0, Keep),
        // Larger burst, faster: nothing minted, refill from the last take.
        (1_000_000, 20, false, 1_500_000, Set(60, 50)),
        (0, 0, false, 0, Keep),
        // A hash the script does not accept: the defaults.
        (0, 0, false, 0, Raw("0", "2")),
        (2_000_000, 0, false, 0, Raw("60", "2.5")),
        (0, 0, false, 0, Set(1, 1)),
        // A burst of one owes the guard: a full bucket goes below zero, and
        // the slots it hands out are an interval and the spread apart.
        (61_000_000, 0, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (60_000_000, 0, true, 0, Keep),
        (0, 0, false, 0, Clear),
        (5_000_000, 10, false, 1_500_000, Keep),
        // The credit (ARGV[7]): a slow bucket full for a minute, drained by
        // a medium backlog whose first message was due 1.5 s ago: the
        // reserve it keeps shrinks by that refill, until the bucket is
        // full again; a send not from a full bucket leaves the credit as it
        // was; due after the bucket filled, or unknown, credits less or none.
        (0, 0, false, 0, Set(60, 10)),
        (60_000_000, 34, false, 1_500_000, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (700_000, 34, false, 0, Keep),
        (0, 34, true, 0, Keep),
        (300_000, 34, true, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 0, false, 0, Keep),
        (2_000_000, 20, false, 900_000, Keep),
        (60_000_000, 20, false, 90_000_000, Keep),
        (0, 20, false, 0, Keep),
        (60_000_000, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (0, 20, false, 0, Keep),
        (60_000_000, 0, false, 5_000_000, Keep),
        (0, 20, false, 0, Keep),
        // Full for only 0.5 s of the 1.5 s since the message was due: the
        // credit is the refill lost to the cap, 0.5 of a token.
        (60_000_000, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (2_500_000, 34, false, 1_500_000, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
        (0, 34, false, 0, Keep),
    ];
    let mut now = t0;
    let mut own_seen = (0usize, 0usize);
    let mut credits: Vec<f64> = Vec::new();
    let key = shared::keys::limits(&a);
    for (i, (gap, pct, held, due_ago, change)) in steps.iter().enumerate() {
        now += gap;
        let mut cm = c.clone();
        match *change {
            Keep => {}
            Set(p, b) => {
                let limit = AccountLimit::new(p, b).unwrap();
                l.set_limit(&a, limit).await.unwrap();
                own = Some(limit.rate());
            }
            Raw(p, b) => {
                let _: () = redis::cmd("HSET")
                    .arg(&key)
                    .arg("perMinute")
                    .arg(p)
                    .arg("burst")
                    .arg(b)
                    .query_async(&mut cm)
                    .await
                    .unwrap();
                own = Some(Rate {
                    per_minute: p.parse().unwrap(),
                    burst: b.parse().unwrap(),
                });
            }
            Clear => {
                l.clear_limit(&a).await.unwrap();
                own = None;
            }
        }
        // The script takes 0 for an unknown due time, as `acquire_as` sends it.
        let due = (*due_ago > 0).then(|| now - due_ago);
        let out = bucket::decide(
            rate,
            Input {
                bucket: bucket_state,
                horizon_us: horizon,
                pause_us: None,
                now_us: now,
                reserve_percent: *pct,
                held: *held,
                limit: own,
                due_us: due,
            },
        );
        if let Some(b) = out.bucket {
            bucket_state = Some(b);
            credits.push(b.credit);
        }
        if let Some(h) = out.horizon_us {
            horizon = Some(h);
        }
        let (got, in_force) = l
            .acquire_step(&a, Priority::High, *pct, now, *held, due.unwrap_or(0))
            .await
            .unwrap();
        assert_eq!(out.limit, in_force, "step {i}: limit in force");
        if out.limit != rate {
            own_seen.0 += usize::from(got.is_allowed());
            own_seen.1 += usize::from(!got.is_allowed());
        }
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
    // Both answers were seen under an own limit: a table that only ever
    // allowed there would prove little.
    assert!(own_seen.0 > 0 && own_seen.1 > 0, "{own_seen:?}");
    // The credit was given, kept, capped and cleared along the way.
    let seen = |c: f64| credits.iter().any(|x| (x - c).abs() < 1e-6);
    assert!(
        seen(1.5) && seen(1.9) && seen(0.5) && seen(0.0),
        "{credits:?}"
    );
}

#[tokio::test]
async fn the_script_answers_callers_that_send_fewer_arguments() {
    // A caller from before ARGV[6] (held) and ARGV[7] (due) was added, as
    // `redis-benchmark` command lines are: no slot held, no due time.
    let mut c = conn().await;
    let a = account("argv");
    let lua = redis::Script::new(shared::limiter::SCRIPT);
    for args in [5usize, 6, 7] {
        let mut script = lua.prepare_invoke();
        script
            .key(shared::keys::bucket(&a))
            .key(shared::keys::horizon(&a, Priority::High))
            .key(shared::keys::pause(&a))
            .key(shared::keys::limits(&a));
        for v in [600u64, 10, 0, 0, 60_000, 0, 0].iter().take(args) {
            script.arg(*v);
        }
        let reply: Vec<i64> = script.invoke_async(&mut c).await.unwrap();
        assert_eq!(reply.first(), Some(&1), "{args} arguments: {reply:?}");
    }
}

#[tokio::test]
async fn an_own_limit_applies_to_the_next_decision_and_shows_in_the_view() {
    let l = limiter(conn().await, 600, 10, LimiterClock::Redis);
    let a = account("own");
    assert_eq!(l.limit(&a).await.unwrap().source, LimitSource::Default);
    assert!(l.acquire(&a, Priority::Low).await.unwrap().is_allowed());
    l.set_limit(&a, AccountLimit::new(60, 2).unwrap())
        .await
        .unwrap();
    let v = l.limit(&a).await.unwrap();
    assert_eq!(
        (v.rate.per_minute, v.rate.burst, v.source),
        (60.0, 2.0, LimitSource::Account)
    );
    // 9 tokens kept, capped at 2; low's 20 % of a burst of 2 reserves none,
    // so low keeps only the guard (0.1 of a token at 60/min): one send.
    let view = l.view(&a).await.unwrap();
    assert_eq!((view.per_minute, view.burst), (60.0, 2.0));
    assert!(view.tokens <= 2.0, "{view:?}");
    assert!(l.acquire(&a, Priority::Low).await.unwrap().is_allowed());
    let d = l.acquire(&a, Priority::Low).await.unwrap();
    assert!(
        !d.is_allowed() && d.wait() <= Duration::from_millis(100),
        "the guard: {d:?}"
    );
    let d2 = l.acquire(&a, Priority::Low).await.unwrap();
    assert!(
        d2.wait() > d.wait() + Duration::from_millis(900)
            && d2.wait() <= d.wait() + Duration::from_secs(1),
        "60/min: slots about a second apart, {d:?} then {d2:?}"
    );
    assert!(l.clear_limit(&a).await.unwrap());
    assert!(!l.clear_limit(&a).await.unwrap(), "already cleared");
    let v = l.limit(&a).await.unwrap();
    assert_eq!(
        (v.rate.per_minute, v.rate.burst, v.source),
        (600.0, 10.0, LimitSource::Default)
    );
}

#[tokio::test]
async fn redis_clock_bucket_allows_burst_then_throttles() {
    let l = limiter(conn().await, 60, 5, LimiterClock::Redis);
    let a = account("burst");
    // A burst of 5 less the guard (0.1 of a token at 60/min): four at once,
    // the fifth after the guard's 100 ms.
    for _ in 0..4 {
        assert!(l.acquire(&a, Priority::High).await.unwrap().is_allowed());
    }
    let d = l.acquire(&a, Priority::High).await.unwrap();
    assert!(matches!(d, Decision::Throttled { .. }), "{d:?}");
    assert!(
        d.wait() > Duration::ZERO && d.wait() <= Duration::from_millis(100),
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
    // The last token is high's, once the guard (its 100 ms of refill) is in.
    let d = l.acquire(&a, Priority::High).await.unwrap();
    assert!(
        d.is_allowed() || d.wait() <= Duration::from_millis(100),
        "high waits for the guard at most: {d:?}"
    );
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
    // The burst less the guard (what 100 ms refills at 1/min).
    assert_eq!(allowed, 6);
}

#[tokio::test]
async fn client_clock_never_runs_backwards() {
    let l = limiter(conn().await, 60, 1, LimiterClock::Client);
    let a = account("skew");
    let t = 1_900_000_000_000_000u64;
    assert!(
        l.acquire_raw(&a, Priority::High, 0, t)
            .await
            .unwrap()
            .is_allowed()
    );
    // An instance whose clock is an hour behind cannot mint tokens: it is
    // given a slot counted from the bucket's time, not its own (a burst of
    // one owes the guard: an interval and 100 ms).
    let d = l
        .acquire_raw(&a, Priority::High, 0, t - 3_600_000_000)
        .await
        .unwrap();
    assert!(!d.is_allowed());
    let slot = t + d.wait().as_micros() as u64;
    assert!((1_100_000..=1_100_001).contains(&(slot - t)), "{d:?}");
    // The denied message comes back at that slot and takes its token.
    assert!(
        l.acquire_with(&a, Priority::High, 0, slot, true)
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
    let new = shared::store::NewRecord {
        priority: Priority::Low,
        created_at: created,
        recipient_id: "fan_1".into(),
        send_at: None,
    };
    s.put_new(&a, &id, &new).await.unwrap();
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
        ..Transition::default()
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

/// DELETE against the consumer's send, raced on purpose: four consumer
/// instances (connections of their own) claim and start the send of one
/// message while the producer cancels it, a few hundred times with the
/// timings shifted each round. Exactly one side wins every round: a cancel
/// that answered `Cancelled` never has a send after it, and a message some
/// consumer started sending is never reported cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_claims_has_exactly_one_winner() {
    use shared::store::{CancelOutcome, NewRecord, SendGate};
    let ttl = Duration::from_secs(60);
    let mut consumers = Vec::new();
    for _ in 0..4 {
        consumers.push(RedisStore::new(conn().await, ttl));
    }
    let producer = RedisStore::new(conn().await, ttl);
    let a = account("cancel_race");
    let (mut cancelled, mut sent) = (0, 0);
    for round in 0..300u64 {
        let id = MessageId::new();
        let created = OffsetDateTime::now_utc();
        let new = NewRecord {
            priority: Priority::Medium,
            created_at: created,
            recipient_id: "fan_1".into(),
            send_at: None,
        };
        producer.put_new(&a, &id, &new).await.unwrap();
        let mut tasks = Vec::new();
        for (i, c) in consumers.iter().enumerate() {
            let (c, a) = (c.clone(), a.clone());
            let pause = Duration::from_millis((round / 3 + i as u64) % 3);
            tasks.push(tokio::spawn(async move {
                let owner = format!("consumer-{i}");
                let lease = Duration::from_secs(10);
                if c.claim(&a, &id, &owner, lease).await.unwrap() != ClaimOutcome::Claimed {
                    return false;
                }
                tokio::time::sleep(pause).await;
                let gate = c
                    .begin_send(&a, &id, &owner, (Priority::Medium, created))
                    .await
                    .unwrap();
                if gate == SendGate::Go {
                    // The upstream call happens here; then the record settles.
                    let fb = Some((Priority::Medium, created));
                    c.transition(&a, &id, Status::Sent, Transition::default(), fb)
                        .await
                        .unwrap();
                }
                c.release(&a, &id, &owner).await.unwrap();
                gate == SendGate::Go
            }));
        }
        let (p, pa) = (producer.clone(), a.clone());
        let wait = Duration::from_millis(round % 3);
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            p.cancel(&pa, &id).await.unwrap()
        });
        let mut gos = 0;
        for t in tasks {
            gos += usize::from(t.await.unwrap());
        }
        let outcome = cancel.await.unwrap();
        assert!(gos <= 1, "round {round}: {gos} sends");
        match outcome {
            CancelOutcome::Cancelled => {
                assert_eq!(gos, 0, "round {round}: cancelled, yet sent");
                cancelled += 1;
            }
            CancelOutcome::TooLate(Status::Sending | Status::Sent) => {
                assert_eq!(gos, 1, "round {round}: refused, yet nothing sent");
                sent += 1;
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    // Both sides won sometimes: the race was real.
    assert!(
        cancelled > 0 && sent > 0,
        "cancelled {cancelled}, sent {sent}"
    );
}

/// `WAIT` after a write (`shared::durability`) has no key: on a cluster
/// redis-rs sends it to every primary and answers the smallest count, so it
/// confirms the write on the shard that took it (each primary counts this
/// client's writes on its own connection). The test cluster has a replica
/// per shard: a token and a claim are confirmed. One Redis without a
/// replica cannot confirm them: both are errors, nothing is handed out.
#[tokio::test]
async fn wait_confirms_on_the_shard_that_took_the_write() {
    use shared::durability::Durability;
    use shared::redis_conn::Topology;
    let mut c = conn().await;
    let replicas = match c.topology() {
        // scripts/redis-cluster.sh: 3 primaries, one replica each.
        Topology::Cluster => 1,
        Topology::Single => {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .unwrap();
            info.lines()
                .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
        }
    };
    let wait = Durability {
        replicas: 1,
        timeout: Duration::from_millis(200),
    };
    // Accounts on (very likely) every shard: each write's shard must confirm it.
    for i in 0..6 {
        let a = account(&format!("wait{i}"));
        let l = limiter(c.clone(), 600, 10, LimiterClock::Redis).with_durability(wait);
        let s = RedisStore::new(c.clone(), Duration::from_secs(60)).with_durability(wait);
        let token = l.acquire(&a, Priority::High).await;
        let claim = s
            .claim(&a, &MessageId::new(), "owner", Duration::from_secs(5))
            .await;
        if replicas >= 1 {
            assert!(matches!(token, Ok(Decision::Allowed { .. })), "{token:?}");
            assert!(matches!(claim, Ok(ClaimOutcome::Claimed)), "{claim:?}");
        } else {
            assert!(
                matches!(token, Err(shared::limiter::LimiterError::NotReplicated(_))),
                "{token:?}"
            );
            assert!(
                matches!(claim, Err(shared::store::StoreError::NotReplicated(_))),
                "{claim:?}"
            );
        }
    }
}
