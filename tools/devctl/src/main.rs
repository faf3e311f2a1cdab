//! Developer commands for the local stack (and, where it makes sense, AWS):
//! sign a local bearer token, create the queues, move DLQ messages back.

use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "devctl",
    about = "Local stack commands for the outbound-messages service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a signed HS256 bearer token whose `sub` is ACCOUNT.
    Token {
        #[arg(default_value = "acct_1")]
        account: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl: u64,
        /// The `scope` claim, space separated (`messages:admin` opens the
        /// admin routes).
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, env = "AUTH_JWT_SECRET", default_value = shared::config::LOCAL_JWT_SECRET, hide_env_values = true)]
        secret: String,
    },
    /// Creates the main queue and its DLQ (redrive policy); prints their URLs
    /// as QUEUE_URL=... and DLQ_URL=... lines. Idempotent.
    CreateQueues {
        #[arg(long, default_value = "outbound-messages")]
        name: String,
        #[arg(long, env = "VISIBILITY_TIMEOUT", default_value_t = 60)]
        visibility_timeout: u32,
        /// The redrive maxReceiveCount [default: the functions' own
        /// MAX_RECEIVE_COUNT default, so both agree when it is unset].
        #[arg(long, env = "MAX_RECEIVE_COUNT")]
        max_receive_count: Option<u32>,
    },
    /// Prints the names of every environment variable the functions read
    /// for their configuration, one per line (shared::config::VARS and
    /// shared::telemetry::VARS): what scripts/stack.sh passes on to them.
    ConfigVars,
    /// Moves the producer's outbox (messages accepted while SQS was down) to
    /// the main queue, in order. With --every, keeps doing so until stopped.
    Replay {
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Repeat every this many seconds (the local stand-in for the
        /// EventBridge schedule that runs the replay in AWS).
        #[arg(long)]
        every: Option<u64>,
    },
    /// Moves messages from the DLQ back to the main queue.
    Redrive {
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        #[arg(long, env = "DLQ_URL")]
        dlq_url: String,
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// List what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move at most this many.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::ConfigVars => {
            for var in shared::config::VARS.iter().chain(shared::telemetry::VARS) {
                println!("{}", var.name);
            }
        }
        Command::Token {
            account,
            ttl,
            scope,
            secret,
        } => {
            shared::auth::account_from_sub(&account).context("ACCOUNT")?;
            let now = shared::now_ms() / 1000;
            let token =
                shared::auth::sign_with_scope(&secret, &account, scope.as_deref(), now, ttl)?;
            println!("{token}");
        }
        Command::CreateQueues {
            name,
            visibility_timeout,
            max_receive_count,
        } => {
            let max_receive_count = match max_receive_count {
                Some(n) => n,
                None => shared::config::Config::from_lookup(|_| None)?.max_receive_count,
            };
            let sqs = client().await;
            let dlq = sqs
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
                .send()
                .await
                .context("creating the DLQ")?;
            let dlq_url = dlq.queue_url.context("no DLQ URL")?;
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await?
                .attributes
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                .context("no DLQ ARN")?;
            let redrive = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count });
            let main = sqs
                .create_queue()
                .queue_name(&name)
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    visibility_timeout.to_string(),
                )
                .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
                .send()
                .await
                .context("creating the main queue")?;
            println!("QUEUE_URL={}", main.queue_url.context("no queue URL")?);
            println!("DLQ_URL={dlq_url}");
        }
        Command::Redrive {
            queue_url,
            dlq_url,
            redis_url,
            dry_run,
            max,
        } => redrive(&queue_url, &dlq_url, &redis_url, dry_run, max).await?,
        Command::Replay {
            queue_url,
            redis_url,
            every,
        } => {
            let conn = shared::store::connect(&redis_url)
                .await
                .context("connecting to Redis")?;
            let outbox = shared::outbox::Outbox::for_queue(conn, &queue_url);
            let sqs = shared::queue::SqsQueue::new(client().await, queue_url, None);
            loop {
                match outbox.replay(&sqs, shared::outbox::REPLAY_BATCH).await {
                    Ok(stats) if stats.moved > 0 || every.is_none() => {
                        println!(
                            "moved {} message(s) from the outbox; {} remaining",
                            stats.moved, stats.remaining
                        )
                    }
                    Ok(_) => {}
                    Err(e) if every.is_some() => eprintln!("outbox replay failed: {e}"),
                    Err(e) => return Err(e.into()),
                }
                let Some(secs) = every else { break };
                tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            }
        }
    }
    Ok(())
}

async fn client() -> aws_sdk_sqs::Client {
    let config = shared::tls::sdk_config_loader().load().await;
    aws_sdk_sqs::Client::new(&config)
}

async fn redrive(
    queue_url: &str,
    dlq_url: &str,
    redis_url: &str,
    dry_run: bool,
    max: usize,
) -> Result<()> {
    let sqs = client().await;
    let store = shared::store::RedisStore::new(
        shared::store::connect(redis_url)
            .await
            .context("connecting to Redis")?,
        std::time::Duration::from_secs(7 * 24 * 3600),
    );
    let moved = shared::redrive::redrive(&sqs, &store, dlq_url, queue_url, dry_run, max).await?;
    for m in &moved {
        let verb = if dry_run { "would move" } else { "moved" };
        let revived = if m.revived {
            " (status reset to queued)"
        } else {
            ""
        };
        println!("{verb} {} reason: {}{revived}", m.sqs_message_id, m.reason);
    }
    let verb = if dry_run { "would be moved" } else { "moved" };
    println!("{} message(s) {verb}", moved.len());
    Ok(())
}
