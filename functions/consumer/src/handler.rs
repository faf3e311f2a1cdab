//! SQS event in, `SqsBatchResponse` out.
//!
//! Records of different accounts are handled concurrently; records of one
//! account ask the limiter in order, since they draw on one bucket anyway,
//! each once the one before it has its token ([`Turn`]): their upstream
//! calls overlap. Each record ends
//! as `Done` (the trigger deletes it) or `Retry` (named in
//! `batchItemFailures`, so the trigger leaves it for its visibility to end).

use crate::process::{Deps, Disposition, Envelope, Hides, Turn};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use shared::delivery::Upstream;
use shared::delivery::policy;
use shared::limiter::Limiter;
use shared::queue::Redeliver;
use shared::store::{ClaimStore, StatusStore};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Groups records by account (read without trusting the body: a record
/// whose account cannot be read goes into its own group).
fn group_key(record: &SqsMessage, index: usize) -> String {
    record
        .message_attributes
        .get(shared::queue::attr::ACCOUNT_ID)
        .and_then(|a| a.string_value.clone())
        .or_else(|| {
            record
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|v| {
                    v.get("accountId")
                        .and_then(|a| a.as_str())
                        .map(str::to_owned)
                })
        })
        .unwrap_or_else(|| format!("#unreadable-{index}"))
}

/// Handles one batch. `invocation_id` (the Lambda request id) makes claim
/// owners unique and is on every log line of the invocation as
/// `span.requestId`: the `invocation` span carries it, and each record's
/// `message` span repeats it, since a line shows only its innermost span's
/// fields. (`requestId` is the name `lambda_runtime`'s own per-invocation
/// span uses, which is all the producer's lines need: one query finds an
/// invocation's lines in either function.)
pub async fn handle<S, Q, U, L>(
    deps: &Deps<S, Q, U, L>,
    event: SqsEvent,
    invocation_id: &str,
    deadline: Instant,
) -> SqsBatchResponse
where
    S: StatusStore + ClaimStore,
    Q: Redeliver,
    U: Upstream,
    L: Limiter,
{
    let span = tracing::info_span!("invocation", requestId = invocation_id);
    tracing::Instrument::instrument(handle_batch(deps, event, invocation_id, deadline), span).await
}

async fn handle_batch<S, Q, U, L>(
    deps: &Deps<S, Q, U, L>,
    event: SqsEvent,
    invocation_id: &str,
    deadline: Instant,
) -> SqsBatchResponse
where
    S: StatusStore + ClaimStore,
    Q: Redeliver,
    U: Upstream,
    L: Limiter,
{
    let mut groups: BTreeMap<String, Vec<&SqsMessage>> = BTreeMap::new();
    for (i, r) in event.records.iter().enumerate() {
        groups.entry(group_key(r, i)).or_default().push(r);
    }
    let hides = Hides::default();
    let hides = &hides;
    let results = join_all(groups.into_values().map(|records| {
        let bodies: Vec<Option<&str>> = records.iter().map(|r| r.body.as_deref()).collect();
        let line = Turn::line(&bodies);
        join_all(
            records
                .into_iter()
                .zip(line)
                .map(|(r, (before, turn))| async move {
                    // The account's records ask in order: this one once the one
                    // before it has its token or is done.
                    if let Some(before) = before {
                        let _ = before.await;
                    }
                    // Too little time left for one more upstream call: leave the
                    // record untouched for the trigger to hand out again.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !policy::record_fits(left, deps.settings.record_budget) {
                        tracing::warn!(
                            sqs_message_id = r.message_id.as_deref().unwrap_or(""),
                            left_ms = left.as_millis() as u64,
                            "too little invocation time left; leaving the record for later"
                        );
                        return (r.message_id.clone(), Disposition::Retry);
                    }
                    let env = Envelope::from_record(r, invocation_id, deadline, hides, &turn);
                    let owner = format!("{invocation_id}:{}", env.sqs_id);
                    let d = deps.process(env, &owner).await;
                    (r.message_id.clone(), d)
                }),
        )
    }))
    .await;
    deps.flush_hides(hides).await;

    let mut response = SqsBatchResponse::default();
    for (id, d) in results.into_iter().flatten() {
        if d == Disposition::Retry {
            match id.filter(|i| !i.is_empty()) {
                Some(id) => {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = id;
                    response.batch_item_failures.push(f);
                }
                // A failure must name a real id, or Lambda fails the whole
                // batch. A record without an id cannot be retried by name:
                // it was logged; its neighbours go on.
                None => tracing::error!("a record without a messageId could not be processed"),
            }
        }
    }
    response
}
