//! `rediss://`: the functions reach ElastiCache (transit encryption on, AUTH
//! token from Secrets Manager) over TLS. Here a real `redis-server` serves
//! TLS only, with a certificate from a CA made for the test, and a password;
//! the client trusts that CA through `SSL_CERT_FILE`, the variable the
//! system trust store is read from (rustls-native-certs), as on Lambda.
//!
//! One test in its own binary: it sets `SSL_CERT_FILE` for the process.
//! Needs `redis-server` (Debian's is built with TLS) and `openssl` on PATH.

use shared::config::{LimiterClock, LimiterConfig};
use shared::limiter::{Limiter, RedisLimiter};
use shared::message::{AccountId, Priority};
use shared::store::StoreHealth;
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PASSWORD: &str = "tls-test-p@ss/word";

/// The server process, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program} could not start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA, and a server certificate it signs for 127.0.0.1 and localhost.
fn certificates(dir: &Path) -> Result<(), String> {
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=outbound-messages test CA",
        ],
    )?;
    run(
        dir,
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    )
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tls_server(dir: &Path, port: u16) -> Result<Server, String> {
    let path = |f: &str| dir.join(f).display().to_string();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--tls-cert-file", &path("server.crt")])
        .args(["--tls-key-file", &path("server.key")])
        .args(["--tls-ca-cert-file", &path("ca.crt")])
        .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server could not start: {e}"))?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("redis-server did not listen on {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

fn scratch_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("redis-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test]
async fn rediss_with_a_password_reaches_a_tls_only_server() -> TestResult {
    let dir = scratch_dir()?;
    certificates(&dir)?;
    let port = free_port()?;
    let _server = tls_server(&dir, port)?;
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
            burst: NonZeroU32::new(2).ok_or("burst")?,
            reserve_medium_percent: 0,
            reserve_low_percent: 0,
            clock: LimiterClock::Redis,
        },
    );
    let account = AccountId::parse("tls_account").map_err(|e| e.0)?;
    let first = limiter.acquire(&account, Priority::High).await?;
    let second = limiter.acquire(&account, Priority::High).await?;
    let third = limiter.acquire(&account, Priority::High).await?;
    assert!(first.is_allowed() && second.is_allowed(), "the burst of 2");
    assert!(!third.is_allowed(), "the third within a second waits");

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
