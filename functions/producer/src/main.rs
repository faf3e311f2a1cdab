//! Wires the producer: configuration, clients built once, then the runtime.
//!
//! One function answers two kinds of event: API Gateway HTTP API (v2)
//! requests, and the scheduled EventBridge event that replays the outbox
//! (`"source": "aws.events"`). `lambda_http::run` only knows the first, so
//! the event is read as JSON and dispatched here.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use producer::{App, Settings, handler};
use serde_json::Value;
use shared::auth::Verifier;
use shared::breaker::Breaker;
use shared::config::Config;
use shared::limiter::RedisLimiter;
use shared::outbox::{Outbox, REPLAY_BATCH, ResilientQueue};
use shared::queue::{SqsQueue, sqs_client};
use shared::store::{RedisStore, connect_lazy};
use shared::telemetry::{self, Metrics};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let redis = connect_lazy(&redis_url(&config).await?)?;
    let sqs = SqsQueue::new(
        sqs_client().await,
        config.require_queue_url()?,
        config.dlq_url.clone(),
    );
    let outbox = Outbox::for_queue(redis.clone(), config.require_queue_url()?);
    let app = App {
        store: RedisStore::new(redis.clone(), config.status_ttl),
        queue: ResilientQueue {
            sqs: sqs.clone(),
            outbox: outbox.clone(),
            breaker: Breaker::new(config.breaker),
        },
        buckets: RedisLimiter::new(redis, config.limiter),
        verifier: Verifier::new(config.auth_jwt_secret.expose()),
        settings: Settings::from_config(&config),
        metrics: Metrics::new(config.metrics_namespace.clone(), "producer"),
    };
    let (app, sqs, outbox) = (&app, &sqs, &outbox);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if event.payload.get("source").and_then(Value::as_str) == Some("aws.events") {
            let stats = outbox.replay(sqs, REPLAY_BATCH).await?;
            tracing::info!(
                moved = stats.moved,
                remaining = stats.remaining,
                skipped = stats.skipped,
                "outbox replay"
            );
            return Ok::<Value, Error>(serde_json::to_value(stats)?);
        }
        let request: LambdaRequest = serde_json::from_value(event.payload)?;
        let request: Request = Request::from(request).with_lambda_context(event.context);
        let response = handler::handle(app, request).await?;
        Ok(serde_json::to_value(v2_response(response))?)
    }))
    .await
}

/// The API Gateway HTTP API (payload 2.0) response for a handler response.
fn v2_response(response: http::Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    match body {
        Body::Empty => {}
        Body::Text(t) => out.body = Some(Body::Text(t)),
        Body::Binary(b) => {
            out.body = Some(Body::Binary(b));
            out.is_base64_encoded = true;
        }
        other => out.body = Some(other),
    }
    out
}

/// `REDIS_URL`, with the AUTH token from Secrets Manager
/// (`REDIS_AUTH_SECRET_ARN`) or an SSM parameter (`REDIS_AUTH_PARAMETER`) in AWS.
async fn redis_url(config: &Config) -> Result<String, Error> {
    Ok(shared::ssm::redis_url(config).await?)
}
