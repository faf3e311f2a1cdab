//! `REDIS_WAIT_REPLICAS` against a real primary and replica: a token, a
//! claim or a terminal status counts only once the replica acknowledged it,
//! and a replica that stops acknowledging (SIGSTOP, as a lagging replica)
//! turns each of them into an error the caller fails closed on, while the
//! writes a failover may lose harmlessly (a denial, a `sending` status) do
//! not wait.
//!
//! Starts its own pair on 127.0.0.1:7120 and 7121 (`DURABILITY_TEST_PORT`
//! moves them). Needs `redis-server` on PATH.

use shared::config::{LimiterClock, LimiterConfig};
use shared::durability::Durability;
use shared::limiter::{Limiter, LimiterError, RedisLimiter};
use shared::message::{AccountId, MessageId, Priority};
use shared::store::{
    ClaimOutcome, ClaimStore, RedisStore, Status, StatusStore, StoreError, Transition,
};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use testkit::{RedisServer, wait_for_info};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn redis_server(port: u16, args: &[&str]) -> std::io::Result<RedisServer> {
    let dir = std::env::temp_dir().join(format!("durability-test-{port}"));
    RedisServer::start(port, &dir, args)
}

async fn until_info(url: &str, line: &str) -> TestResult {
    Ok(wait_for_info(url, line, Duration::from_secs(20)).await?)
}

fn limiter_config() -> LimiterConfig {
    LimiterConfig {
        per_minute: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
        // Two high sends at once: a burst of 3 less the guard (0.1 at
        // 60/min); medium keeps one token back.
        burst: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
        reserve_medium_percent: 50,
        reserve_low_percent: 0,
        clock: LimiterClock::Redis,
    }
}

const WAIT: Durability = Durability {
    replicas: 1,
    timeout: Duration::from_millis(100),
};

#[tokio::test]
async fn unconfirmed_tokens_claims_and_terminal_statuses_are_errors() -> TestResult {
    let port: u16 = std::env::var("DURABILITY_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(7120);
    let primary_url = format!("redis://127.0.0.1:{port}");
    let _primary = redis_server(port, &[])?;
    let replica = redis_server(port + 1, &["--replicaof", "127.0.0.1", &port.to_string()])?;
    until_info(&primary_url, "connected_slaves:1").await?;
    until_info(
        &format!("redis://127.0.0.1:{}", port + 1),
        "master_link_status:up",
    )
    .await?;

    let conn = shared::store::connect(&primary_url).await?;
    let limiter = RedisLimiter::new(conn.clone(), limiter_config()).with_durability(WAIT);
    let store = RedisStore::new(conn.clone(), Duration::from_secs(60)).with_durability(WAIT);
    let account = AccountId::parse(&format!("dur_{}", uuid::Uuid::new_v4().simple()))?;
    let (m1, m2) = (MessageId::new(), MessageId::new());

    // The replica acknowledges: everything goes through.
    assert!(
        limiter
            .acquire(&account, Priority::High)
            .await?
            .is_allowed()
    );
    assert_eq!(
        store
            .claim(&account, &m1, "me", Duration::from_secs(5))
            .await?,
        ClaimOutcome::Claimed
    );
    let sent = Transition {
        attempts: Some(1),
        ..Transition::default()
    };
    assert_eq!(
        store
            .transition(&account, &m1, Status::Sent, sent.clone(), None)
            .await?,
        Some(Status::Sent)
    );

    // The replica stops (a lagging replica): nothing it must hold counts.
    replica.signal("STOP")?;
    let t = Instant::now();
    match limiter.acquire(&account, Priority::High).await {
        Err(LimiterError::NotReplicated(n)) => assert_eq!((n.acked, n.wanted), (0, 1)),
        other => return Err(format!("a granted token while the replica lags: {other:?}").into()),
    }
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "WAIT did not wait its timeout"
    );
    // One token is left (burst 3: one taken and confirmed, one taken and
    // refused), and medium keeps it back: a denial writes nothing a
    // failover could hand back.
    let denied = limiter.acquire(&account, Priority::Medium).await?;
    assert!(!denied.is_allowed(), "{denied:?}");
    assert!(matches!(
        store
            .claim(&account, &m2, "me", Duration::from_secs(5))
            .await,
        Err(StoreError::NotReplicated(_))
    ));
    // Not terminal: losing it costs nothing, so no WAIT.
    assert_eq!(
        store
            .transition(&account, &m2, Status::Sending, Transition::default(), None)
            .await?,
        Some(Status::Sending)
    );
    assert!(matches!(
        store
            .transition(&account, &m2, Status::Sent, sent, None)
            .await,
        Err(StoreError::NotReplicated(_))
    ));

    // Without durability the same lagging pair answers at once.
    let plain = RedisStore::new(conn, Duration::from_secs(60));
    let t = Instant::now();
    assert!(matches!(
        plain
            .claim(&account, &MessageId::new(), "me", Duration::from_secs(5))
            .await?,
        ClaimOutcome::Claimed
    ));
    assert!(t.elapsed() < Duration::from_millis(100));

    // The replica catches up: confirmed again. (The denied message above
    // comes back at the slot it was given, as its holder.)
    replica.signal("CONT")?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        limiter
            .acquire_as(&account, Priority::Medium, true, None)
            .await?
            .is_allowed()
    );
    Ok(())
}
