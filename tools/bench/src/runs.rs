//! The steps of `make bench` that take more than one measurement or more
//! than one stack: the accuracy runs side by side, and intake over HTTP with
//! the poller paused.

use crate::local_stack::{self, Spec};
use crate::{accuracy, stack, wrk};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The spread run on the stack this process's environment names, and beside
/// it, in one window, the naive baseline on a stack of its own (both are
/// paced by the rate limit and leave most of the CPU idle). Writes
/// accuracy-spread.json and accuracy-naive.json into `out_dir`; the naive
/// stack's and run's output goes to accuracy-naive.log there. The naive
/// stack is stopped again whatever happens.
pub async fn accuracy_pair(spread: accuracy::Args, naive: Spec, out_dir: &Path) -> Result<()> {
    let log = out_dir.join("accuracy-naive.log");
    std::fs::write(&log, "").with_context(|| format!("create {}", log.display()))?;
    let prefix = spread.prefix.clone();
    let naive_run = async {
        let stack = local_stack::up(&naive, Some(&log)).await?;
        let ran = naive_accuracy(&stack, &prefix, out_dir, &log).await;
        let downed = local_stack::down(&naive.stack_dir, Some(&log)).await;
        ran.and(downed)
    };
    let spread_run = async {
        let v = accuracy::run(&spread).await?;
        crate::write(&out_dir.join("accuracy-spread.json"), &v)
    };
    let (spread_done, naive_done) = tokio::join!(spread_run, naive_run);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    match naive_done {
        Ok(()) => {
            if let Some(line) = last_summary(&text) {
                eprintln!("{line}");
            }
        }
        Err(e) => {
            eprintln!("{}", tail(&text, 30));
            spread_done?;
            bail!("the naive baseline run failed: {e:#}");
        }
    }
    spread_done
}

/// `bench accuracy --label naive` in the naive stack's environment (its own
/// SQS endpoint, stub and queues), output to `log`.
async fn naive_accuracy(
    stack: &local_stack::Stack,
    prefix: &str,
    out_dir: &Path,
    log: &Path,
) -> Result<()> {
    let exe = std::env::current_exe().context("the bench binary's path")?;
    let f = std::fs::OpenOptions::new().append(true).open(log)?;
    let status = stack
        .command(exe)
        .args(["accuracy", "--label", "naive", "--prefix", prefix])
        .arg("--out")
        .arg(out_dir.join("accuracy-naive.json"))
        .arg("--poller-log")
        .arg(stack.poller_log())
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()
        .await
        .context("run bench accuracy (naive)")?;
    if !status.success() {
        bail!("bench accuracy --label naive exited with {status}");
    }
    Ok(())
}

/// The run's final progress line (`[bench] accuracy naive: …`).
pub fn last_summary(log: &str) -> Option<&str> {
    log.lines()
        .rev()
        .find(|l| l.starts_with("[bench] accuracy"))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub struct IntakeArgs {
    pub out_dir: PathBuf,
    pub stack_dir: PathBuf,
    pub queue_url: String,
    pub producer_url: String,
    pub jwt_secret: String,
    /// The bearer token's account.
    pub account: String,
    pub script: PathBuf,
    pub wrk_seconds: u32,
}

/// Resumes the paused poller when dropped, whatever ended the step.
struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        local_stack::signal(self.0, "CONT", false);
    }
}

/// Intake over HTTP with the stack's poller paused (so the queue only
/// fills): SendMessage alone against the same server as the baseline
/// (sqs-send.json), a wrk warm-up, then wrk at 1 and 32 connections
/// (wrk-c1.json, wrk-c32.json); the queue is purged before the poller
/// resumes.
pub async fn intake_http(args: &IntakeArgs) -> Result<()> {
    let poller = local_stack::stack_pid(&args.stack_dir, "poller")?;
    if !local_stack::signal(poller, "STOP", false) {
        bail!("could not pause the poller (pid {poller})");
    }
    let _resume = Paused(poller);
    let now = shared::now_ms() / 1000;
    let token = shared::auth::sign(&args.jwt_secret, &args.account, now, 3600)?;
    let v = stack::sqs_send_rate(&args.queue_url, 32, Duration::from_secs(5)).await?;
    crate::write(&args.out_dir.join("sqs-send.json"), &v)?;
    let url = format!("{}/v1/messages", args.producer_url);
    for (connections, seconds, out) in [
        (32, 3, None),
        (1, 5, Some("wrk-c1.json")),
        (32, args.wrk_seconds, Some("wrk-c32.json")),
    ] {
        let (url, script, token) = (url.clone(), args.script.clone(), token.clone());
        // wrk blocks for its whole run: off the async workers.
        let v = tokio::task::spawn_blocking(move || {
            wrk::run(&url, &script, &token, connections, seconds)
        })
        .await??;
        if let Some(out) = out {
            crate::write(&args.out_dir.join(out), &v)?;
        }
    }
    stack::purge(&args.queue_url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_last_accuracy_line() {
        let log = "[stack] started lambda\n\
                   [bench] accuracy naive: 2000 messages enqueued in 3.1s\n\
                   [bench] accuracy naive: 2000/2000 delivered, 0 violations\n\
                   [stack] stopped poller (pid 4)\n";
        assert_eq!(
            last_summary(log),
            Some("[bench] accuracy naive: 2000/2000 delivered, 0 violations")
        );
        assert_eq!(last_summary("[stack] up\n"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 3), "");
    }
}
