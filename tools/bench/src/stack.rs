//! What the stack-based benchmarks share: the stub's control API, queue
//! bodies, the poller's JSON log.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::message::QueueMessage;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// Microseconds since the Unix epoch, on the system clock (the stub's
/// `receivedAtWallUs` reads the same clock).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn http() -> Result<reqwest::Client> {
    shared::tls::install();
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?)
}

/// One record of the stub's `/__requests`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StubRecord {
    pub idempotency_key: Option<String>,
    /// Monotonic: for intervals between the stub's arrivals.
    pub received_at_us: i64,
    /// The system clock at arrival: for comparing with this process's clock.
    pub received_at_wall_us: i64,
    pub status: u16,
    pub violation: bool,
    pub duplicate: bool,
}

impl StubRecord {
    /// Delivered: answered 2xx and not a replay.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status) && !self.duplicate
    }
}

pub async fn stub_requests(
    client: &reqwest::Client,
    stub: &str,
    account: Option<&str>,
) -> Result<Vec<StubRecord>> {
    #[derive(Deserialize)]
    struct Page {
        requests: Vec<StubRecord>,
    }
    // Account ids here are the benchmark's own, URL-safe by construction.
    let url = match account {
        Some(a) => format!("{stub}/__requests?account={a}"),
        None => format!("{stub}/__requests"),
    };
    let page: Page = client
        .get(url)
        .send()
        .await
        .context("GET /__requests")?
        .error_for_status()?
        .json()
        .await?;
    Ok(page.requests)
}

/// Accepted calls per account, from `/__stats`.
pub async fn stub_accepted(
    client: &reqwest::Client,
    stub: &str,
) -> Result<HashMap<String, (u64, u64)>> {
    let v: Value = client
        .get(format!("{stub}/__stats"))
        .send()
        .await
        .context("GET /__stats")?
        .error_for_status()?
        .json()
        .await?;
    let mut out = HashMap::new();
    if let Some(accounts) = v["accounts"].as_object() {
        for (a, c) in accounts {
            out.insert(
                a.clone(),
                (
                    c["accepted"].as_u64().unwrap_or(0),
                    c["violations"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    Ok(out)
}

/// A valid v1 queue message (as the producer would enqueue it).
pub fn queue_message(account: &str, priority: &str, n: usize) -> Result<QueueMessage> {
    let created =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let body = json!({
        "schemaVersion": 1,
        "messageId": uuid::Uuid::now_v7(),
        "accountId": account,
        "recipientId": format!("fan_{n}"),
        "content": format!("benchmark message {n}"),
        "priority": priority,
        "mediaUrls": [],
        "createdAt": created,
    })
    .to_string();
    QueueMessage::parse(&body).map_err(|e| anyhow::anyhow!("queue body: {e}"))
}

/// SendMessageBatch, 10 at a time, with the producer's body and attributes.
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    msgs: &[QueueMessage],
) -> Result<()> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for chunk in msgs.chunks(10) {
        let mut req = sqs.send_message_batch().queue_url(queue_url);
        for (i, m) in chunk.iter().enumerate() {
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(m.to_body());
            for (k, v) in shared::queue::message_attributes(m, None) {
                e = e.message_attributes(k, v);
            }
            req = req.entries(e.build()?);
        }
        let out = req.send().await.context("SendMessageBatch")?;
        if !out.failed.is_empty() {
            bail!("SendMessageBatch refused {:?}", out.failed);
        }
    }
    Ok(())
}

/// The poller's log from byte `offset` on: what it received and invoked.
#[derive(Debug, Default, Clone, Copy)]
pub struct PollerTotals {
    /// Records handed to the consumer ("invoking" lines): SQS receives.
    pub receives: u64,
    pub invocations: u64,
    /// Sum of `invoke_ms` of finished invocations.
    pub invoke_ms: u64,
    pub failed_items: u64,
    pub failed_invocations: u64,
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub fn poller_totals(path: &Path, offset: u64) -> Result<PollerTotals> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let mut t = PollerTotals::default();
    // Only whole lines: the last one may still be being written.
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    for line in complete.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let msg = v["message"].as_str().or(v["fields"]["message"].as_str());
        let field = |k: &str| v[k].as_u64().or(v["fields"][k].as_u64());
        match msg {
            Some("invoking") => {
                t.invocations += 1;
                t.receives += field("records").unwrap_or(0);
            }
            Some(m) if m.starts_with("invocation completed") => {
                t.invoke_ms += field("invoke_ms").unwrap_or(0);
                t.failed_items += field("failed").unwrap_or(0);
            }
            Some(m) if m.starts_with("invocation failed") => {
                t.invoke_ms += field("invoke_ms").unwrap_or(0);
                t.failed_invocations += 1;
            }
            _ => {}
        }
    }
    Ok(t)
}

/// Approximate number of messages in a queue (visible + in flight + delayed).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .context("GetQueueAttributes")?;
    Ok(out
        .attributes
        .unwrap_or_default()
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// Deletes every Redis key of this run's accounts (`of:{<prefix>...`).
pub async fn cleanup_redis(redis_url: &str, prefix: &str) -> Result<u64> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{}:{{{prefix}*", shared::keys::PREFIX);
    let mut cursor: u64 = 0;
    let mut removed = 0u64;
    // Bounded: SCAN visits every key once; 100k rounds is far beyond any keyspace here.
    for _ in 0..100_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(2000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
            removed += n;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(removed)
}

/// SendMessage alone, `concurrency` at a time for `duration`: how fast the
/// SQS-compatible server accepts messages (the intake benchmark's baseline).
pub async fn sqs_send_rate(
    queue_url: &str,
    concurrency: usize,
    duration: Duration,
) -> Result<Value> {
    let sqs = shared::queue::sqs_client(&shared::tls::sdk_config().await);
    // A queue of its own on the same server, removed afterwards.
    let name = format!("{}-probe", queue_url.rsplit('/').next().unwrap_or("bench"));
    let probe = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .context("CreateQueue")?
        .queue_url
        .context("CreateQueue answered no URL")?;
    let queue_url = probe.as_str();
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (sqs, url) = (sqs.clone(), queue_url.to_owned());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            // Bounded by time; each call is bounded by the client's timeouts.
            while started.elapsed() < duration {
                let body = r#"{"schemaVersion":1,"probe":"sqs-send baseline"}"#;
                match sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .send()
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await?;
        ok += o;
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = sqs.delete_queue().queue_url(queue_url).send().await;
    let rps = ok as f64 / secs;
    eprintln!("[bench] SendMessage alone: {rps:.1}/s at {concurrency} concurrent");
    Ok(json!({
        "rps": crate::stats::round(rps, 1),
        "sent": ok,
        "failed": failed,
        "concurrency": concurrency,
        "seconds": crate::stats::round(secs, 2),
    }))
}

/// Empties a queue (PurgeQueue).
pub async fn purge(queue_url: &str) -> Result<()> {
    let sqs = shared::queue::sqs_client(&shared::tls::sdk_config().await);
    sqs.purge_queue()
        .queue_url(queue_url)
        .send()
        .await
        .context("PurgeQueue")?;
    Ok(())
}
