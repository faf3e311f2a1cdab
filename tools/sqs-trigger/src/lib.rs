//! # sqs-trigger
//!
//! A dev-only stand-in for AWS Lambda's **SQS event source mapping** (the "SQS trigger"
//! of a function): it long-polls a queue, batches records, invokes the function with the
//! SQS event through cargo-lambda's invoke API, and deletes the records the function did
//! not report as failed. Locally nothing else moves messages from a queue into a
//! function (no Docker, so no `sam local` or LocalStack Lambda).
//!
//! ```no_run
//! # async fn example(sqs: aws_sdk_sqs::Client) -> Result<(), sqs_trigger::TriggerError> {
//! let config = sqs_trigger::TriggerConfig::from_env()?;
//! let stats = sqs_trigger::run(config, sqs, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("{} records deleted", stats.deleted);
//! # Ok(())
//! # }
//! ```
//!
//! ## What is emulated
//! - **Polling**: `ReceiveMessage` long polls (`WaitTimeSeconds`), at most 10 messages each,
//!   asking for all system attributes and all message attributes.
//! - **Batching**: up to `batch_size` records (1..=10000) per invocation. With a batching
//!   window of 0 (the default, like Lambda's) a batch is invoked as soon as a receive
//!   returns records; with a window, receives continue until the batch is full, the window
//!   (counted from the first record) has passed, or the bodies reach ~5 MiB (Lambda's
//!   invocation payload limit is 6 MB). A message received twice within one window keeps
//!   only its latest receipt.
//! - **The event**: `{"Records": [...]}` with exactly AWS's field names: `messageId`,
//!   `receiptHandle`, `body`, `attributes` (every system attribute SQS returned:
//!   `ApproximateReceiveCount`, `SentTimestamp`, `SenderId`,
//!   `ApproximateFirstReceiveTimestamp`, FIFO ones...), `messageAttributes`
//!   (`stringValue`/`binaryValue`, `stringListValues`, `binaryListValues`, `dataType`),
//!   `md5OfBody`, `md5OfMessageAttributes` (when there are attributes), `eventSource`
//!   (`aws:sqs`), `eventSourceARN` (derived from the queue URL) and `awsRegion`.
//! - **Partial batch responses** (`FunctionResponseTypes: ReportBatchItemFailures`):
//!   records named in `batchItemFailures` stay in the queue, all others are deleted
//!   (`DeleteMessageBatch`, 10 at a time). An empty body, `null`, `{}` or an empty list
//!   mean all succeeded; an `itemIdentifier` that is missing, empty or not in the batch,
//!   or a body that is not such JSON, fails the whole batch, as on AWS.
//! - **Invocation failures**: connection errors, timeouts, a non-2xx status, an
//!   `X-Amz-Function-Error` header or a Lambda error document (`errorType`/`errorMessage`)
//!   delete nothing; every record returns after its visibility timeout, and the queue's
//!   own redrive policy moves it to the DLQ after `maxReceiveCount` receives. See
//!   [`invoke`] for how `cargo lambda watch` reports function errors.
//! - **Concurrency cap**: at most `max_concurrency` invocations in flight
//!   (`ScalingConfig.MaximumConcurrency`); records are only received when an invocation
//!   slot is free, so none wait received-but-uninvoked.
//! - **Shutdown**: when the shutdown future completes no new receive starts; a receive in
//!   progress finishes (at most `wait_time_seconds`) and its records are invoked; all
//!   in-flight invocations finish and their records are deleted or left as their answers
//!   say; then [`run`] returns the [`TriggerStats`].
//!
//! ## What is not emulated
//! - Lambda's scaling (starting at 5 pollers and adding up to 300 a minute, backing off on
//!   errors or throttles): here one receiver feeds up to `max_concurrency` invocations.
//! - Function timeouts, reserved concurrency and throttling of the function itself; the
//!   invoke timeout stands in for the function timeout.
//! - Without `ReportBatchItemFailures` Lambda ignores `batchItemFailures`; here they are
//!   always honoured (the project's consumer uses them).
//! - FIFO specifics beyond what SQS itself enforces (the server still holds back a
//!   message group while a batch of it is in flight), event filtering (`FilterCriteria`),
//!   the mapping's own on-failure destinations, and splitting a batch above 6 MB.
//! - Records are invoked in receive order, not re-sorted.
//!
//! # Layout
//! - [`config`]: [`TriggerConfig`], its defaults, `from_env()` and validation.
//! - [`event`]: the SQS event (`SqsEvent`, `SqsRecord`, `SqsMessageAttribute`) built
//!   from received messages, and the queue ARN derived from the URL.
//! - [`invoke`]: the invocation over HTTP and [`invoke::interpret_response`], the
//!   reading of the answer (success, partial failure, failed invocation).
//! - `poller` (private): [`run`] itself, the receive loop, the concurrency cap, the deletes
//!   and the counters behind [`TriggerStats`].
//! - `src/main.rs`: the `sqs-trigger` binary (environment configuration, JSON logs,
//!   Ctrl-C/SIGTERM).
//! - `tests/`: integration tests against a real SQS-compatible server (moto) at
//!   `AWS_ENDPOINT_URL_SQS`, with a fake consumer.
//!
//! Logs are `tracing` events (the binary prints them as JSON lines): batch number and
//! size, invoke duration, in-flight count, deleted and failed counts, failed message ids;
//! never message bodies.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;

pub mod config;
pub mod event;
pub mod invoke;
mod poller;

pub use config::TriggerConfig;
pub use event::{SqsEvent, SqsMessageAttribute, SqsRecord};
pub use invoke::InvokeOutcome;

/// What one [`run`] did, counted over its whole life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriggerStats {
    /// Invocations made (one per batch).
    pub batches: u64,
    /// Records sent in those invocations (a record received again counts again).
    pub records: u64,
    /// Records deleted after their invocation succeeded for them.
    pub deleted: u64,
    /// Records named in `batchItemFailures` of completed invocations (left in the queue).
    pub failed_items: u64,
    /// Invocations that failed as a whole (error, timeout, bad answer): nothing deleted.
    pub failed_invocations: u64,
    /// Records whose delete SQS refused or that could not be sent (they come back).
    pub delete_errors: u64,
    /// `ReceiveMessage` calls that failed (retried with back-off).
    pub receive_errors: u64,
    /// Most invocations that were in flight at the same time.
    pub max_in_flight: u64,
}

/// Why [`run`] or [`TriggerConfig::from_env`] gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// A required environment variable is not set (or empty).
    #[error("environment variable {0} must be set")]
    MissingEnv(&'static str),
    /// An environment variable does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The [`TriggerConfig`] field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client for invocations cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// `GetQueueAttributes` on the queue failed at start-up (no such queue, server down).
    #[error("queue {queue_url} is not available: {message}")]
    QueueUnavailable {
        /// The queue.
        queue_url: String,
        /// The SDK's error, with its causes.
        message: String,
    },
}

/// Runs the trigger until `shutdown` completes, then lets the invocations in flight
/// finish and returns what was done.
///
/// Fails fast, before receiving anything, when the configuration is invalid or the queue
/// cannot be reached. Once polling, errors (a failed receive, invoke or delete) are logged
/// and counted, never fatal: like the event source mapping, the trigger keeps going and
/// SQS redelivers what was not deleted.
///
/// `sqs` is used for the queue calls only; its region fills `awsRegion` and the ARN.
pub async fn run(
    config: TriggerConfig,
    sqs: aws_sdk_sqs::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<TriggerStats, TriggerError> {
    poller::run(config, sqs, shutdown).await
}
