//! `bench`: the measuring half of `make bench` (scripts/bench.sh drives it).
//! Each subcommand measures one thing and writes a JSON part into
//! `target/bench/`; `report` merges the parts into `report.json` and
//! `report.md`. Dev only, never deployed.

mod accuracy;
mod e2e;
mod footprint;
mod handler;
mod limiter;
mod report;
mod settings;
mod stack;
mod stats;
mod wrk;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the outbound-messages service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// RedisLimiter::acquire against redis-benchmark EVALSHA of the same script.
    Limiter {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Prefix of every account id (unique per run).
        #[arg(long)]
        prefix: String,
        /// Single-connection runs are latency-bound and swing with the
        /// machine's load: many short back-to-back pairs.
        #[arg(long, default_value_t = 15)]
        rounds_c1: usize,
        #[arg(long, default_value_t = 5)]
        rounds_c32: usize,
        #[arg(long, default_value_t = 6_000)]
        ops_c1: usize,
        #[arg(long, default_value_t = 40_000)]
        ops_c32: usize,
        /// Drive the client from a current-thread runtime (a diagnostic: the
        /// functions use the multi-thread one).
        #[arg(long)]
        current_thread: bool,
        /// Only the configuration of this name (a diagnostic), e.g. c1-a1.
        #[arg(long)]
        only: Option<String>,
    },
    /// The producer's handler in process, with in-memory ports.
    IntakeHandler {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 30_000)]
        per_round: usize,
    },
    /// A backlog through the running stack (poller, consumer, stub).
    Accuracy {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        label: String,
        #[arg(long)]
        prefix: String,
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        #[arg(long, env = "DLQ_URL")]
        dlq_url: Option<String>,
        #[arg(long, env = "ONLYFANS_API_URL")]
        stub_url: String,
        /// The poller's JSON log (STACK_DIR/logs/poller.log).
        #[arg(long)]
        poller_log: PathBuf,
        #[arg(long, env = "RATE_LIMIT_PER_MINUTE")]
        rate_per_minute: f64,
        #[arg(long, env = "RATE_LIMIT_BURST")]
        burst: f64,
        #[arg(long, default_value_t = 1000)]
        solo_messages: usize,
        #[arg(long, default_value_t = 1000)]
        spread_messages: usize,
        #[arg(long, default_value_t = 100)]
        spread_accounts: usize,
        #[arg(long, default_value = "medium")]
        priority: String,
        #[arg(long, default_value_t = 420)]
        timeout_secs: u64,
    },
    /// POST → stub receipt through the running stack.
    E2e {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        prefix: String,
        #[arg(long, env = "PRODUCER_URL")]
        producer_url: String,
        #[arg(long, env = "ONLYFANS_API_URL")]
        stub_url: String,
        #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
        #[arg(long, default_value_t = 300)]
        messages: usize,
        #[arg(long, default_value_t = 20.0)]
        per_second: f64,
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Start → first Runtime API `/next`, against a fake Runtime API.
    InitTime {
        #[arg(long)]
        out: PathBuf,
        /// NAME=PATH of a function binary (repeat).
        #[arg(long = "binary", required = true)]
        binaries: Vec<String>,
        #[arg(long, default_value_t = 15)]
        runs: usize,
    },
    /// VmHWM of the processes named NAME under ROOT_PID.
    Rss {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        root_pid: u32,
        #[arg(long, default_value = "consumer")]
        name: String,
    },
    /// Deletes this run's Redis keys (`of:{PREFIX...`).
    Cleanup {
        #[arg(long)]
        prefix: String,
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
    },
    /// SendMessage alone, N at a time: the SQS-compatible server's own pace.
    SqsSend {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Empties a queue (PurgeQueue).
    Purge {
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
    },
    /// Intake over HTTP: runs `wrk` with the POST script and writes its
    /// summary line, with the connection count.
    Wrk {
        #[arg(long)]
        out: PathBuf,
        /// The URL to POST to (`$PRODUCER_URL/v1/messages`).
        #[arg(long)]
        url: String,
        /// The wrk Lua script (tools/bench/wrk-post.lua; BENCH_TOKEN in the
        /// environment is its bearer token).
        #[arg(long)]
        script: PathBuf,
        #[arg(long)]
        connections: u32,
        #[arg(long)]
        seconds: u32,
    },
    /// Writes stack-settings.json: the settings the run's stacks use.
    Settings {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, env = "MAX_CONCURRENCY")]
        max_concurrency: String,
        #[arg(long, env = "RATE_LIMIT_PER_MINUTE")]
        rate_per_minute: String,
        #[arg(long, env = "RATE_LIMIT_BURST")]
        burst: String,
        #[arg(long)]
        spread_visibility_timeout: String,
        #[arg(long)]
        spread_in_process_wait_ms: String,
        #[arg(long)]
        naive_visibility_timeout: String,
        #[arg(long)]
        naive_in_process_wait_ms: String,
        #[arg(long, env = "STUB_TOLERANCE_MS", default_value = "100")]
        stub_tolerance_ms: String,
        #[arg(long, env = "LAMBDA_PORT")]
        lambda_port: String,
        #[arg(long, env = "SQS_PORT")]
        sqs_port: String,
        #[arg(long, env = "STUB_PORT")]
        stub_port: String,
    },
    /// Merges the parts into report.json and report.md.
    Report {
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
        #[arg(long)]
        producer_zip: PathBuf,
        #[arg(long)]
        consumer_zip: PathBuf,
        #[arg(long)]
        elapsed_s: Option<f64>,
        #[arg(long, default_value = "release")]
        watch_profile: String,
        #[arg(long, default_value = "")]
        rustc: String,
    },
}

fn write(path: &Path, v: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n")
        .with_context(|| format!("write {}", path.display()))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The in-process handler benchmark runs on one thread, as a Lambda
    // instance serves one request at a time; everything else on the
    // multi-thread runtime the functions use.
    if let Command::IntakeHandler {
        out,
        rounds,
        per_round,
    } = &cli.command
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let v = rt.block_on(handler::run(*rounds, *per_round))?;
        return write(out, &v);
    }
    let rt = match &cli.command {
        Command::Limiter {
            current_thread: true,
            ..
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    rt.block_on(run(cli.command))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Limiter {
            out,
            redis_url,
            prefix,
            rounds_c1,
            rounds_c32,
            ops_c1,
            ops_c32,
            current_thread,
            only,
        } => {
            let args = limiter::Args {
                redis_url,
                prefix,
                rounds_c1,
                rounds_c32,
                ops_c1,
                ops_c32,
                current_thread,
                only,
            };
            let v = limiter::run(&args).await;
            // Remove the buckets whatever happened.
            let removed = stack::cleanup_redis(&args.redis_url, &args.prefix).await?;
            eprintln!("[bench] limiter: removed {removed} Redis keys");
            write(&out, &v?)
        }
        Command::IntakeHandler { .. } => Ok(()),
        Command::Accuracy {
            out,
            label,
            prefix,
            queue_url,
            dlq_url,
            stub_url,
            poller_log,
            rate_per_minute,
            burst,
            solo_messages,
            spread_messages,
            spread_accounts,
            priority,
            timeout_secs,
        } => {
            let v = accuracy::run(&accuracy::Args {
                label,
                prefix,
                queue_url,
                dlq_url,
                stub_url,
                poller_log,
                rate_per_minute,
                burst,
                solo_messages,
                spread_messages,
                spread_accounts,
                priority,
                timeout: Duration::from_secs(timeout_secs),
            })
            .await?;
            write(&out, &v)
        }
        Command::E2e {
            out,
            prefix,
            producer_url,
            stub_url,
            jwt_secret,
            messages,
            per_second,
            timeout_secs,
        } => {
            let v = e2e::run(&e2e::Args {
                prefix,
                producer_url,
                stub_url,
                jwt_secret,
                messages,
                per_second,
                timeout: Duration::from_secs(timeout_secs),
            })
            .await?;
            write(&out, &v)
        }
        Command::InitTime {
            out,
            binaries,
            runs,
        } => {
            let bins: Vec<(String, PathBuf)> = binaries
                .iter()
                .map(|b| {
                    b.split_once('=')
                        .map(|(n, p)| (n.to_owned(), PathBuf::from(p)))
                        .with_context(|| format!("--binary {b:?}: expected NAME=PATH"))
                })
                .collect::<Result<_>>()?;
            // The figure: the Lambda runtime's trust-store layout; beside it,
            // this machine's own (see `footprint::TrustStore`).
            let empty = out.with_file_name("empty-cert-dir");
            let stores = [
                ("lambda", footprint::TrustStore::lambda_like(&empty)?),
                ("host", footprint::TrustStore::Host),
            ];
            let v = footprint::init_times(&bins, &stores, runs).await?;
            write(&out, &v)
        }
        Command::Rss {
            out,
            root_pid,
            name,
        } => write(&out, &footprint::peak_rss(root_pid, &name)?),
        Command::Cleanup { prefix, redis_url } => {
            let removed = stack::cleanup_redis(&redis_url, &prefix).await?;
            eprintln!("[bench] removed {removed} Redis keys of {prefix}");
            Ok(())
        }
        Command::SqsSend {
            out,
            queue_url,
            concurrency,
            seconds,
        } => {
            let v =
                stack::sqs_send_rate(&queue_url, concurrency, Duration::from_secs(seconds)).await?;
            write(&out, &v)
        }
        Command::Purge { queue_url } => {
            let sqs = shared::queue::sqs_client(&shared::tls::sdk_config().await);
            sqs.purge_queue()
                .queue_url(&queue_url)
                .send()
                .await
                .context("PurgeQueue")?;
            Ok(())
        }
        Command::Wrk {
            out,
            url,
            script,
            connections,
            seconds,
        } => {
            // wrk blocks for its whole run: off the async workers.
            let v =
                tokio::task::spawn_blocking(move || wrk::run(&url, &script, connections, seconds))
                    .await??;
            write(&out, &v)
        }
        Command::Settings {
            out,
            max_concurrency,
            rate_per_minute,
            burst,
            spread_visibility_timeout,
            spread_in_process_wait_ms,
            naive_visibility_timeout,
            naive_in_process_wait_ms,
            stub_tolerance_ms,
            lambda_port,
            sqs_port,
            stub_port,
        } => {
            let v = settings::build(&[
                ("max_concurrency", &max_concurrency),
                ("rate_per_minute", &rate_per_minute),
                ("burst", &burst),
                ("spread_visibility_timeout", &spread_visibility_timeout),
                ("spread_in_process_wait_ms", &spread_in_process_wait_ms),
                ("naive_visibility_timeout", &naive_visibility_timeout),
                ("naive_in_process_wait_ms", &naive_in_process_wait_ms),
                ("stub_tolerance_ms", &stub_tolerance_ms),
                ("lambda_port", &lambda_port),
                ("sqs_port", &sqs_port),
                ("stub_port", &stub_port),
            ])?;
            write(&out, &v)
        }
        Command::Report {
            dir,
            producer_zip,
            consumer_zip,
            elapsed_s,
            watch_profile,
            rustc,
        } => report::run(&report::Args {
            dir,
            producer_zip,
            consumer_zip,
            elapsed_s,
            watch_profile,
            rustc,
        }),
    }
}
