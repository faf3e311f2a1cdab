//! `onlyfans-stub`: runs the strict OnlyFans API stand-in (see the library docs).
//!
//! Environment: `STUB_ADDR` (default `127.0.0.1:8787`), `STUB_RATE_LIMIT_PER_MINUTE`
//! (default `RATE_LIMIT_PER_MINUTE` or 10), `STUB_BURST` (default `RATE_LIMIT_BURST`
//! or 10), `STUB_TOLERANCE_MS` (default 100), `ONLYFANS_API_TOKEN` (default
//! `local-dev-onlyfans-token`), `RUST_LOG` (default `info`). Logs JSON lines on
//! stdout; stops on SIGINT or SIGTERM.

use std::{process::ExitCode, time::Duration};

use onlyfans_stub::{StubConfig, config::DEFAULT_ADDR};
use tokio::{net::TcpListener, sync::watch};
use tracing_subscriber::EnvFilter;

/// How long in-flight calls may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

const USAGE: &str = "\
onlyfans-stub: strict local stand-in for the OnlyFans chat-message API

Usage: onlyfans-stub   (configured by the environment only)

  STUB_ADDR                   listen address       [default: 127.0.0.1:8787]
  STUB_RATE_LIMIT_PER_MINUTE  messages/min/account [default: $RATE_LIMIT_PER_MINUTE or 10]
  STUB_BURST                  bucket capacity      [default: $RATE_LIMIT_BURST or 10]
  STUB_TOLERANCE_MS           jitter tolerance     [default: 100]
  ONLYFANS_API_TOKEN          accepted bearer token [default: local-dev-onlyfans-token]
  RUST_LOG                    log filter           [default: info]
";

fn main() -> ExitCode {
    if std::env::args().nth(1).is_some() {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "onlyfans-stub failed");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = StubConfig::from_env().map_err(|e| e.to_string())?;
    let addr = std::env::var("STUB_ADDR")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let listener = TcpListener::bind(addr.trim())
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    tracing::info!(
        addr = %local,
        rate_per_minute = config.rate_per_minute,
        burst = config.burst,
        tolerance_ms = config.tolerance_ms,
        "onlyfans-stub listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut graceful = stop_rx.clone();
    let shutdown = async move {
        let _ = graceful.wait_for(|stop| *stop).await;
        tracing::info!("stop signal received, shutting down");
    };
    let mut forced = stop_rx;
    tokio::select! {
        result = onlyfans_stub::serve(listener, config, shutdown) => {
            result.map_err(|e| format!("server error: {e}"))?;
        }
        () = async {
            let _ = forced.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("calls still in flight after the grace period; exiting anyway");
        }
    }
    tracing::info!("onlyfans-stub stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the stub");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
