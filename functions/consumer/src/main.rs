//! Cold start: logs, config, clients (each built once), then the runtime loop.

use consumer::ports::OnlyFans;
use consumer::process::{Deps, Settings};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::breaker::Breaker;
use shared::config::Config;
use shared::delivery::OnlyFansClient;
use shared::limiter::RedisLimiter;
use shared::queue::SqsQueue;
use shared::store::RedisStore;
use shared::telemetry::{self, Metrics};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() -> Result<(), Error> {
    // `cargo lambda watch` pins AWS_LAMBDA_MAX_CONCURRENCY to 1 in every
    // function process (and its multi-instance mode crashes the runtime
    // client), so the local stack asks for concurrent invocations through
    // LOCAL_MAX_CONCURRENCY instead. In AWS it is unset: standard Lambda runs
    // one invocation per instance, Managed Instances set the real variable.
    if let Ok(n) = std::env::var("LOCAL_MAX_CONCURRENCY") {
        // SAFETY: no other thread exists yet: the tokio runtime is built below.
        unsafe { std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", n) };
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    // Secrets from Secrets Manager, SSM parameters or the environment (shared::ssm).
    let redis_url = shared::ssm::redis_url(&config).await?;
    let conn = shared::store::connect(&redis_url).await?;
    let (token, secrets) = shared::ssm::onlyfans_token(&config).await?;
    let client = OnlyFansClient::new(
        config.onlyfans_api_url.clone(),
        token,
        config.upstream_connect_timeout,
        config.upstream_timeout,
    )?;
    let queue = SqsQueue::new(
        shared::queue::sqs_client().await,
        config.require_queue_url()?,
        Some(config.require_dlq_url()?.to_owned()),
    );
    let deps = Arc::new(Deps {
        store: RedisStore::new(conn.clone(), config.status_ttl),
        queue,
        upstream: OnlyFans { client, secrets },
        limiter: RedisLimiter::new(conn, config.limiter),
        metrics: Metrics::new(config.metrics_namespace.clone(), "consumer"),
        breaker: Breaker::new(config.breaker),
        settings: Settings {
            enabled: config.enabled,
            max_attempts: config.max_attempts.get(),
            max_receive_count: config.max_receive_count,
            claim_lease: config.upstream_timeout + Duration::from_secs(5),
            record_budget: config.upstream_timeout + Duration::from_secs(1),
            in_process_wait: config.in_process_wait,
            deferral: config.deferral,
        },
    });
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<_>| {
        let deps = Arc::clone(&deps);
        async move {
            let deadline = deadline(event.context.deadline);
            let id = event.context.request_id.clone();
            Ok::<_, Error>(consumer::handler::handle(&*deps, event.payload, &id, deadline).await)
        }
    }))
    .await
}

/// Any real deadline is after this (2020-09-13, in epoch ms).
const PLAUSIBLE_EPOCH_MS: u64 = 1_600_000_000_000;

/// The invocation's deadline (epoch ms) as an `Instant`. `cargo lambda
/// watch` sends a relative number instead of an epoch time; then the
/// configured `FUNCTION_TIMEOUT_SECS` (default 30) stands in.
fn deadline(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if deadline_ms < PLAUSIBLE_EPOCH_MS {
        let secs = std::env::var("FUNCTION_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        return Instant::now() + Duration::from_secs(secs);
    }
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
