//! Footprint: start-up time against a fake Lambda Runtime API, and the peak
//! RSS of a process that `cargo lambda watch` started.

use crate::stats::{median, round};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The variables the Lambda service sets for every function.
fn lambda_env(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
    ]
}

/// Reads one HTTP request head; returns its request line.
async fn request_line(stream: &mut tokio::net::TcpStream) -> Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Bounded: a request head over 64 KiB is not a runtime client's.
    while buf.len() < 64 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Where the started binary finds the TLS trust store. Both functions build
/// their HTTPS clients (reqwest for the OnlyFans API, the AWS SDK's) at cold
/// start, and each loads the system roots through `rustls-native-certs`,
/// which reads `SSL_CERT_FILE` and every file in `SSL_CERT_DIR` (or, unset,
/// the directory `openssl-probe` finds). On `provided.al2023` the store is one
/// bundle (`/etc/pki/tls/certs/ca-bundle.crt`, in a directory of two
/// files); on Debian `/etc/ssl/certs` holds ~290 files, one `open` and
/// parse each, twice, which is most of a start here and none of one there.
#[derive(Clone, Debug)]
pub enum TrustStore {
    /// As this machine's environment has it.
    Host,
    /// One bundle file and an empty directory: the layout of the Lambda runtime.
    Bundle { file: PathBuf, dir: PathBuf },
}

impl TrustStore {
    /// The Lambda-like store from this machine's bundle, if it has one.
    pub fn lambda_like(empty_dir: &Path) -> Result<Self> {
        const BUNDLES: [&str; 3] = [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
        ];
        let file = BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("no CA bundle found on this machine")?;
        std::fs::create_dir_all(empty_dir)?;
        if std::fs::read_dir(empty_dir)?.next().is_some() {
            bail!("{} must be empty", empty_dir.display());
        }
        Ok(Self::Bundle {
            file,
            dir: empty_dir.to_owned(),
        })
    }
}

/// Spawns `binary` with the Runtime API at a local listener; milliseconds from
/// spawn to the arrival of `GET /2018-06-01/runtime/invocation/next`.
async fn one_start(name: &str, binary: &Path, trust: &TrustStore) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env_remove("LOCAL_MAX_CONCURRENCY")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .envs(lambda_env(name));
    if let TrustStore::Bundle { file, dir } = trust {
        cmd.env("SSL_CERT_FILE", file).env("SSL_CERT_DIR", dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        // The runtime client's first request must be the one for an invocation.
        let (mut stream, _) = listener.accept().await?;
        let line = request_line(&mut stream).await?;
        let at = started.elapsed();
        if line.starts_with("GET ") && line.contains("/runtime/invocation/next") {
            return Ok::<_, anyhow::Error>(at);
        }
        // Anything else (an init error report): answer, and fail the run.
        let _ = stream
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
            .await;
        bail!("the runtime client sent {line:?} before asking for an invocation")
    })
    .await;
    let _ = child.start_kill();
    let out = child.wait_with_output().await?;
    match waited {
        Ok(Ok(at)) => Ok(at.as_secs_f64() * 1000.0),
        Ok(Err(e)) => bail!(
            "{name}: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => bail!(
            "{name}: no request within 10 s; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Start times of each binary with each trust store, alternating binaries
/// and stores run by run so drift hits all alike. `init_ms` is the slower
/// binary's median with the first store, `init_ms_<label>` with the others
/// (each binary's figures are suffixed alike).
pub async fn init_times(
    binaries: &[(String, PathBuf)],
    stores: &[(&str, TrustStore)],
    runs: usize,
) -> Result<Value> {
    let mut samples: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    // One discarded start each (page cache), then alternate.
    for (name, bin) in binaries {
        one_start(name, bin, &stores[0].1).await?;
    }
    let combos: Vec<(usize, usize)> = (0..binaries.len())
        .flat_map(|b| (0..stores.len()).map(move |t| (b, t)))
        .collect();
    for r in 0..runs {
        for i in 0..combos.len() {
            let (b, t) = combos[(i + r) % combos.len()];
            let (name, bin) = &binaries[b];
            let ms = one_start(name, bin, &stores[t].1).await?;
            samples.entry((b, t)).or_default().push(ms);
        }
    }
    let mut out = serde_json::Map::new();
    let mut worst = vec![0.0f64; stores.len()];
    for (b, (name, bin)) in binaries.iter().enumerate() {
        let mut entry = serde_json::Map::new();
        entry.insert("binary".into(), json!(bin.display().to_string()));
        entry.insert(
            "bytes".into(),
            json!(std::fs::metadata(bin).map(|m| m.len()).ok()),
        );
        for (t, (label, store)) in stores.iter().enumerate() {
            let v = samples.get(&(b, t)).cloned().unwrap_or_default();
            let med = median(&v);
            worst[t] = worst[t].max(med);
            eprintln!(
                "[bench] init {name} ({label} trust store): median {med:.2} ms over {} starts",
                v.len()
            );
            let key = |base: &str| keyed(base, t, label);
            entry.insert(key("median_ms"), json!(round(med, 2)));
            entry.insert(
                key("min_ms"),
                json!(round(v.iter().copied().fold(f64::INFINITY, f64::min), 2)),
            );
            entry.insert(
                key("samples_ms"),
                json!(v.iter().map(|x| round(*x, 2)).collect::<Vec<_>>()),
            );
            entry.insert(key("trust_store"), json!(format!("{store:?}")));
        }
        out.insert(name.clone(), Value::Object(entry));
    }
    for (t, (label, _)) in stores.iter().enumerate() {
        out.insert(keyed("init_ms", t, label), json!(round(worst[t], 2)));
    }
    out.insert("trust_store".into(), json!(stores[0].0));
    out.insert("runs".into(), json!(runs));
    Ok(Value::Object(out))
}

/// `base` for the first trust store, `base_<label>` for the others.
fn keyed(base: &str, store: usize, label: &str) -> String {
    if store == 0 {
        base.to_owned()
    } else {
        format!("{base}_{label}")
    }
}

fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            map.entry(ppid).or_default().push(pid);
        }
    }
    map
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// VmHWM of the descendants of `root` named `name` (the function processes
/// that `cargo lambda watch` started).
pub fn peak_rss(root: u32, name: &str) -> Result<Value> {
    let map = children_map();
    let mut stack = vec![root];
    let mut found = Vec::new();
    // Bounded by the number of processes.
    for _ in 0..100_000 {
        let Some(pid) = stack.pop() else { break };
        if let Some(kids) = map.get(&pid) {
            stack.extend(kids);
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid != root && comm.trim() == name {
            found.push(json!({
                "pid": pid,
                "exe": std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string()),
                "vm_hwm_kb": status_kb(pid, "VmHWM:"),
                "vm_rss_kb": status_kb(pid, "VmRSS:"),
            }));
        }
    }
    if found.is_empty() {
        bail!("no process named {name} under pid {root}");
    }
    let hwm_kb = found
        .iter()
        .filter_map(|p| p["vm_hwm_kb"].as_u64())
        .max()
        .unwrap_or(0);
    let mb = hwm_kb as f64 / 1024.0;
    eprintln!("[bench] peak RSS of {name}: {mb:.1} MiB");
    Ok(json!({ "rss_mb": round(mb, 1), "vm_hwm_kb": hwm_kb, "processes": found }))
}
