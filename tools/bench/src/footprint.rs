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

/// Spawns `binary` with the Runtime API at a local listener; milliseconds from
/// spawn to the arrival of `GET /2018-06-01/runtime/invocation/next`.
async fn one_start(name: &str, binary: &Path) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env_remove("LOCAL_MAX_CONCURRENCY")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .envs(lambda_env(name))
        .stdin(Stdio::null())
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

pub async fn init_times(binaries: &[(String, PathBuf)], runs: usize) -> Result<Value> {
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    // One discarded start each (page cache), then alternate the binaries.
    for (name, bin) in binaries {
        one_start(name, bin).await?;
    }
    for r in 0..runs {
        for i in 0..binaries.len() {
            let (name, bin) = &binaries[(i + r) % binaries.len()];
            let ms = one_start(name, bin).await?;
            samples.entry(name.as_str()).or_default().push(ms);
        }
    }
    let mut out = serde_json::Map::new();
    for (name, bin) in binaries {
        let v = samples.get(name.as_str()).cloned().unwrap_or_default();
        let med = median(&v);
        eprintln!(
            "[bench] init {name}: median {med:.2} ms over {} starts",
            v.len()
        );
        out.insert(
            name.clone(),
            json!({
                "binary": bin.display().to_string(),
                "bytes": std::fs::metadata(bin).map(|m| m.len()).ok(),
                "median_ms": round(med, 2),
                "min_ms": round(v.iter().copied().fold(f64::INFINITY, f64::min), 2),
                "samples_ms": v.iter().map(|x| round(*x, 2)).collect::<Vec<_>>(),
            }),
        );
    }
    let worst = out
        .values()
        .filter_map(|v| v["median_ms"].as_f64())
        .fold(0.0f64, f64::max);
    out.insert("init_ms".into(), json!(round(worst, 2)));
    out.insert("runs".into(), json!(runs));
    Ok(Value::Object(out))
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
