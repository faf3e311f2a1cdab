//! What the integration tests that need their own servers share: a TLS-only
//! `redis-server` with a CA made for the test (redis_tls.rs, small_profile.rs)
//! and the SSM-compatible server (moto, from the project's .venv), and the
//! limiter check both TLS tests make.
#![allow(dead_code)] // each test binary uses its own part

use shared::limiter::{Limiter, LimiterError, RedisLimiter};
use shared::message::{AccountId, Priority};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server process, stopped when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
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
pub fn certificates(dir: &Path) -> Result<(), String> {
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

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn tls_server(dir: &Path, port: u16, password: &str) -> Result<Server, String> {
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
        .args(["--tls-auth-clients", "no", "--requirepass", password])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server could not start: {e}"))?;
    listening(Server(child), "redis-server", port, Duration::from_secs(10))
}

/// `server` once something accepts connections on `port`, or an error after `wait`.
fn listening(server: Server, what: &str, port: u16, wait: Duration) -> Result<Server, String> {
    let deadline = Instant::now() + wait;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen on {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

pub fn scratch_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("redis-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `moto_server` (the project's SQS- and SSM-compatible server): `MOTO_SERVER`,
/// else the workspace's `.venv/bin/moto_server`, else the one on PATH.
pub fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("moto_server")
    }
}

/// A moto server of this test's own on `port`, answering once it listens.
pub fn moto_server(port: u16) -> Result<Server, String> {
    let child = Command::new(moto_binary())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "moto_server could not start ({}): {e}",
                moto_binary().display()
            )
        })?;
    listening(Server(child), "moto_server", port, Duration::from_secs(30))
}

/// The limiter works over the connection under test: with a burst of 3 and
/// `medium` keeping one token back, two medium sends go at once and the
/// third within a second waits.
pub async fn two_medium_sends_then_a_wait(
    limiter: &RedisLimiter,
    account: &AccountId,
) -> Result<(), LimiterError> {
    let first = limiter.acquire(account, Priority::Medium).await?;
    let second = limiter.acquire(account, Priority::Medium).await?;
    let third = limiter.acquire(account, Priority::Medium).await?;
    assert!(
        first.is_allowed() && second.is_allowed(),
        "a burst of 3 less medium's reserve"
    );
    assert!(!third.is_allowed(), "the third within a second waits");
    Ok(())
}
