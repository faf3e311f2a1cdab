//! Operator redrive: DLQ messages back to the main queue (`make redrive`).
//!
//! A message the consumer dead-lettered (transient failures beyond
//! `MAX_ATTEMPTS`) starts over: its status record goes back to `queued`
//! with no attempts ([`RedisStore::revive`]); a `sent` message is never
//! revived, so a redrive cannot send anything twice. Poison bodies go back
//! as they are and are dead-lettered again unless the consumer has since
//! learned to read them. A dry run lists what would move and moves nothing.

use crate::message::QueueMessage;
use crate::queue::attr;
use crate::store::{RedisStore, StoreError};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use std::collections::HashSet;

/// Seconds a dry run hides what it looked at (so one run sees each message
/// once); a real run hides it while moving it.
const DRY_RUN_VISIBILITY: i32 = 5;
const MOVE_VISIBILITY: i32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("SQS {op}: {message}")]
    Sqs { op: &'static str, message: String },
    #[error("redis: {0}")]
    Store(#[from] StoreError),
}

fn sqs_err<E: std::error::Error>(op: &'static str) -> impl FnOnce(E) -> RedriveError {
    move |e| RedriveError::Sqs {
        op,
        message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}

/// One DLQ message a redrive moved (or, in a dry run, would move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub sqs_message_id: String,
    /// The consumer's `deadReason`, or the redrive policy's move.
    pub reason: String,
    /// The status record went back from `dead` to `queued`.
    pub revived: bool,
}

/// Moves up to `max` messages from `dlq_url` to `queue_url`.
pub async fn redrive(
    sqs: &Client,
    store: &RedisStore,
    dlq_url: &str,
    queue_url: &str,
    dry_run: bool,
    max: usize,
) -> Result<Vec<Redriven>, RedriveError> {
    let mut done = Vec::new();
    let mut seen = HashSet::new();
    while done.len() < max {
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .visibility_timeout(if dry_run {
                DRY_RUN_VISIBILITY
            } else {
                MOVE_VISIBILITY
            })
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(sqs_err("ReceiveMessage(DLQ)"))?;
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let id = m.message_id.clone().unwrap_or_default();
            if !seen.insert(id.clone()) || done.len() >= max {
                continue;
            }
            let mut attrs = m.message_attributes.clone().unwrap_or_default();
            let reason = attrs
                .remove(attr::DEAD_REASON)
                .and_then(|v| v.string_value)
                .unwrap_or_else(|| "(moved by the redrive policy)".into());
            let mut revived = false;
            if !dry_run {
                let body = m.body.clone().unwrap_or_default();
                if let Ok(msg) = QueueMessage::parse(&body) {
                    revived = store.revive(&msg.account_id, &msg.message_id).await?;
                }
                sqs.send_message()
                    .queue_url(queue_url)
                    .message_body(body)
                    .set_message_attributes(Some(attrs))
                    .send()
                    .await
                    .map_err(sqs_err("SendMessage"))?;
                if let Some(rh) = &m.receipt_handle {
                    sqs.delete_message()
                        .queue_url(dlq_url)
                        .receipt_handle(rh)
                        .send()
                        .await
                        .map_err(sqs_err("DeleteMessage(DLQ)"))?;
                }
            }
            done.push(Redriven {
                sqs_message_id: id,
                reason,
                revived,
            });
        }
    }
    Ok(done)
}
