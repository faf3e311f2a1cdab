//! The producer's fallback outbox: where an accepted message waits while SQS
//! cannot take it.
//!
//! [`ResilientQueue`] sends to SQS through a circuit breaker; when SQS fails
//! (after the SDK's own retries) or the breaker is open, it appends the
//! message to a Redis stream instead, and the producer still answers 202:
//! the message is durably stored. Only when neither SQS nor Redis takes it
//! does the producer answer 503.
//!
//! [`Outbox::replay`] moves entries to SQS in stream order: one replayer at a
//! time (a Redis lock), each entry sent, then deleted; it stops at the first
//! send that fails, so order is kept. If a replayer dies between a send and
//! its delete, the entry is sent again by the next run: the consumer's
//! claim and status check (keyed by message id) makes that second copy a
//! no-op, so the message still reaches the OnlyFans API once.

use crate::breaker::{Breaker, Permit};
use crate::keys;
use crate::message::QueueMessage;
use crate::queue::{
    BatchError, Enqueue, QueueError, QueueInfo, QueueStats, SqsQueue, message_attributes,
};
use crate::redis_conn::RedisConn;
use std::time::Duration;

/// Entries moved per replay call at most (a scheduled run every minute
/// moves up to this many; `make replay` loops).
pub const REPLAY_BATCH: usize = 500;
/// How long one replayer holds the lock; longer than a batch takes.
const LOCK_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What one replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStats {
    pub moved: usize,
    /// Entries still waiting after this run.
    pub remaining: u64,
    /// Another replayer held the lock; this run did nothing.
    pub skipped: bool,
}

/// Releases the replay lock only if this owner still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The outbox stream. Built once at cold start; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    conn: RedisConn,
    key: String,
    release: redis::Script,
}

impl Outbox {
    /// The outbox of the queue at `queue_url` ([`keys::outbox`]).
    pub fn for_queue(conn: impl Into<RedisConn>, queue_url: &str) -> Self {
        Self::with_key(conn, keys::outbox(queue_url))
    }

    /// An outbox under another key (tests, so they never meet the stack's replayer).
    pub fn with_key(conn: impl Into<RedisConn>, key: impl Into<String>) -> Self {
        Self {
            conn: conn.into(),
            key: key.into(),
            release: redis::Script::new(RELEASE),
        }
    }

    /// Appends one message (its queue body and trace context).
    pub async fn push(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> Result<(), OutboxError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("XADD")
            .arg(&self.key)
            .arg("*")
            .arg("body")
            .arg(msg.to_body())
            .arg("traceparent")
            .arg(traceparent.unwrap_or(""))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Entries waiting.
    pub async fn waiting(&self) -> Result<u64, OutboxError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?)
    }

    /// Moves up to `max` entries to SQS, in order (see the module doc).
    pub async fn replay(&self, sqs: &SqsQueue, max: usize) -> Result<ReplayStats, OutboxError> {
        let mut conn = self.conn.clone();
        let lock = format!("{}:lock", self.key);
        let owner = uuid::Uuid::new_v4().to_string();
        let got: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&owner)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        if got.is_none() {
            return Ok(ReplayStats {
                skipped: true,
                remaining: self.waiting().await?,
                ..ReplayStats::default()
            });
        }
        let result = self.replay_locked(&mut conn, sqs, max).await;
        let _: Result<i64, _> = self
            .release
            .key(&lock)
            .arg(&owner)
            .invoke_async(&mut conn)
            .await;
        let moved = result?;
        Ok(ReplayStats {
            moved,
            remaining: self.waiting().await?,
            skipped: false,
        })
    }

    async fn replay_locked(
        &self,
        conn: &mut RedisConn,
        sqs: &SqsQueue,
        max: usize,
    ) -> Result<usize, OutboxError> {
        type Entry = (String, Vec<(String, String)>);
        let entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(conn)
            .await?;
        let mut moved = 0;
        for (id, fields) in entries {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let body = field("body").unwrap_or_default().to_owned();
            let traceparent = field("traceparent").filter(|t| !t.is_empty());
            // Entries were written from valid messages; rebuild their
            // attributes. One that no longer parses still goes to SQS as it
            // is, where the consumer dead-letters it with the reason.
            let attrs = QueueMessage::parse(&body)
                .map(|m| message_attributes(&m, traceparent))
                .unwrap_or_default();
            if let Err(e) = sqs.send_raw(body, attrs, Duration::ZERO).await {
                tracing::warn!(error = %e, moved, "outbox replay stopped: SQS refused a message");
                break;
            }
            let _: i64 = redis::cmd("XDEL")
                .arg(&self.key)
                .arg(&id)
                .query_async(conn)
                .await?;
            moved += 1;
        }
        Ok(moved)
    }
}

/// SQS behind a circuit breaker, with the outbox as fallback.
pub struct ResilientQueue {
    pub sqs: SqsQueue,
    pub outbox: Outbox,
    pub breaker: Breaker,
}

impl Enqueue for ResilientQueue {
    async fn enqueue(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        let sqs_error = match self.breaker.permit() {
            Permit::Go(call) => match self.sqs.enqueue(msg, traceparent).await {
                Ok(()) => {
                    call.success();
                    return Ok(());
                }
                Err(e) => {
                    call.failure();
                    e.to_string()
                }
            },
            Permit::Refused { .. } => "SQS circuit open".to_owned(),
        };
        match self.outbox.push(msg, traceparent).await {
            Ok(()) => {
                tracing::warn!(message_id = %msg.message_id, reason = sqs_error, "SQS unavailable: message stored in the outbox");
                Ok(())
            }
            Err(e) => Err(QueueError::Sqs {
                op: "SendMessage",
                message: format!("{sqs_error}; the outbox refused it too: {e}"),
            }),
        }
    }

    /// `SendMessageBatch` through the breaker; what SQS did not take (after
    /// its per-entry retries) goes to the outbox.
    async fn enqueue_batch(
        &self,
        msgs: &[QueueMessage],
        traceparent: Option<&str>,
    ) -> Result<(), BatchError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let (left, sqs_error): (Vec<&QueueMessage>, String) = match self.breaker.permit() {
            Permit::Go(call) => match self.sqs.enqueue_batch(msgs, traceparent).await {
                Ok(()) => {
                    call.success();
                    return Ok(());
                }
                Err(e) => {
                    call.failure();
                    let left = msgs
                        .iter()
                        .filter(|m| e.failed.contains(&m.message_id))
                        .collect();
                    (left, e.error.to_string())
                }
            },
            Permit::Refused { .. } => (msgs.iter().collect(), "SQS circuit open".to_owned()),
        };
        self.to_outbox(&left, traceparent, &sqs_error).await
    }
}

impl ResilientQueue {
    /// Puts messages SQS did not take into the outbox; those it refuses too
    /// are not stored.
    async fn to_outbox(
        &self,
        msgs: &[&QueueMessage],
        traceparent: Option<&str>,
        sqs_error: &str,
    ) -> Result<(), BatchError> {
        let mut failed = Vec::new();
        let mut last = None;
        for m in msgs {
            if let Err(e) = self.outbox.push(m, traceparent).await {
                failed.push(m.message_id);
                last = Some(e);
            }
        }
        tracing::warn!(
            messages = msgs.len() - failed.len(),
            reason = sqs_error,
            "SQS unavailable: campaign messages stored in the outbox"
        );
        match last {
            None => Ok(()),
            Some(e) => Err(BatchError {
                failed,
                error: QueueError::Sqs {
                    op: "SendMessageBatch",
                    message: format!("{sqs_error}; the outbox refused it too: {e}"),
                },
            }),
        }
    }
}

/// The queue as `/v1/status` and `/health` see it: SQS's, whatever the breaker says.
impl QueueInfo for ResilientQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.sqs.stats().await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.sqs.ping().await
    }
}
