//! The benchmark's local stacks: each one the project's own stack
//! (`scripts/stack.sh up`) on ports and a STACK_DIR of its own, with the
//! deferral settings of one run, in front of its own SQS-compatible server
//! (tools/bench/moto_server.py, or the stock moto with BENCH_STOCK_MOTO=1).
//!
//! `bench stack up`/`stack down` manage the run's main stack for
//! scripts/bench.sh; `bench accuracy-pair` starts the naive baseline's stack
//! beside it and stops it again whatever happens.

use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The file, in a stack's directory, that holds the PID of the SQS-compatible
/// server the benchmark started for it (scripts/stack.sh's `pids` lists what
/// `stack.sh up` started; the server is started before it).
const MOTO_PID_FILE: &str = "bench-moto.pid";

/// What a stack is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Names the queue (`bench-LABEL`).
    pub label: String,
    pub lambda_port: u16,
    pub sqs_port: u16,
    pub stub_port: u16,
    pub stack_dir: PathBuf,
    /// DEFERRAL_STRATEGY: `spread` or `naive`.
    pub strategy: String,
    pub in_process_wait_ms: u64,
    pub visibility_timeout: u64,
    /// The stock moto server (started by stack.sh) instead of
    /// tools/bench/moto_server.py.
    pub stock_moto: bool,
}

impl Spec {
    /// The environment of the stack's processes, and of anything that
    /// talks to it, over the inherited one: every URL derived from this
    /// stack's ports as scripts/env.sh derives it, and no queue URL of
    /// another stack (stack.sh creates this one's).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let (l, q, s) = (self.lambda_port, self.sqs_port, self.stub_port);
        vec![
            ("LAMBDA_PORT", l.to_string()),
            ("SQS_PORT", q.to_string()),
            ("STUB_PORT", s.to_string()),
            ("STACK_DIR", self.stack_dir.display().to_string()),
            ("QUEUE_NAME", format!("bench-{}", self.label)),
            ("AWS_ENDPOINT_URL_SQS", format!("http://127.0.0.1:{q}")),
            ("ONLYFANS_API_URL", format!("http://127.0.0.1:{s}")),
            (
                "PRODUCER_URL",
                format!("http://127.0.0.1:{l}/lambda-url/producer"),
            ),
            (
                "CONSUMER_INVOKE_URL",
                format!("http://127.0.0.1:{l}/2015-03-31/functions/consumer/invocations"),
            ),
            ("DEFERRAL_STRATEGY", self.strategy.clone()),
            ("IN_PROCESS_WAIT_MS", self.in_process_wait_ms.to_string()),
            ("VISIBILITY_TIMEOUT", self.visibility_timeout.to_string()),
        ]
    }
}

/// Variables that name another stack's queues; removed from a stack's environment.
const UNSET: [&str; 2] = ["QUEUE_URL", "DLQ_URL"];

/// A stack that is up: its spec and the queue URLs stack.sh created.
#[derive(Debug)]
pub struct Stack {
    pub spec: Spec,
    pub queue_url: String,
    pub dlq_url: Option<String>,
}

impl Stack {
    /// `program` with this stack's environment (and its queues).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        for k in UNSET {
            cmd.env_remove(k);
        }
        cmd.envs(self.spec.env());
        cmd.env("QUEUE_URL", &self.queue_url);
        if let Some(dlq) = &self.dlq_url {
            cmd.env("DLQ_URL", dlq);
        }
        cmd
    }

    pub fn poller_log(&self) -> PathBuf {
        self.spec.stack_dir.join("logs/poller.log")
    }
}

/// The repository root: ROOT (scripts/env.sh exports it), else this crate's
/// grandparent.
pub fn root() -> PathBuf {
    std::env::var_os("ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

async fn wait_for_port(port: u16, what: &str, limit: Duration) -> Result<()> {
    let started = Instant::now();
    // Bounded by `limit`.
    while !port_open(port) {
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what} on :{port}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The PID recorded under `name` in a stack.sh `pids` file (`NAME PID` lines;
/// the last one wins, as a restarted process is appended).
pub fn recorded_pid(pids: &str, name: &str) -> Option<u32> {
    pids.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, p)| p.trim().parse().ok())
        .next_back()
}

/// The PID `stack.sh up` recorded for `name` in `stack_dir`.
pub fn stack_pid(stack_dir: &Path, name: &str) -> Result<u32> {
    let path = stack_dir.join("pids");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    recorded_pid(&text, name).with_context(|| format!("no {name} in {}", path.display()))
}

/// `export K=V` lines of stack.sh's `stack.env`: (QUEUE_URL, DLQ_URL).
pub fn parse_stack_env(text: &str) -> Result<(String, Option<String>)> {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let queue = value("QUEUE_URL").context("stack.env names no QUEUE_URL")?;
    Ok((queue, value("DLQ_URL")))
}

/// Sends `signal` (a `kill` name: TERM, KILL, STOP, CONT) to `pid`, or to its
/// process group when `group`. False when there was no such process.
pub fn signal(pid: u32, signal: &str, group: bool) -> bool {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(target)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True while `pid` runs (a zombie, whose parent has not reaped it yet, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// True when `pid` runs a command line containing `needle` (a PID file left
/// by an earlier run may name a process that is not ours any more).
fn runs(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
}

/// Starts a stack: its SQS-compatible server, then `scripts/stack.sh up`
/// with the spec's environment; stops its outbox replayer (not measured: it
/// only adds a Redis poll). A stack left in the same directory by an
/// interrupted run is stopped first. On failure, what was started is stopped.
/// `log`: where stack.sh's output goes (else this process's stderr).
pub async fn up(spec: &Spec, log: Option<&Path>) -> Result<Stack> {
    let root = root();
    down(&spec.stack_dir, log).await?;
    if port_open(spec.sqs_port) {
        bail!(
            "port {} is taken: set BENCH_SQS_PORT (or BENCH_NAIVE_SQS_PORT)",
            spec.sqs_port
        );
    }
    let logs = spec.stack_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("mkdir {}", logs.display()))?;
    let started = async {
        if !spec.stock_moto {
            start_moto(&root, spec).await?;
        }
        let mut cmd = tokio::process::Command::new(root.join("scripts/stack.sh"));
        cmd.arg("up").stdin(Stdio::null());
        for k in UNSET {
            cmd.env_remove(k);
        }
        cmd.envs(spec.env());
        output_to(&mut cmd, log)?;
        let status = cmd.status().await.context("run scripts/stack.sh up")?;
        if !status.success() {
            bail!(
                "scripts/stack.sh up ({} stack) exited with {status}",
                spec.label
            );
        }
        let env_file = spec.stack_dir.join("stack.env");
        let text = std::fs::read_to_string(&env_file)
            .with_context(|| format!("read {}", env_file.display()))?;
        let (queue_url, dlq_url) = parse_stack_env(&text)?;
        if let Ok(replay) = stack_pid(&spec.stack_dir, "replay") {
            signal(replay, "TERM", false);
        }
        Ok(Stack {
            spec: spec.clone(),
            queue_url,
            dlq_url,
        })
    }
    .await;
    if started.is_err() {
        let _ = down(&spec.stack_dir, log).await;
    }
    started
}

/// Sends a command's output to the end of `log`, or its stdout to this
/// process's stderr (stdout stays for what a command prints as its result).
fn output_to(cmd: &mut tokio::process::Command, log: Option<&Path>) -> Result<()> {
    if let Some(log) = log {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdout(f.try_clone()?).stderr(f);
    } else {
        cmd.stdout(std::io::stderr());
    }
    Ok(())
}

async fn start_moto(root: &Path, spec: &Spec) -> Result<()> {
    let venv = std::env::var_os("VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let log = spec.stack_dir.join("logs/moto-bench.log");
    let out = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let child = std::process::Command::new(venv.join("bin/python"))
        .arg(root.join("tools/bench/moto_server.py"))
        .args(["-H", "127.0.0.1", "-p", &spec.sqs_port.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // A group of its own, as stack.sh starts its processes: it outlives
        // this command (`bench stack up`) and is stopped as a whole.
        .process_group(0)
        .spawn()
        .context("start tools/bench/moto_server.py")?;
    let pid_file = spec.stack_dir.join(MOTO_PID_FILE);
    std::fs::write(&pid_file, format!("{}\n", child.id()))
        .with_context(|| format!("write {}", pid_file.display()))?;
    wait_for_port(
        spec.sqs_port,
        "the SQS-compatible server",
        Duration::from_secs(30),
    )
    .await
}

/// Stops the stack recorded in `stack_dir`, if any: resumes a paused
/// process (a stopped one cannot act on TERM), `scripts/stack.sh down`, then
/// the SQS-compatible server. Does nothing when nothing is recorded.
pub async fn down(stack_dir: &Path, log: Option<&Path>) -> Result<()> {
    let pids = stack_dir.join("pids");
    if let Ok(text) = std::fs::read_to_string(&pids) {
        for pid in text
            .lines()
            .filter_map(|l| l.split_once(' ')?.1.trim().parse().ok())
        {
            signal(pid, "CONT", false);
        }
        let mut cmd = tokio::process::Command::new(root().join("scripts/stack.sh"));
        cmd.arg("down")
            .env("STACK_DIR", stack_dir)
            .stdin(Stdio::null());
        output_to(&mut cmd, log)?;
        let status = cmd.status().await.context("run scripts/stack.sh down")?;
        if !status.success() {
            bail!("scripts/stack.sh down exited with {status}");
        }
    }
    let pid_file = stack_dir.join(MOTO_PID_FILE);
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        if let Ok(pid) = text.trim().parse::<u32>()
            && runs(pid, "moto_server")
        {
            stop_group(pid).await;
        }
        std::fs::remove_file(&pid_file).with_context(|| format!("rm {}", pid_file.display()))?;
    }
    Ok(())
}

/// TERM to the group, up to 10 s for it to go, then KILL.
async fn stop_group(pid: u32) {
    signal(pid, "TERM", true);
    for _ in 0..40 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    signal(pid, "KILL", true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            label: "naive".into(),
            lambda_port: 9310,
            sqs_port: 4606,
            stub_port: 8807,
            stack_dir: PathBuf::from("/tmp/x/.stack/bench-naive"),
            strategy: "naive".into(),
            in_process_wait_ms: 0,
            visibility_timeout: 5,
            stock_moto: false,
        }
    }

    #[test]
    fn recorded_pid_takes_the_last_line_of_that_name() {
        let pids = "sqs 10\nstub 11\nlambda 12\npoller 13\nreplay 14\npoller 20\n";
        assert_eq!(recorded_pid(pids, "poller"), Some(20));
        assert_eq!(recorded_pid(pids, "lambda"), Some(12));
        assert_eq!(recorded_pid(pids, "redis"), None);
        assert_eq!(recorded_pid("poller x\n", "poller"), None);
    }

    #[test]
    fn stack_env_gives_both_queue_urls() {
        let text = "export QUEUE_URL=http://127.0.0.1:4606/123456789012/bench-naive\n\
                    export DLQ_URL=http://127.0.0.1:4606/123456789012/bench-naive-dlq\n";
        let (q, d) = parse_stack_env(text).unwrap();
        assert_eq!(q, "http://127.0.0.1:4606/123456789012/bench-naive");
        assert_eq!(
            d.as_deref(),
            Some("http://127.0.0.1:4606/123456789012/bench-naive-dlq")
        );
        assert_eq!(
            parse_stack_env("export QUEUE_URL=q\nexport DLQ_URL=\n").unwrap(),
            ("q".to_owned(), None)
        );
        assert!(parse_stack_env("export DLQ_URL=d\n").is_err());
    }

    /// The URLs a stack's environment names are the ones scripts/env.sh
    /// derives from the same ports (the stack's processes get theirs there).
    #[test]
    fn env_urls_are_the_ones_env_sh_derives() {
        let spec = spec();
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c").arg(format!(
            "source '{}/scripts/env.sh' && env",
            root().display()
        ));
        for k in [
            "AWS_ENDPOINT_URL_SQS",
            "ONLYFANS_API_URL",
            "PRODUCER_URL",
            "CONSUMER_INVOKE_URL",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in spec.env() {
            if k.ends_with("_PORT") || k == "STACK_DIR" {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let env = String::from_utf8(out.stdout).unwrap();
        for (k, v) in spec.env() {
            if k.ends_with("_URL") || k.ends_with("_URL_SQS") {
                let line = format!("{k}={v}");
                assert!(env.lines().any(|l| l == line), "env.sh gives no {line}");
            }
        }
        let names: Vec<&str> = spec.env().iter().map(|(k, _)| *k).collect();
        assert!(names.contains(&"DEFERRAL_STRATEGY"));
        assert!(
            spec.env()
                .contains(&("QUEUE_NAME", "bench-naive".to_owned()))
        );
    }

    /// The SQS-compatible server the benchmark starts runs in a group of
    /// its own, answers SQS, outlives nothing: `down` stops it and forgets it,
    /// and a second `down` does nothing. (Real moto from .venv; port 9598.)
    #[tokio::test]
    async fn moto_starts_answers_and_stops() {
        let root = root();
        let venv = std::env::var_os("VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv"));
        assert!(
            venv.join("bin/python").exists(),
            "no {}/bin/python: run scripts/setup.sh",
            venv.display()
        );
        let dir = std::env::temp_dir().join(format!("bench-stack-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let spec = Spec {
            sqs_port: 9598,
            stack_dir: dir.clone(),
            ..spec()
        };
        assert!(!port_open(spec.sqs_port), "port 9598 is taken");
        start_moto(&root, &spec).await.unwrap();
        let pid: u32 = std::fs::read_to_string(dir.join(MOTO_PID_FILE))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(runs(pid, "moto_server"));
        let body = crate::stack::http()
            .unwrap()
            .post("http://127.0.0.1:9598/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("Action=ListQueues")
            .send()
            .await
            .unwrap();
        assert!(body.status().is_success());
        down(&dir, None).await.unwrap();
        assert!(!alive(pid));
        assert!(!port_open(spec.sqs_port));
        assert!(!dir.join(MOTO_PID_FILE).exists());
        down(&dir, None).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
