//! Helpers for the integration tests that run against the local stack that
//! `make test` starts: Redis, the SQS-compatible server, the OnlyFans stub,
//! and both functions under `cargo lambda watch` with the SQS poller.
//!
//! Every address comes from the same environment variables the stack uses,
//! so the tests talk to exactly what `make test` started. Tests run in
//! parallel against one stack: each uses its own account ids
//! ([`unique_account`]), so their messages, buckets and stub records never mix.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use shared::message::{
    AccountId, Content, Invalid, MediaUrls, MessageId, NewMessage, Priority, QueueMessage,
    RecipientId,
};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Addresses and settings of the running stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub producer_url: String,
    pub consumer_invoke_url: String,
    pub stub_url: String,
    pub redis_url: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub jwt_secret: String,
    pub rate_per_minute: f64,
    pub burst: f64,
    pub max_attempts: u32,
    pub http: reqwest::Client,
}

impl Stack {
    /// Reads the stack's addresses; fails clearly if `make test` did not start one.
    pub fn from_env() -> Self {
        shared::tls::install();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Self {
            producer_url: env_or("PRODUCER_URL", "http://127.0.0.1:9000/lambda-url/producer"),
            consumer_invoke_url: env_or(
                "CONSUMER_INVOKE_URL",
                "http://127.0.0.1:9000/2015-03-31/functions/consumer/invocations",
            ),
            stub_url: env_or("ONLYFANS_API_URL", "http://127.0.0.1:8787"),
            redis_url: env_or("REDIS_URL", "redis://127.0.0.1:6379"),
            queue_url: env_or(
                "QUEUE_URL",
                "http://127.0.0.1:4566/123456789012/outbound-messages",
            ),
            dlq_url: env_or(
                "DLQ_URL",
                "http://127.0.0.1:4566/123456789012/outbound-messages-dlq",
            ),
            jwt_secret: env_or("AUTH_JWT_SECRET", shared::config::LOCAL_JWT_SECRET),
            rate_per_minute: env_or("RATE_LIMIT_PER_MINUTE", "10")
                .parse()
                .unwrap_or(10.0),
            burst: env_or("RATE_LIMIT_BURST", "10").parse().unwrap_or(10.0),
            max_attempts: env_or("MAX_ATTEMPTS", "5").parse().unwrap_or(5),
            http,
        }
    }

    /// A valid bearer token for `account`.
    pub fn token(&self, account: &str) -> String {
        let now = shared::now_ms() / 1000;
        shared::auth::sign(&self.jwt_secret, account, now, 3600).unwrap_or_default()
    }

    /// A valid bearer token for `account` with the admin scope.
    pub fn admin_token(&self, account: &str) -> String {
        let now = shared::now_ms() / 1000;
        shared::auth::sign_with_scope(
            &self.jwt_secret,
            account,
            Some(shared::auth::ADMIN_SCOPE),
            now,
            3600,
        )
        .unwrap_or_default()
    }

    /// Gives `account` its own limit on both sides: the product (the
    /// producer's admin route, which the limiter script reads) and the stub
    /// (which then judges the account's calls against it).
    pub async fn set_account_limit(
        &self,
        account: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<()> {
        let resp = self
            .http
            .put(format!(
                "{}/v1/admin/accounts/{account}/limits",
                self.producer_url
            ))
            .bearer_auth(self.admin_token("t_admin"))
            .json(&serde_json::json!({"perMinute": per_minute, "burst": burst}))
            .send()
            .await?;
        if resp.status() != 200 {
            bail!(
                "PUT limits: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let resp = self
            .http
            .put(format!("{}/__accounts/{account}/limit", self.stub_url))
            .json(&serde_json::json!({"ratePerMinute": per_minute, "burst": burst}))
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("stub limit: {}", resp.status());
        }
        Ok(())
    }

    /// Returns `account` to the defaults on both sides.
    pub async fn clear_account_limit(&self, account: &str) -> Result<()> {
        let resp = self
            .http
            .delete(format!(
                "{}/v1/admin/accounts/{account}/limits",
                self.producer_url
            ))
            .bearer_auth(self.admin_token("t_admin"))
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("DELETE limits: {}", resp.status());
        }
        self.http
            .delete(format!("{}/__accounts/{account}/limit", self.stub_url))
            .send()
            .await?;
        Ok(())
    }

    /// `POST /v1/messages` as `account`; returns (status, body).
    pub async fn post_message(&self, account: &str, body: &Value) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/v1/messages", self.producer_url))
            .bearer_auth(self.token(account))
            .json(body)
            .send()
            .await
            .context("POST /v1/messages")?;
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// `GET /v1/messages/{id}` as `account`.
    pub async fn message_status(&self, account: &str, id: &str) -> Result<(u16, Value)> {
        let resp = self
            .http
            .get(format!("{}/v1/messages/{id}", self.producer_url))
            .bearer_auth(self.token(account))
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
    }

    /// The stub's records for one account.
    pub async fn stub_requests(&self, account: &str) -> Result<Vec<Value>> {
        let v: Value = self
            .http
            // Account ids are URL-safe by construction (see AccountId).
            .get(format!("{}/__requests?account={account}", self.stub_url))
            .send()
            .await?
            .json()
            .await?;
        Ok(v["requests"].as_array().cloned().unwrap_or_default())
    }

    /// Adds a fault rule to the stub (always scoped to an account by the caller).
    pub async fn stub_fault(&self, rule: Value) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/__faults", self.stub_url))
            .json(&rule)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("stub refused fault {rule}: {}", resp.status());
        }
        Ok(())
    }

    /// Invokes the consumer directly through `cargo lambda watch`.
    pub async fn invoke_consumer(&self, event: &Value) -> Result<Value> {
        let resp = self
            .http
            .post(&self.consumer_invoke_url)
            .json(event)
            .send()
            .await?;
        let status = resp.status();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("consumer invoke answered {status}: {v}");
        }
        Ok(v)
    }

    /// An SQS client for the stack's SQS-compatible server.
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = shared::tls::sdk_config_loader().load().await;
        aws_sdk_sqs::Client::new(&config)
    }

    /// A connection to the stack's Redis: a Redis Cluster when
    /// `REDIS_CLUSTER` is true (as the functions are told), else one Redis.
    pub async fn redis(&self) -> Result<shared::redis_conn::RedisConn> {
        let cluster = matches!(
            std::env::var("REDIS_CLUSTER")
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "true" | "1" | "yes" | "on"
        );
        let topology = if cluster {
            shared::redis_conn::Topology::Cluster
        } else {
            shared::redis_conn::Topology::Single
        };
        Ok(shared::redis_conn::connect(&self.redis_url, topology).await?)
    }
}

/// An account id no other test (or earlier run) uses.
pub fn unique_account(tag: &str) -> String {
    format!("t_{tag}_{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The nearest-rank `q`-quantile (0 < `q` ≤ 1) of `sorted`, which is sorted
/// and not empty: the smallest value with at least `q` of them at or below.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Checks a list of send times (µs) against the contract's arrival curve:
/// at most `burst + rate * t / 60` in any interval of `t` seconds, allowing
/// `tolerance` for the time between the limiter's decision and arrival.
pub fn curve_violations(
    times_us: &[u64],
    per_minute: f64,
    burst: f64,
    tolerance: Duration,
) -> usize {
    let mut sorted = times_us.to_vec();
    sorted.sort_unstable();
    let tol = tolerance.as_secs_f64();
    let mut violations = 0;
    for j in 0..sorted.len() {
        for i in 0..j {
            let t = (sorted[j] - sorted[i]) as f64 / 1e6;
            if (j - i + 1) as f64 > burst + per_minute * (t + tol) / 60.0 + 1e-9 {
                violations += 1;
                break;
            }
        }
    }
    violations
}

/// A valid queue body for `account`, written by the same code the producer
/// uses ([`QueueMessage::to_body`]), so the tests follow the queue format
/// wherever it goes.
///
/// # Panics
/// If an argument is not a valid value of its kind (a test's own mistake):
/// `id` a UUID, `priority` `low`/`medium`/`high`, `recipient` a recipient id.
pub fn queue_body(account: &str, id: &str, priority: &str, recipient: &str) -> String {
    let msg = NewMessage {
        recipient_id: valid("recipient", RecipientId::parse(recipient)),
        content: valid(
            "content",
            Content::parse(&format!("integration test message {id}")),
        ),
        priority: valid("priority", Priority::parse(priority)),
        media_urls: MediaUrls::default(),
        send_at: None,
    };
    QueueMessage::new(
        valid("message id", MessageId::parse(id)),
        valid("account", AccountId::parse(account)),
        msg,
        OffsetDateTime::now_utc(),
    )
    .to_body()
}

fn valid<T>(what: &str, parsed: Result<T, Invalid>) -> T {
    parsed.unwrap_or_else(|e| panic!("queue_body: bad {what}: {e}"))
}

impl Stack {
    /// Puts raw bodies on the main queue (as the producer would), 10 per call.
    pub async fn enqueue_bodies(&self, bodies: &[(String, String)]) -> Result<()> {
        use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
        let sqs = self.sqs().await;
        for chunk in bodies.chunks(10) {
            let mut req = sqs.send_message_batch().queue_url(&self.queue_url);
            for (i, (body, account)) in chunk.iter().enumerate() {
                let attr = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(account)
                    .build()?;
                req = req.entries(
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(body)
                        .message_attributes("accountId", attr)
                        .build()?,
                );
            }
            let out = req.send().await.context("SendMessageBatch")?;
            if !out.failed.is_empty() {
                bail!("SendMessageBatch refused {:?}", out.failed);
            }
        }
        Ok(())
    }

    /// Every DLQ message whose body contains `needle`, with its `deadReason`.
    /// Receives with a 1 s visibility so other tests still see the DLQ.
    pub async fn dlq_matching(&self, needle: &str) -> Result<Vec<(String, Option<String>)>> {
        let sqs = self.sqs().await;
        let mut found = std::collections::BTreeMap::new();
        for _ in 0..20 {
            let out = sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(1)
                .message_attribute_names("All")
                .send()
                .await?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let body = m.body.clone().unwrap_or_default();
                if body.contains(needle) {
                    let reason = m
                        .message_attributes
                        .as_ref()
                        .and_then(|a| a.get("deadReason"))
                        .and_then(|v| v.string_value.clone());
                    found.insert(m.message_id.clone().unwrap_or_default(), (body, reason));
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Reads a status record straight from Redis (as the producer's GET would).
    pub async fn status_of(
        &self,
        account: &str,
        id: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut c = self.redis().await?;
        let key = format!("of:{{{account}}}:msg:{id}");
        Ok(redis::cmd("HGETALL").arg(key).query_async(&mut c).await?)
    }
}

// Helpers added for the fault-injection suite (tests/faults/); the stack
// tests use them as well as they like.
impl Stack {
    /// Removes every fault rule from the stub (`DELETE /__faults`).
    pub async fn stub_clear_faults(&self) -> Result<()> {
        let resp = self
            .http
            .delete(format!("{}/__faults", self.stub_url))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("stub refused to clear its faults: {}", resp.status());
        }
        Ok(())
    }

    /// Depths of the main queue and the DLQ, through a client with short
    /// timeouts (an unreachable SQS server fails the call instead of hanging).
    pub async fn queue_stats(&self) -> Result<shared::queue::QueueStats> {
        let queue = shared::queue::SqsQueue::new(
            shared::queue::sqs_client(&shared::tls::sdk_config().await),
            self.queue_url.clone(),
            Some(self.dlq_url.clone()),
        );
        Ok(shared::queue::QueueInfo::stats(&queue).await?)
    }

    /// Entries waiting in the producer's outbox (accepted while SQS was down).
    pub async fn outbox_len(&self) -> Result<u64> {
        let mut c = self.redis().await?;
        Ok(redis::cmd("XLEN")
            .arg(shared::keys::outbox(&self.queue_url))
            .query_async(&mut c)
            .await?)
    }
}

/// The current wall-clock time in µs since the Unix epoch, comparable with
/// the stub's `receivedAtWallUs` (its system clock at arrival).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_the_smallest_value_with_that_share_at_or_below() {
        let v: Vec<f64> = (1..=30).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), 15.0);
        assert_eq!(nearest_rank(&v, 0.9), 27.0);
        assert_eq!(nearest_rank(&v, 0.95), 29.0);
        assert_eq!(nearest_rank(&v, 1.0), 30.0);
        assert_eq!(nearest_rank(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn queue_body_is_what_the_consumer_reads() {
        let id = uuid::Uuid::now_v7().to_string();
        let body = queue_body("acct_1", &id, "high", "fan_1");
        let m = QueueMessage::parse(&body).expect("a valid queue body");
        assert_eq!(m.message_id.to_string(), id);
        assert_eq!(m.account_id.as_str(), "acct_1");
        assert_eq!(m.recipient_id.as_str(), "fan_1");
        assert_eq!(m.priority, Priority::High);
        assert!((OffsetDateTime::now_utc() - m.created_at).whole_seconds() < 60);
    }

    #[test]
    fn curve_check_counts_over_limit_sends() {
        // 2 per minute, burst 2: three at once is one too many.
        assert_eq!(curve_violations(&[0, 0, 0], 2.0, 2.0, Duration::ZERO), 1);
        assert_eq!(
            curve_violations(&[0, 0, 30_000_000], 2.0, 2.0, Duration::ZERO),
            0
        );
        assert_eq!(
            curve_violations(&[0, 0, 29_000_000], 2.0, 2.0, Duration::ZERO),
            1
        );
    }
}
