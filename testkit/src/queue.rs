use crate::lock;
use shared::message::QueueMessage;
use shared::queue::{
    Attributes, BatchError, Enqueue, QueueError, QueueInfo, QueueStats, Redeliver,
};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A queue that records every call: what the producer enqueued, what the
/// consumer deferred, dead-lettered and re-enqueued.
///
/// Enqueueing does what the SQS adapter does before the network (the body
/// and its attributes are built), so a timed caller pays for it as in
/// production.
#[derive(Default)]
pub struct MemQueue {
    /// Enqueued messages with their trace context (unless `count_only`).
    pub sent: Mutex<Vec<(QueueMessage, Option<String>)>>,
    /// Only count enqueued messages and their bytes (the benchmark).
    pub count_only: bool,
    /// Messages enqueued.
    pub enqueued: AtomicU64,
    /// Bytes of the enqueued bodies and attributes.
    pub bytes: AtomicU64,
    /// Every call fails as SQS being down does.
    pub fail: AtomicBool,
    /// Batch entries for these recipients are refused (SQS and outbox
    /// both), the rest of their batch is stored.
    pub refuse_recipients: Mutex<HashSet<String>>,
    /// `SendMessageBatch` calls made (each at most 10 entries).
    pub batch_calls: AtomicU64,
    /// What `stats` answers.
    pub stats: Mutex<QueueStats>,
    /// `ChangeMessageVisibilityBatch` calls made.
    pub defer_batches: AtomicU64,
    /// Visibility changes: receipt handle, wait.
    pub deferred: Mutex<Vec<(String, Duration)>>,
    /// Dead-lettered bodies and their reasons.
    pub dead: Mutex<Vec<(String, String)>>,
    /// Fresh copies: body, delay, attributes.
    pub requeued: Mutex<Vec<(String, Duration, Attributes)>>,
}

impl MemQueue {
    fn check(&self, op: &'static str) -> Result<(), QueueError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(QueueError::Sqs {
                op,
                message: "fake queue is down".into(),
            });
        }
        Ok(())
    }

    /// Messages enqueued so far.
    pub fn count(&self) -> usize {
        self.enqueued.load(Ordering::SeqCst) as usize
    }

    /// The waits of every deferral so far, in order.
    pub fn deferrals(&self) -> Vec<Duration> {
        lock(&self.deferred).iter().map(|(_, w)| *w).collect()
    }

    /// Dead-lettered bodies and reasons so far.
    pub fn dead_letters(&self) -> Vec<(String, String)> {
        lock(&self.dead).clone()
    }

    /// Re-enqueued copies so far.
    pub fn requeues(&self) -> Vec<(String, Duration, Attributes)> {
        lock(&self.requeued).clone()
    }
}

impl Enqueue for MemQueue {
    async fn enqueue(
        &self,
        msg: &QueueMessage,
        traceparent: Option<&str>,
    ) -> Result<(), QueueError> {
        self.check("SendMessage")?;
        let body = msg.to_body();
        let attributes = shared::queue::message_attributes(msg, traceparent);
        self.bytes
            .fetch_add((body.len() + attributes.len()) as u64, Ordering::Relaxed);
        self.enqueued.fetch_add(1, Ordering::SeqCst);
        if !self.count_only {
            lock(&self.sent).push((msg.clone(), traceparent.map(str::to_owned)));
        }
        Ok(())
    }

    /// As the SQS adapter: calls of at most ten entries; a refused entry
    /// leaves the rest of its batch stored.
    async fn enqueue_batch(
        &self,
        msgs: &[QueueMessage],
        traceparent: Option<&str>,
    ) -> Result<(), BatchError> {
        let lens: Vec<usize> = msgs.iter().map(|m| m.to_body().len()).collect();
        let mut failed = Vec::new();
        for range in shared::queue::batches(&lens) {
            self.batch_calls.fetch_add(1, Ordering::SeqCst);
            for m in &msgs[range] {
                let refused = lock(&self.refuse_recipients).contains(m.recipient_id.as_str());
                if refused || self.enqueue(m, traceparent).await.is_err() {
                    failed.push(m.message_id);
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        Err(BatchError {
            failed,
            error: QueueError::Sqs {
                op: "SendMessageBatch",
                message: "fake queue refused entries".into(),
            },
        })
    }
}

impl QueueInfo for MemQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.check("GetQueueAttributes")?;
        Ok(*lock(&self.stats))
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.check("GetQueueAttributes")
    }
}

impl Redeliver for MemQueue {
    async fn defer_batch(&self, entries: &[(String, Duration)]) -> Result<usize, QueueError> {
        self.check("ChangeMessageVisibilityBatch")?;
        self.defer_batches.fetch_add(1, Ordering::SeqCst);
        lock(&self.deferred).extend(entries.iter().cloned());
        Ok(0)
    }

    async fn dead_letter(
        &self,
        body: &str,
        _attributes: Attributes,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.check("SendMessage(DLQ)")?;
        lock(&self.dead).push((body.to_owned(), reason.to_owned()));
        Ok(())
    }

    async fn requeue(
        &self,
        body: &str,
        attributes: Attributes,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.check("SendMessage")?;
        lock(&self.requeued).push((body.to_owned(), delay, attributes));
        Ok(())
    }
}
