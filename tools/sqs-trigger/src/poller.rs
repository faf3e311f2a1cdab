//! The event source mapping itself: one receiver that fills batches while it holds a
//! concurrency permit, and one task per invocation that deletes what the answer allows.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::config::TriggerConfig;
use crate::event::{EventSource, SqsEvent, queue_arn_from_url, region_from_url};
use crate::invoke::{InvokeOutcome, Invoker};
use crate::{TriggerError, TriggerStats};

/// Most messages one `ReceiveMessage` may return.
const MAX_RECEIVE: usize = 10;
/// Stop filling a batch once its bodies reach this size; approximates Lambda's 6 MB
/// invocation payload limit (leaving room for the record metadata).
const MAX_BATCH_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Most entries of one `DeleteMessageBatch`.
const MAX_DELETE_BATCH: usize = 10;
/// Pause after an empty short poll (`WaitTimeSeconds` 0), so idling is not a busy loop.
const SHORT_POLL_PAUSE: Duration = Duration::from_millis(50);
/// Back-off after a failed receive: doubles from the first value up to the second.
const RECEIVE_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

pub(crate) async fn run(
    config: TriggerConfig,
    sqs: Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<TriggerStats, TriggerError> {
    config.validate()?;
    let region = sqs
        .config()
        .region()
        .map(|r| r.as_ref().to_owned())
        .or_else(|| region_from_url(&config.queue_url))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let queue_arn = queue_arn_from_url(&config.queue_url, &region).ok_or_else(|| {
        TriggerError::InvalidConfig {
            field: "queue_url",
            reason: format!("{:?} is not a queue URL", config.queue_url),
        }
    })?;
    let invoker = Invoker::new(config.invoke_url.clone(), config.invoke_timeout)
        .map_err(TriggerError::HttpClient)?;
    check_queue(&sqs, &config, &queue_arn).await?;
    if config.batch_size > MAX_RECEIVE && config.batch_window.is_zero() {
        warn!(
            batch_size = config.batch_size,
            "batch_size above 10 without a batching window: every receive is invoked at once, \
             so batches hold at most 10 records (AWS requires a window of at least 1 s here)"
        );
    }
    info!(
        queue_url = %config.queue_url,
        queue_arn = %queue_arn,
        region = %region,
        invoke_url = %config.invoke_url,
        batch_size = config.batch_size,
        batch_window_ms = duration_ms(config.batch_window),
        max_concurrency = config.max_concurrency,
        wait_time_seconds = config.wait_time_seconds,
        invoke_timeout_ms = duration_ms(config.invoke_timeout),
        "sqs-trigger polling"
    );

    let poller = Arc::new(Poller {
        source: EventSource { queue_arn, region },
        config,
        sqs,
        invoker,
        counters: Counters::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let main = Arc::clone(&poller).poll(stop_rx);
    let mut main = std::pin::pin!(main);
    let shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        () = &mut main => {}
        () = shutdown => {
            info!("shutdown requested: no new receives, waiting for in-flight invocations");
            // The receiver lives in `main`, which is still running.
            let _ = stop_tx.send(true);
            main.await;
        }
    }
    let stats = poller.counters.snapshot();
    info!(
        batches = stats.batches,
        records = stats.records,
        deleted = stats.deleted,
        failed_items = stats.failed_items,
        failed_invocations = stats.failed_invocations,
        delete_errors = stats.delete_errors,
        receive_errors = stats.receive_errors,
        max_in_flight = stats.max_in_flight,
        "sqs-trigger stopped"
    );
    Ok(stats)
}

/// Fails fast when the queue is not there; warns about settings that break the
/// emulation (AWS refuses a mapping whose queue visibility timeout is below the function
/// timeout).
async fn check_queue(
    sqs: &Client,
    config: &TriggerConfig,
    queue_arn: &str,
) -> Result<(), TriggerError> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&config.queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| TriggerError::QueueUnavailable {
            queue_url: config.queue_url.clone(),
            message: sdk_error(&e),
        })?
        .attributes
        .unwrap_or_default();
    let visibility = attributes
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(seconds) = visibility
        && Duration::from_secs(seconds) < config.invoke_timeout
    {
        warn!(
            visibility_timeout_s = seconds,
            invoke_timeout_ms = duration_ms(config.invoke_timeout),
            "queue visibility timeout is shorter than the invoke timeout: records of a slow \
             invocation can be received again while it still runs"
        );
    }
    if let Some(arn) = attributes.get(&QueueAttributeName::QueueArn)
        && arn != queue_arn
    {
        warn!(reported = %arn, derived = %queue_arn, "queue ARN differs from the one derived from the URL");
    }
    info!(
        visibility_timeout_s = visibility,
        redrive_policy = attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .map(String::as_str)
            .unwrap_or("none"),
        "queue found"
    );
    Ok(())
}

struct Poller {
    config: TriggerConfig,
    sqs: Client,
    invoker: Invoker,
    source: EventSource,
    counters: Counters,
}

impl Poller {
    /// Receives batches until asked to stop, then waits for the invocations in flight.
    async fn poll(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrency));
        let mut tasks = JoinSet::new();
        loop {
            // A permit first: records are only received when they can be invoked at once,
            // as with Lambda's concurrency cap (no visibility time burnt while waiting).
            let permit = tokio::select! {
                biased;
                () = stopped(&mut stop) => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
            };
            let batch = self.collect_batch(&mut stop).await;
            while let Some(done) = tasks.try_join_next() {
                report_task_end(done);
            }
            if batch.is_empty() {
                if *stop.borrow() {
                    break;
                }
                continue;
            }
            tasks.spawn(Arc::clone(&self).process(batch, permit));
        }
        if !tasks.is_empty() {
            info!(in_flight = tasks.len(), "waiting for in-flight invocations");
        }
        while let Some(done) = tasks.join_next().await {
            report_task_end(done);
        }
    }

    /// Receives until the batch is full, the window closed, or a stop was asked for.
    /// A receive in progress is never abandoned: SQS would count it as a receive of
    /// messages nobody sees. Returns the messages (latest receipt of each id).
    async fn collect_batch(&self, stop: &mut watch::Receiver<bool>) -> Vec<Message> {
        let config = &self.config;
        let mut batch: Vec<Message> = Vec::new();
        let mut positions: HashMap<String, usize> = HashMap::new();
        let mut body_bytes = 0_usize;
        let mut deadline: Option<Instant> = None;
        let mut backoff = RECEIVE_BACKOFF.0;
        loop {
            if *stop.borrow() {
                return batch;
            }
            let max = (config.batch_size - batch.len()).min(MAX_RECEIVE);
            let wait = match deadline {
                None => config.wait_time_seconds,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                    u32::try_from(left)
                        .unwrap_or(u32::MAX)
                        .min(config.wait_time_seconds)
                }
            };
            match self.receive(max, wait).await {
                Ok(messages) => {
                    backoff = RECEIVE_BACKOFF.0;
                    let received = messages.len();
                    for message in messages {
                        body_bytes += message.body().map_or(0, str::len);
                        let Some(id) = message.message_id().map(str::to_owned) else {
                            batch.push(message);
                            continue;
                        };
                        // Received twice within one window (its visibility ran out):
                        // only the latest receipt handle is valid.
                        match positions.get(&id) {
                            Some(&at) => batch[at] = message,
                            None => {
                                positions.insert(id, batch.len());
                                batch.push(message);
                            }
                        }
                    }
                    debug!(received, batch = batch.len(), "receive returned");
                    if received == 0 && wait == 0 {
                        let pause = deadline.map_or(SHORT_POLL_PAUSE, |d| {
                            d.saturating_duration_since(Instant::now())
                                .min(SHORT_POLL_PAUSE)
                        });
                        sleep_unless_stopped(pause, stop).await;
                    }
                }
                Err(e) => {
                    self.counters.receive_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, retry_in_ms = duration_ms(backoff), "receive failed");
                    if !batch.is_empty() {
                        return batch;
                    }
                    sleep_unless_stopped(backoff, stop).await;
                    backoff = (backoff * 2).min(RECEIVE_BACKOFF.1);
                    continue;
                }
            }
            if batch.is_empty() {
                continue;
            }
            if batch.len() >= config.batch_size
                || config.batch_window.is_zero()
                || body_bytes >= MAX_BATCH_BODY_BYTES
            {
                return batch;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + config.batch_window);
            if Instant::now() >= deadline {
                return batch;
            }
        }
    }

    async fn receive(&self, max: usize, wait_seconds: u32) -> Result<Vec<Message>, String> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.config.queue_url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait_seconds).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(output.messages.unwrap_or_default())
    }

    /// One invocation: build the event, invoke, delete what succeeded. Holds its
    /// concurrency permit until the deletes are done.
    async fn process(self: Arc<Self>, messages: Vec<Message>, permit: OwnedSemaphorePermit) {
        let received = messages.len();
        let records: Vec<_> = messages
            .into_iter()
            .filter_map(|m| self.source.record(m))
            .collect();
        if records.len() < received {
            warn!(
                skipped = received - records.len(),
                "messages without message id or receipt handle are not invoked"
            );
        }
        if records.is_empty() {
            drop(permit);
            return;
        }
        let batch_no = self.counters.batches.fetch_add(1, Ordering::Relaxed) + 1;
        let count = records.len();
        self.counters
            .records
            .fetch_add(count as u64, Ordering::Relaxed);
        let receipts: Vec<(String, String)> = records
            .iter()
            .map(|r| (r.message_id.clone(), r.receipt_handle.clone()))
            .collect();
        let max_receive_count = records
            .iter()
            .filter_map(|r| {
                r.attributes
                    .get("ApproximateReceiveCount")?
                    .parse::<u64>()
                    .ok()
            })
            .max();
        let event = match serde_json::to_vec(&SqsEvent { records }) {
            Ok(event) => event,
            Err(e) => {
                // Strings and maps only: cannot happen, but never delete on doubt.
                self.counters
                    .failed_invocations
                    .fetch_add(1, Ordering::Relaxed);
                error!(batch = batch_no, error = %e, "cannot serialise the event");
                return;
            }
        };
        info!(
            batch = batch_no,
            records = count,
            event_bytes = event.len(),
            max_receive_count,
            "invoking"
        );
        let ids: BTreeSet<&str> = receipts.iter().map(|(id, _)| id.as_str()).collect();
        let started = Instant::now();
        let in_flight = self.counters.enter();
        let outcome = self.invoker.invoke(event, &ids).await;
        self.counters.leave();
        let invoke_ms = duration_ms(started.elapsed());
        match outcome {
            InvokeOutcome::Completed { failed_ids } => {
                let to_delete: Vec<&(String, String)> = receipts
                    .iter()
                    .filter(|(id, _)| !failed_ids.contains(id))
                    .collect();
                let (deleted, delete_errors) = self.delete(batch_no, &to_delete).await;
                self.counters
                    .failed_items
                    .fetch_add(failed_ids.len() as u64, Ordering::Relaxed);
                info!(
                    batch = batch_no,
                    records = count,
                    invoke_ms,
                    in_flight,
                    deleted,
                    failed = failed_ids.len(),
                    delete_errors,
                    failed_ids = ?failed_ids.iter().collect::<Vec<_>>(),
                    "invocation completed"
                );
            }
            InvokeOutcome::Failed { reason } => {
                self.counters
                    .failed_invocations
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    batch = batch_no,
                    records = count,
                    invoke_ms,
                    in_flight,
                    reason = %reason,
                    "invocation failed: nothing deleted, the records return after their visibility timeout"
                );
            }
        }
        drop(permit);
    }

    /// `DeleteMessageBatch` in chunks of 10; returns (deleted, not deleted).
    async fn delete(&self, batch_no: u64, receipts: &[&(String, String)]) -> (u64, u64) {
        let mut deleted = 0_u64;
        let mut errors = 0_u64;
        for chunk in receipts.chunks(MAX_DELETE_BATCH) {
            let entries: Result<Vec<_>, _> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, handle))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                })
                .collect();
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => {
                    errors += chunk.len() as u64;
                    error!(batch = batch_no, error = %e, "cannot build the delete request");
                    continue;
                }
            };
            match self
                .sqs
                .delete_message_batch()
                .queue_url(&self.config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    deleted += output.successful.len() as u64;
                    for failure in &output.failed {
                        errors += 1;
                        let message_id = failure
                            .id
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| chunk.get(i))
                            .map(|(id, _)| id.as_str());
                        warn!(
                            batch = batch_no,
                            message_id,
                            code = %failure.code,
                            message = failure.message.as_deref().unwrap_or(""),
                            "delete failed: the record will be received again"
                        );
                    }
                }
                Err(e) => {
                    errors += chunk.len() as u64;
                    warn!(
                        batch = batch_no,
                        records = chunk.len(),
                        error = %sdk_error(&e),
                        "delete failed: the records will be received again"
                    );
                }
            }
        }
        self.counters.deleted.fetch_add(deleted, Ordering::Relaxed);
        self.counters
            .delete_errors
            .fetch_add(errors, Ordering::Relaxed);
        (deleted, errors)
    }
}

/// An SDK error in one line: the service's code and message, or the chain of causes
/// (e.g. "dispatch failure: io error: ... Connection refused").
fn sdk_error<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let Some(service) = e.as_service_error() {
        return format!(
            "{}: {}",
            service.code().unwrap_or("service error"),
            service.message().unwrap_or_default()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn report_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        error!(error = %e, "invocation task ended abnormally");
    }
}

/// Completes once a stop was asked for (or can no longer be asked for).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn sleep_unless_stopped(duration: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = stopped(stop) => {}
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
    deleted: AtomicU64,
    failed_items: AtomicU64,
    failed_invocations: AtomicU64,
    delete_errors: AtomicU64,
    receive_errors: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Counters {
    /// One more invocation in flight; returns how many are now.
    fn enter(&self) -> u64 {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        now
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn snapshot(&self) -> TriggerStats {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        TriggerStats {
            batches: get(&self.batches),
            records: get(&self.records),
            deleted: get(&self.deleted),
            failed_items: get(&self.failed_items),
            failed_invocations: get(&self.failed_invocations),
            delete_errors: get(&self.delete_errors),
            receive_errors: get(&self.receive_errors),
            max_in_flight: get(&self.max_in_flight),
        }
    }
}
