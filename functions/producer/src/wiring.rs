//! The cold start, and the one event stream the function serves.
//!
//! One function answers two kinds of event: API Gateway HTTP API (v2)
//! requests, and the scheduled EventBridge event that replays the outbox
//! (`"source": "aws.events"`). `lambda_http::run` only knows the first, so
//! the event is read as JSON and dispatched by [`serve`].

use crate::{App, Settings, handler};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt};
use lambda_runtime::{Context, Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::auth::Verifier;
use shared::breaker::Breaker;
use shared::campaign::CampaignStore;
use shared::clock::Clock;
use shared::config::Config;
use shared::idempotency::IdempotencyStore;
use shared::limiter::{AccountLimits, BucketViewer, RedisLimiter};
use shared::outbox::{Outbox, REPLAY_BATCH, ResilientQueue};
use shared::queue::{Enqueue, QueueInfo, SqsQueue, sqs_client};
use shared::store::{RedisStore, StatusStore, StoreHealth};
use shared::telemetry::{self, Metrics};

/// The producer as deployed: Redis, SQS behind the outbox, the Redis limiter.
pub type LiveApp = App<RedisStore, ResilientQueue, RedisLimiter>;

/// Reads the configuration, builds the clients, and serves events.
pub async fn run() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let (app, sqs, outbox) = build(&config).await?;
    let (app, sqs, outbox) = (&app, &sqs, &outbox);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        serve(app, sqs, outbox, event.payload, event.context).await
    }))
    .await
}

/// Every client, built once: the app, and the queue and outbox the replay uses.
pub async fn build(config: &Config) -> Result<(LiveApp, SqsQueue, Outbox), Error> {
    // Loaded once: the SQS and Secrets Manager clients share it.
    let aws = shared::tls::sdk_config().await;
    // One Redis or a Redis Cluster (`REDIS_CLUSTER`), connected on first use.
    let redis = shared::redis_conn::connect_lazy(
        shared::ssm::redis_url(config, &aws).await?.expose(),
        config.redis_topology,
    )?;
    let sqs = SqsQueue::new(
        sqs_client(&aws),
        config.require_queue_url()?,
        config.dlq_url.clone(),
    );
    let outbox = Outbox::for_queue(redis.clone(), config.require_queue_url()?);
    let clock = Clock::system();
    let app = App {
        store: RedisStore::new(redis.clone(), config.status_ttl).with_durability(config.durability),
        queue: ResilientQueue {
            sqs: sqs.clone(),
            outbox: outbox.clone(),
            breaker: Breaker::new(config.breaker),
        },
        buckets: RedisLimiter::new(redis, config.limiter).with_clock(clock),
        verifier: Verifier::new(config.auth_jwt_secret.expose())?,
        settings: Settings::from_config(config),
        metrics: Metrics::new(config.metrics_namespace.clone(), "producer"),
        clock,
    };
    Ok((app, sqs, outbox))
}

/// One event: the outbox replay's schedule, or an HTTP API request.
pub async fn serve<S, Q, B>(
    app: &App<S, Q, B>,
    sqs: &SqsQueue,
    outbox: &Outbox,
    payload: Value,
    context: Context,
) -> Result<Value, Error>
where
    S: StatusStore + IdempotencyStore + StoreHealth + CampaignStore,
    Q: Enqueue + QueueInfo,
    B: BucketViewer + AccountLimits,
{
    if is_replay_schedule(&payload) {
        let stats = outbox.replay(sqs, REPLAY_BATCH).await?;
        tracing::info!(
            moved = stats.moved,
            remaining = stats.remaining,
            skipped = stats.skipped,
            "outbox replay"
        );
        return Ok(serde_json::to_value(stats)?);
    }
    let request: LambdaRequest = serde_json::from_value(payload)?;
    let request: Request = Request::from(request).with_lambda_context(context);
    let response = handler::handle(app, request).await?;
    Ok(serde_json::to_value(v2_response(response))?)
}

/// The scheduled EventBridge event that replays the outbox.
pub fn is_replay_schedule(payload: &Value) -> bool {
    payload.get("source").and_then(Value::as_str) == Some("aws.events")
}

/// The API Gateway HTTP API (payload 2.0) response for a handler response.
pub fn v2_response(response: http::Response<Body>) -> ApiGatewayV2httpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn the_replay_schedule_is_told_from_a_request() {
        let schedule: Value = serde_json::from_str(include_str!(
            "../../../events/eventbridge-outbox-replay.json"
        ))
        .unwrap();
        assert!(is_replay_schedule(&schedule));
        let request: Value =
            serde_json::from_str(include_str!("../../../events/apigw-post-message.json")).unwrap();
        assert!(!is_replay_schedule(&request));
    }

    #[test]
    fn a_binary_body_is_base64_flagged() {
        let text = http::Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Body::Text("{}".into()))
            .unwrap();
        let out = v2_response(text);
        assert_eq!(out.status_code, 202);
        assert!(!out.is_base64_encoded);
        let bin = http::Response::builder()
            .body(Body::Binary(vec![0, 1]))
            .unwrap();
        assert!(v2_response(bin).is_base64_encoded);
        let empty = http::Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .unwrap();
        assert!(v2_response(empty).body.is_none());
    }
}
