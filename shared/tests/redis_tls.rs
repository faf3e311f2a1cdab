//! `rediss://`: the functions reach ElastiCache (transit encryption on, AUTH
//! token from Secrets Manager) over TLS. Here a real `redis-server` serves
//! TLS only, with a certificate from a CA made for the test, and a password;
//! the client trusts that CA through `SSL_CERT_FILE`, the variable the
//! system trust store is read from (rustls-native-certs), as on Lambda.
//!
//! One test in its own binary: it sets `SSL_CERT_FILE` for the process.
//! Needs `redis-server` (Debian's is built with TLS) and `openssl` on PATH.

use shared::config::{LimiterClock, LimiterConfig};
use shared::limiter::RedisLimiter;
use shared::message::AccountId;
use shared::store::StoreHealth;
use std::num::NonZeroU32;
use std::time::Duration;
use support::{certificates, free_port, scratch_dir, tls_server};

mod support;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PASSWORD: &str = "tls-test-p@ss/word";

#[tokio::test]
async fn rediss_with_a_password_reaches_a_tls_only_server() -> TestResult {
    let dir = scratch_dir()?;
    certificates(&dir)?;
    let port = free_port()?;
    let _server = tls_server(&dir, port, PASSWORD)?;
    // SAFETY: the only test of this binary, before it starts any thread that
    // reads the environment (the runtime's workers are idle until now).
    unsafe { std::env::set_var("SSL_CERT_FILE", dir.join("ca.crt")) };

    // The URL as the functions build it: REDIS_URL plus the AUTH token.
    let url =
        shared::secrets::redis_url_with_password(&format!("rediss://127.0.0.1:{port}"), PASSWORD)?;
    let conn = shared::store::connect(&url).await?;
    let store = shared::store::RedisStore::new(conn.clone(), Duration::from_secs(60));
    store.ping().await?;

    // The limiter's script (EVALSHA, then EVAL on NOSCRIPT) over TLS.
    let limiter = RedisLimiter::new(
        conn,
        LimiterConfig {
            per_minute: NonZeroU32::new(60).ok_or("rate")?,
            // Two medium sends at once: a burst of 3, one token kept back.
            burst: NonZeroU32::new(3).ok_or("burst")?,
            reserve_medium_percent: 50,
            reserve_low_percent: 0,
            clock: LimiterClock::Redis,
        },
    );
    let account = AccountId::parse("tls_account").map_err(|e| e.0)?;
    support::two_medium_sends_then_a_wait(&limiter, &account).await?;

    // The same server refuses a client without the password, and plain TCP.
    let no_password = format!("rediss://127.0.0.1:{port}");
    let refused = match shared::store::connect(&no_password).await {
        // The handshake passes; the first command is refused (NOAUTH).
        Ok(conn) => shared::store::RedisStore::new(conn, Duration::from_secs(60))
            .ping()
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without the password must be refused");
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        shared::store::connect(&format!("redis://:{PASSWORD}@127.0.0.1:{port}")),
    )
    .await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "plain TCP must not pass for TLS"
    );

    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
