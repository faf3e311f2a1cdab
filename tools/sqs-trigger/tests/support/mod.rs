//! Test support: an SQS client for the real SQS-compatible server at
//! `AWS_ENDPOINT_URL_SQS`, uniquely named queues, a fake consumer, and a trigger
//! running in process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_config::Region;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sqs_trigger::{TriggerConfig, TriggerError, TriggerStats};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Fails the test unless it finishes within `limit`: a hang is a failure, not a stuck run.
pub async fn bounded<T>(limit: Duration, test: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, test)
        .await
        .map_err(|_| anyhow!("test did not finish within {limit:?}"))?
}

/// The SQS server the tests run against; never defaulted, so that a missing server
/// fails loudly instead of passing silently.
pub fn endpoint() -> Result<String> {
    match std::env::var("AWS_ENDPOINT_URL_SQS") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => bail!(
            "AWS_ENDPOINT_URL_SQS is not set: these tests need a running SQS-compatible server, \
             e.g. `.venv/bin/moto_server -H 127.0.0.1 -p 4566` and \
             AWS_ENDPOINT_URL_SQS=http://127.0.0.1:4566 (`make test` does both)"
        ),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// An SQS client for [`endpoint`] (region and keys from the environment, else local dummies).
pub async fn sqs() -> Result<Client> {
    let endpoint = endpoint()?;
    let credentials = Credentials::new(
        env_or("AWS_ACCESS_KEY_ID", "test"),
        env_or("AWS_SECRET_ACCESS_KEY", "test"),
        None,
        None,
        "sqs-trigger-tests",
    );
    let config = shared::tls::sdk_config_loader()
        .endpoint_url(endpoint)
        .region(Region::new(env_or("AWS_REGION", "us-east-1")))
        .credentials_provider(credentials)
        .load()
        .await;
    Ok(Client::new(&config))
}

/// A queue of this test only.
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// Creates `<prefix>-<uuid>` with these attributes.
pub async fn create_queue(
    sqs: &Client,
    prefix: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<Queue> {
    let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let attributes: HashMap<_, _> = attributes.iter().cloned().collect();
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .with_context(|| format!("CreateQueue {name} at {}", endpoint().unwrap_or_default()))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes QueueArn")?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("no QueueArn")?;
    Ok(Queue { url, arn })
}

/// Best-effort removal at the end of a test (the server is shared).
pub async fn delete_queues(sqs: &Client, queues: &[&Queue]) {
    for queue in queues {
        let _ = sqs.delete_queue().queue_url(&queue.url).send().await;
    }
}

/// Sends these bodies; returns their message ids in order.
pub async fn send(sqs: &Client, queue: &Queue, bodies: &[String]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for body in bodies {
        let id = sqs
            .send_message()
            .queue_url(&queue.url)
            .message_body(body)
            .send()
            .await
            .context("SendMessage")?
            .message_id
            .context("SendMessage returned no id")?;
        ids.push(id);
    }
    Ok(ids)
}

/// Visible and in-flight (not visible) message counts.
pub async fn counts(sqs: &Client, queue: &Queue) -> Result<(u64, u64)> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .context("GetQueueAttributes counts")?
        .attributes
        .unwrap_or_default();
    let get = |name: QueueAttributeName| -> Result<u64> {
        attributes
            .get(&name)
            .with_context(|| format!("no {name:?}"))?
            .parse()
            .with_context(|| format!("{name:?} is not a number"))
    };
    Ok((
        get(QueueAttributeName::ApproximateNumberOfMessages)?,
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
    ))
}

/// Polls `check` every 50 ms until it holds, failing after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the fake consumer answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
        }
    }

    /// `200 {"batchItemFailures": [{"itemIdentifier": id}, ...]}`.
    pub fn failures<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let items: Vec<_> = ids
            .into_iter()
            .map(|id| serde_json::json!({ "itemIdentifier": id }))
            .collect();
        Self::json(200, serde_json::json!({ "batchItemFailures": items }))
    }

    /// `200 {}`: everything succeeded.
    pub fn success() -> Self {
        Self::json(200, serde_json::json!({}))
    }
}

type ReplyFn = dyn Fn(&SqsEvent) -> Reply + Send + Sync;

/// One event the fake received, parsed with `aws_lambda_events` and raw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: SqsEvent,
    pub raw: serde_json::Value,
}

impl Seen {
    pub fn ids(&self) -> Vec<String> {
        self.event
            .records
            .iter()
            .map(|r| r.message_id.clone().unwrap_or_default())
            .collect()
    }
}

pub struct FakeState {
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay: Duration,
    reply: Box<ReplyFn>,
    notify: Notify,
}

/// A stand-in for the consumer behind cargo-lambda's invoke API: records every event,
/// counts concurrent requests, waits `delay`, answers what `reply` says.
pub struct FakeConsumer {
    pub invoke_url: String,
    state: Arc<FakeState>,
    server: JoinHandle<()>,
}

impl FakeConsumer {
    pub async fn start(
        delay: Duration,
        reply: impl Fn(&SqsEvent) -> Reply + Send + Sync + 'static,
    ) -> Result<Self> {
        let state = Arc::new(FakeState {
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delay,
            reply: Box::new(reply),
            notify: Notify::new(),
        });
        let app = Router::new()
            .route("/2015-03-31/functions/consumer/invocations", post(invoke))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind fake consumer")?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            invoke_url: format!("http://{addr}/2015-03-31/functions/consumer/invocations"),
            state,
            server,
        })
    }

    /// Every event received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Most requests that were being handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` events arrived.
    pub async fn wait_for_events(&self, n: usize, limit: Duration) -> Result<Vec<Seen>> {
        let wait = async {
            loop {
                let notified = self.state.notify.notified();
                let seen = self.seen();
                if seen.len() >= n {
                    return seen;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.map_err(|_| {
            anyhow!(
                "fake consumer got {} events, expected {n} within {limit:?}",
                self.seen().len()
            )
        })
    }
}

impl Drop for FakeConsumer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn invoke(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).and_then(|raw| {
        serde_json::from_value::<SqsEvent>(raw.clone()).map(|event| Seen { event, raw })
    });
    let reply = match parsed {
        Ok(seen) => {
            let reply = (state.reply)(&seen.event);
            state
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(seen);
            state.notify.notify_waiters();
            reply
        }
        Err(e) => Reply::json(
            400,
            serde_json::json!({"errorType": "BadEvent", "errorMessage": e.to_string()}),
        ),
    };
    tokio::time::sleep(state.delay).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// Test defaults: 1 s long polls, 10 s invoke timeout, the given invoke URL.
pub fn config(queue: &Queue, invoke_url: &str) -> TriggerConfig {
    TriggerConfig {
        invoke_url: invoke_url.to_owned(),
        wait_time_seconds: 1,
        invoke_timeout: Duration::from_secs(10),
        ..TriggerConfig::new(&queue.url)
    }
}

/// A trigger running in process until [`Trigger::stop`].
pub struct Trigger {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<TriggerStats, TriggerError>>,
}

impl Trigger {
    pub fn start(config: TriggerConfig, sqs: Client) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(sqs_trigger::run(config, sqs, async move {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Asks it to stop and waits (at most 15 s) for `run` to return.
    pub async fn stop(self) -> Result<TriggerStats> {
        let _ = self.stop.send(());
        let stats = tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .context("trigger did not stop within 15 s")?
            .context("trigger task panicked")??;
        Ok(stats)
    }
}
