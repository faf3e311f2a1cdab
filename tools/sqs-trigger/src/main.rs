//! `sqs-trigger`: polls `QUEUE_URL` and invokes the consumer like Lambda's SQS event
//! source mapping would, until Ctrl-C or SIGTERM. See the library docs.

use std::process::ExitCode;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

const ENVIRONMENT: &str = "\
Configuration (environment):
  QUEUE_URL            queue to poll (required), http://host/<account>/<name>
  CONSUMER_INVOKE_URL  default http://127.0.0.1:9000/2015-03-31/functions/consumer/invocations
  BATCH_SIZE           records per invocation, 1..=10000 (default 10)
  BATCH_WINDOW_MS      batching window (default 0: invoke as soon as records arrive)
  MAX_CONCURRENCY      invocations in flight at most (default 2)
  WAIT_TIME_SECONDS    ReceiveMessage long poll, 0..=20 (default 1)
  INVOKE_TIMEOUT_MS    per invocation (default 120000)
  AWS_ENDPOINT_URL_SQS, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: read by the AWS SDK
  RUST_LOG             log filter (default info); logs are JSON lines on stdout

Ctrl-C or SIGTERM stops receiving and waits for in-flight invocations; a second one exits at once.";

/// Emulates AWS Lambda's SQS event source mapping for local development.
#[derive(Parser)]
#[command(name = "sqs-trigger", version, about, after_help = ENVIRONMENT)]
struct Cli {}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = match sqs_trigger::TriggerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            error!(error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let sdk_config = shared::tls::sdk_config_loader()
        // AWS_REGION (or AWS_DEFAULT_REGION), else us-east-1. Not the default
        // chain: its instance-metadata step would build an HTTP client of
        // its own, which this build does not have (the SDK's aws-lc default).
        .region(
            RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                .or_else("us-east-1"),
        )
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&sdk_config);

    match sqs_trigger::run(config, sqs, shutdown_signal()).await {
        Ok(_stats) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "sqs-trigger failed");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGINT/SIGTERM; a second one ends the process at once.
fn shutdown_signal() -> impl Future<Output = ()> + Send {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        let first = signals.next().await;
        info!(
            signal = first,
            "stopping (send the signal again to exit without waiting)"
        );
        let _ = tx.send(());
        let second = signals.next().await;
        warn!(
            signal = second,
            "exiting without waiting for in-flight invocations"
        );
        std::process::exit(130);
    });
    async move {
        let _ = rx.await;
    }
}

struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let terminate = match signal(SignalKind::terminate()) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    None
                }
            };
            Self { terminate }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) -> &'static str {
        let interrupt = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupt => "SIGINT",
                () = terminate => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            interrupt.await;
            "SIGINT"
        }
    }
}
