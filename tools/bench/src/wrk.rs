//! Intake over HTTP: `wrk` driving `POST /v1/messages` with
//! `tools/bench/wrk-post.lua`, whose `done` hook prints one JSON line
//! (latency percentiles in µs, throughput, errors). This runs wrk and keeps
//! that line, with the connection count beside it.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// One wrk run: `connections` open connections for `seconds`; `token` is the
/// script's bearer token (BENCH_TOKEN).
pub fn run(url: &str, script: &Path, token: &str, connections: u32, seconds: u32) -> Result<Value> {
    ensure!(connections >= 1, "--connections must be at least 1");
    // wrk wants at least one connection per thread.
    let threads = if connections < 2 { 1 } else { 2 };
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string()])
        .args(["-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s")])
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .env("BENCH_TOKEN", token)
        .output()
        .context("running wrk (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk exited with {}: {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&stdout, connections)
}

/// The last JSON line of wrk's output (the script's summary), with
/// `connections` added.
pub fn parse(stdout: &str, connections: u32) -> Result<Value> {
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .with_context(|| format!("no JSON summary line in wrk's output:\n{stdout}"))?;
    let mut v: Value = serde_json::from_str(line)
        .with_context(|| format!("wrk's summary line is not JSON: {line}"))?;
    let obj = v
        .as_object_mut()
        .with_context(|| format!("wrk's summary is not an object: {line}"))?;
    obj.insert("connections".into(), connections.into());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 5s test @ http://127.0.0.1:9300/lambda-url/producer/v1/messages
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.60ms    1.01ms  21.01ms   93.05%
  1330 requests in 5.00s, 369.18KB read
Requests/sec:    265.87
Transfer/sec:     73.80KB
{\"requests\":1330,\"duration_us\":5002473,\"rps\":265.87,\"p50_us\":3412,\"p95_us\":4801,\"p99_us\":7012,\"max_us\":21010,\"mean_us\":3601.5,\"errors\":{\"connect\":0,\"read\":0,\"write\":0,\"status\":0,\"timeout\":0}}
";

    #[test]
    fn keeps_the_summary_line_and_adds_the_connections() {
        let v = parse(OUTPUT, 1).unwrap();
        assert_eq!(v["connections"], 1);
        assert_eq!(v["requests"], 1330);
        assert_eq!(v["rps"], 265.87);
        assert_eq!(v["p50_us"], 3412);
        assert_eq!(v["mean_us"], 3601.5);
        assert_eq!(v["errors"]["timeout"], 0);
    }

    #[test]
    fn the_last_json_line_wins() {
        let two = format!("{{\"requests\":1}}\n{OUTPUT}");
        assert_eq!(parse(&two, 32).unwrap()["requests"], 1330);
    }

    #[test]
    fn no_summary_is_an_error() {
        assert!(parse("Running 5s test\nRequests/sec: 1\n", 1).is_err());
        assert!(parse("{not json\n", 1).is_err());
        assert!(parse("[1, 2]\n", 1).is_err());
    }
}
