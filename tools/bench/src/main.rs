//! `bench`: the measuring half of `make bench` (scripts/bench.sh drives it).
//! Each subcommand measures one thing and writes a JSON part into
//! `target/bench/`; `report` merges the parts into `report.json` and
//! `report.md`. Dev only, never deployed.

mod accuracy;
mod campaign;
mod cluster;
mod durability;
mod e2e;
mod footprint;
mod handler;
mod limiter;
mod local_stack;
mod report;
mod runs;
mod settings;
mod stack;
mod stats;
mod wrk;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
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
        /// Only the configuration of this name (a diagnostic), e.g. c1-a1;
        /// `wait`: only the REDIS_WAIT_REPLICAS figures; `cluster`: only one
        /// Redis against a 3-shard cluster.
        #[arg(long)]
        only: Option<String>,
        /// The primary + replica pair the WAIT figures start (ports P, P+1).
        #[arg(long, default_value_t = 7110)]
        wait_port: u16,
        /// Decisions per side and round of the WAIT figures.
        #[arg(long, default_value_t = 2_000)]
        wait_decisions: usize,
        #[arg(long, default_value_t = 5)]
        wait_rounds: usize,
        /// The Redis Cluster the single-vs-cluster figures start (ports
        /// P..P+5) and their single Redis (P+6).
        #[arg(long, default_value_t = 7170)]
        cluster_port: u16,
        /// Decisions per side and round of the single-vs-cluster figures.
        #[arg(long, default_value_t = 2_000)]
        cluster_decisions: usize,
        #[arg(long, default_value_t = 3)]
        cluster_rounds: usize,
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
        #[arg(long, default_value_t = accuracy::SOLO_MESSAGES)]
        solo_messages: usize,
        #[arg(long, default_value_t = accuracy::SPREAD_MESSAGES)]
        spread_messages: usize,
        #[arg(long, default_value_t = accuracy::SPREAD_ACCOUNTS)]
        spread_accounts: usize,
        #[arg(long, default_value = accuracy::PRIORITY)]
        priority: String,
        #[arg(long, default_value_t = accuracy::TIMEOUT.as_secs())]
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
    /// `POST /v1/campaigns` with many recipients through the running stack.
    Campaign {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        prefix: String,
        #[arg(long, env = "PRODUCER_URL")]
        producer_url: String,
        #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
        /// Few: against the local SQS stand-in a round takes seconds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 1000)]
        recipients: usize,
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
        /// Default: the `lambda` (cargo lambda watch) of STACK_DIR/pids.
        #[arg(long)]
        root_pid: Option<u32>,
        #[arg(long, env = "STACK_DIR")]
        stack_dir: Option<PathBuf>,
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
    /// Intake over HTTP on the running stack, its poller paused: SendMessage
    /// alone as the baseline (sqs-send.json), then `wrk` with the POST
    /// script at 1 and 32 connections (wrk-c1.json, wrk-c32.json).
    IntakeHttp {
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(long, env = "STACK_DIR")]
        stack_dir: PathBuf,
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        #[arg(long, env = "PRODUCER_URL")]
        producer_url: String,
        #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
        /// Prefix of the token's account id (unique per run).
        #[arg(long)]
        prefix: String,
        /// The wrk Lua script (tools/bench/wrk-post.lua).
        #[arg(long)]
        script: PathBuf,
        /// Length of the 32-connection run.
        #[arg(long, default_value_t = 15)]
        wrk_seconds: u32,
    },
    /// Starts or stops a benchmark stack (its ports and STACK_DIR from the
    /// environment, as scripts/env.sh names them).
    Stack {
        #[command(subcommand)]
        action: StackAction,
    },
    /// Accuracy of the spread run on the running stack and, beside it, of
    /// the naive baseline on a stack of its own, started and stopped here.
    AccuracyPair {
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(long)]
        prefix: String,
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        #[arg(long, env = "DLQ_URL")]
        dlq_url: Option<String>,
        #[arg(long, env = "ONLYFANS_API_URL")]
        stub_url: String,
        /// The running (spread) stack's directory.
        #[arg(long, env = "STACK_DIR")]
        stack_dir: PathBuf,
        #[arg(long, env = "RATE_LIMIT_PER_MINUTE")]
        rate_per_minute: f64,
        #[arg(long, env = "RATE_LIMIT_BURST")]
        burst: f64,
        #[arg(long)]
        naive_lambda_port: u16,
        #[arg(long)]
        naive_sqs_port: u16,
        #[arg(long)]
        naive_stub_port: u16,
        #[arg(long)]
        naive_stack_dir: PathBuf,
        #[arg(long)]
        naive_visibility_timeout: u64,
        #[arg(long)]
        naive_in_process_wait_ms: u64,
        /// The stock moto server instead of tools/bench/moto_server.py.
        #[arg(long, env = "BENCH_STOCK_MOTO", value_parser = flag)]
        stock_moto: Option<bool>,
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

#[derive(Subcommand)]
enum StackAction {
    /// Starts the stack for one run (a stack left in STACK_DIR is stopped
    /// first); prints nothing, writes STACK_DIR/stack.env.
    Up {
        /// Names the queue (`bench-LABEL`).
        #[arg(long)]
        label: String,
        /// DEFERRAL_STRATEGY.
        #[arg(long)]
        strategy: String,
        #[arg(long)]
        in_process_wait_ms: u64,
        #[arg(long)]
        visibility_timeout: u64,
        #[arg(long, env = "LAMBDA_PORT")]
        lambda_port: u16,
        #[arg(long, env = "SQS_PORT")]
        sqs_port: u16,
        #[arg(long, env = "STUB_PORT")]
        stub_port: u16,
        #[arg(long, env = "STACK_DIR")]
        stack_dir: PathBuf,
        /// The stock moto server instead of tools/bench/moto_server.py.
        #[arg(long, env = "BENCH_STOCK_MOTO", value_parser = flag)]
        stock_moto: Option<bool>,
    },
    /// Stops what `stack up` started in STACK_DIR, if anything.
    Down {
        #[arg(long, env = "STACK_DIR")]
        stack_dir: PathBuf,
    },
}

/// A yes/no knob from the environment: empty, `0` and `false` are no.
fn flag(text: &str) -> Result<bool, std::convert::Infallible> {
    Ok(!matches!(text.trim(), "" | "0" | "false"))
}

pub(crate) fn write(path: &Path, v: &Value) -> Result<()> {
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
            wait_port,
            wait_decisions,
            wait_rounds,
            cluster_port,
            cluster_decisions,
            cluster_rounds,
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
            let wait = durability::Args {
                port: wait_port,
                prefix: args.prefix.clone(),
                decisions: wait_decisions,
                rounds: wait_rounds,
            };
            let topology = cluster::Args {
                port_base: cluster_port,
                prefix: args.prefix.clone(),
                decisions: cluster_decisions,
                rounds: cluster_rounds,
            };
            // `--only wait`: the durability figures alone (a diagnostic).
            if args.only.as_deref() == Some("wait") {
                return write(&out, &json!({ "wait": durability::run(&wait).await? }));
            }
            // `--only cluster`: one Redis against a 3-shard cluster alone.
            if args.only.as_deref() == Some("cluster") {
                let c = cluster::run(&topology).await?;
                return write(
                    &out,
                    &json!({ "single": c["single"], "cluster": c["cluster"], "topology": c }),
                );
            }
            let v = limiter::run(&args).await;
            // Remove the buckets whatever happened.
            let removed = stack::cleanup_redis(&args.redis_url, &args.prefix).await?;
            eprintln!("[bench] limiter: removed {removed} Redis keys");
            let mut v = v?;
            if args.only.is_none() {
                // The durability option's cost, on a pair of its own.
                v["wait"] = durability::run(&wait).await?;
                // One Redis against a 3-shard cluster (limiter.single.ops_s,
                // limiter.cluster.ops_s, limiter.cluster.shards).
                let c = cluster::run(&topology).await?;
                v["single"] = c["single"].clone();
                v["cluster"] = c["cluster"].clone();
                v["topology"] = c;
            }
            write(&out, &v)
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
        Command::Campaign {
            out,
            prefix,
            producer_url,
            jwt_secret,
            rounds,
            recipients,
        } => {
            let v = campaign::run(&campaign::Args {
                prefix,
                producer_url,
                jwt_secret,
                rounds,
                recipients,
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
            stack_dir,
            name,
        } => {
            let root_pid = match (root_pid, stack_dir) {
                (Some(pid), _) => pid,
                (None, Some(dir)) => local_stack::stack_pid(&dir, "lambda")?,
                (None, None) => anyhow::bail!("--root-pid or --stack-dir (STACK_DIR) is needed"),
            };
            write(&out, &footprint::peak_rss(root_pid, &name)?)
        }
        Command::Cleanup { prefix, redis_url } => {
            let removed = stack::cleanup_redis(&redis_url, &prefix).await?;
            eprintln!("[bench] removed {removed} Redis keys of {prefix}");
            Ok(())
        }
        Command::IntakeHttp {
            out_dir,
            stack_dir,
            queue_url,
            producer_url,
            jwt_secret,
            prefix,
            script,
            wrk_seconds,
        } => {
            runs::intake_http(&runs::IntakeArgs {
                out_dir,
                stack_dir,
                queue_url,
                producer_url,
                jwt_secret,
                account: format!("{prefix}-wrk"),
                script,
                wrk_seconds,
            })
            .await
        }
        Command::Stack {
            action:
                StackAction::Up {
                    label,
                    strategy,
                    in_process_wait_ms,
                    visibility_timeout,
                    lambda_port,
                    sqs_port,
                    stub_port,
                    stack_dir,
                    stock_moto,
                },
        } => {
            let spec = local_stack::Spec {
                label,
                lambda_port,
                sqs_port,
                stub_port,
                stack_dir,
                strategy,
                in_process_wait_ms,
                visibility_timeout,
                stock_moto: stock_moto.unwrap_or(false),
            };
            local_stack::up(&spec, None).await.map(drop)
        }
        Command::Stack {
            action: StackAction::Down { stack_dir },
        } => local_stack::down(&stack_dir, None).await,
        Command::AccuracyPair {
            out_dir,
            prefix,
            queue_url,
            dlq_url,
            stub_url,
            stack_dir,
            rate_per_minute,
            burst,
            naive_lambda_port,
            naive_sqs_port,
            naive_stub_port,
            naive_stack_dir,
            naive_visibility_timeout,
            naive_in_process_wait_ms,
            stock_moto,
        } => {
            let spread = accuracy::Args {
                label: "spread".into(),
                prefix,
                queue_url,
                dlq_url,
                stub_url,
                poller_log: stack_dir.join("logs/poller.log"),
                rate_per_minute,
                burst,
                ..accuracy::Args::default()
            };
            let naive = local_stack::Spec {
                label: "naive".into(),
                lambda_port: naive_lambda_port,
                sqs_port: naive_sqs_port,
                stub_port: naive_stub_port,
                stack_dir: naive_stack_dir,
                strategy: "naive".into(),
                in_process_wait_ms: naive_in_process_wait_ms,
                visibility_timeout: naive_visibility_timeout,
                stock_moto: stock_moto.unwrap_or(false),
            };
            runs::accuracy_pair(spread, naive, &out_dir).await
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
