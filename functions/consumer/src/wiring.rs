//! The cold start: configuration read once, every client built once, then
//! the runtime loop. `main.rs` only calls [`run`].

use crate::handler;
use crate::process::{Deps, Settings};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::breaker::Breaker;
use shared::clock::Clock;
use shared::config::Config;
use shared::delivery::{Jitter, OnlyFansClient};
use shared::limiter::RedisLimiter;
use shared::queue::SqsQueue;
use shared::store::RedisStore;
use shared::telemetry::{self, Metrics};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The consumer as deployed: Redis, SQS and the OnlyFans client.
pub type LiveDeps = Deps<RedisStore, SqsQueue, OnlyFansClient, RedisLimiter>;

/// Reads the configuration, builds the clients, and serves invocations.
pub async fn run() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let deps = Arc::new(build(&config).await?);
    let fallback = config.function_timeout;
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let deps = Arc::clone(&deps);
        async move {
            let deadline = invocation_deadline(&deps.clock, event.context.deadline, fallback);
            let id = event.context.request_id.clone();
            Ok::<_, Error>(handler::handle(&*deps, event.payload, &id, deadline).await)
        }
    }))
    .await
}

/// Every client, built once.
pub async fn build(config: &Config) -> Result<LiveDeps, Error> {
    let clock = Clock::system();
    // Loaded once: the SQS and Secrets Manager clients share it (and its
    // HTTP connection pool).
    let aws = shared::tls::sdk_config().await;
    // Secrets from Secrets Manager, SSM parameters or the environment.
    let redis_url = shared::ssm::redis_url(config, &aws).await?;
    let conn = shared::redis_conn::connect(redis_url.expose(), config.redis_topology).await?;
    let (token, token_source) = shared::ssm::onlyfans_token(config, &aws).await?;
    let upstream = upstream_client(config, token)?
        .with_token_source(token_source)
        .with_clock(clock);
    let queue = SqsQueue::new(
        shared::queue::sqs_client(&aws),
        config.require_queue_url()?,
        Some(config.require_dlq_url()?.to_owned()),
    );
    Ok(Deps {
        store: RedisStore::new(conn.clone(), config.status_ttl).with_durability(config.durability),
        queue,
        upstream,
        limiter: RedisLimiter::new(conn, config.limiter)
            .with_clock(clock)
            .with_durability(config.durability),
        metrics: Metrics::new(config.metrics_namespace.clone(), "consumer"),
        breaker: Breaker::new(config.breaker),
        settings: Settings::from_config(config),
        clock,
        jitter: Jitter::new(),
    })
}

fn upstream_client(
    config: &Config,
    token: shared::config::Secret,
) -> Result<OnlyFansClient, reqwest::Error> {
    OnlyFansClient::new(
        config.onlyfans_api_url.clone(),
        token,
        config.upstream_connect_timeout,
        config.upstream_timeout,
    )
}

/// Any real deadline is after this (2020-09-13, in epoch ms).
const PLAUSIBLE_EPOCH_MS: u64 = 1_600_000_000_000;

/// The invocation's deadline (epoch ms) as an instant. `cargo lambda watch`
/// sends a relative number instead of an epoch time; then `fallback`
/// (`FUNCTION_TIMEOUT_SECS`) from now stands in.
pub fn invocation_deadline(clock: &Clock, deadline_ms: u64, fallback: Duration) -> Instant {
    if deadline_ms < PLAUSIBLE_EPOCH_MS {
        return clock.instant() + fallback;
    }
    clock.instant_at_epoch_ms(deadline_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_comes_from_the_runtime_or_the_fallback() {
        let clock = Clock::starting_at(time::macros::datetime!(2026-12-01 00:00 UTC));
        let now = clock.instant();
        let in_12s = clock.now_ms() + 12_000;
        assert_eq!(
            invocation_deadline(&clock, in_12s, Duration::from_secs(30)) - now,
            Duration::from_secs(12)
        );
        // cargo lambda watch's relative number
        assert_eq!(
            invocation_deadline(&clock, 30_000, Duration::from_secs(30)) - now,
            Duration::from_secs(30)
        );
    }
}
