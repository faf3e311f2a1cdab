//! Wires the producer: configuration, clients built once, then the runtime.

use producer::{App, Settings, handler};
use shared::auth::Verifier;
use shared::config::Config;
use shared::limiter::RedisLimiter;
use shared::queue::{SqsQueue, sqs_client};
use shared::secrets::{SecretReader, redis_url_with_password};
use shared::store::{RedisStore, connect_lazy};
use shared::telemetry::{self, Metrics};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let redis = connect_lazy(&redis_url(&config).await?)?;
    let app = App {
        store: RedisStore::new(redis.clone(), config.status_ttl),
        queue: SqsQueue::new(
            sqs_client().await,
            config.require_queue_url()?,
            config.dlq_url.clone(),
        ),
        buckets: RedisLimiter::new(redis, config.limiter),
        verifier: Verifier::new(config.auth_jwt_secret.expose()),
        settings: Settings::from_config(&config),
        metrics: Metrics::new(config.metrics_namespace.clone(), "producer"),
    };
    lambda_http::run(lambda_http::service_fn(|req| handler::handle(&app, req))).await
}

/// `REDIS_URL`, with the ElastiCache AUTH token from Secrets Manager when
/// `REDIS_AUTH_SECRET_ARN` is set (in AWS).
async fn redis_url(config: &Config) -> Result<String, lambda_http::Error> {
    let Some(arn) = &config.redis_auth_secret_arn else {
        return Ok(config.redis_url.expose().to_owned());
    };
    let password = SecretReader::new(arn.as_str()).await.read().await?;
    Ok(redis_url_with_password(
        config.redis_url.expose(),
        password.expose(),
    )?)
}
