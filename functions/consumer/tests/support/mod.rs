//! What the consumer's test binaries share: the deps on in-memory ports,
//! queue bodies and SQS records, and a batch run.

#![allow(dead_code)]

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use consumer::process::{Deps, Settings};
use shared::breaker::{Breaker, BreakerConfig};
use shared::clock::Clock;
use shared::delivery::Jitter;
use shared::limiter::Decision;
use shared::message::{AccountId, MessageId};
use shared::store::{StatusRecord, StatusStore};
use shared::telemetry::Metrics;
use std::time::Duration;
use testkit::{MemQueue, MemStore, ScriptedLimiter, ScriptedUpstream};
use tokio::time::Instant;

pub type TestDeps = Deps<MemStore, MemQueue, ScriptedUpstream, ScriptedLimiter>;

pub fn deps() -> TestDeps {
    Deps {
        store: MemStore::default(),
        queue: MemQueue::default(),
        upstream: ScriptedUpstream::default(),
        limiter: ScriptedLimiter::default(),
        metrics: Metrics::disabled("Test", "consumer"),
        breaker: Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(30),
        }),
        settings: Settings {
            enabled: true,
            max_attempts: 3,
            max_receive_count: 100,
            claim_lease: Duration::from_secs(15),
            record_budget: Duration::from_secs(11),
            in_process_wait: Duration::ZERO,
            queue_lateness: Duration::from_secs(3),
            deferral: shared::config::DeferralStrategy::Spread,
        },
        clock: Clock::system(),
        jitter: Jitter::seeded(7),
    }
}

/// A denial with `wait`, an empty bucket and no slack (a short wait is
/// waited out in process, whether the message holds a slot or not).
pub fn throttled(wait: Duration) -> Decision {
    Decision::Throttled {
        wait,
        tokens: 0.0,
        slack: Duration::ZERO,
    }
}

pub fn body(id: MessageId) -> String {
    serde_json::json!({
        "schemaVersion": 1, "messageId": id.to_string(), "accountId": "acct_1", "recipientId": "fan_1",
        "content": "hi", "priority": "high", "mediaUrls": [], "createdAt": "2026-11-27T01:00:00Z"
    })
    .to_string()
}

pub fn record(sqs_id: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(sqs_id.into());
    r.receipt_handle = Some(format!("rh-{sqs_id}"));
    r.body = Some(body.into());
    r.attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    r
}

pub async fn run(d: &TestDeps, records: Vec<SqsMessage>) -> Vec<String> {
    let mut ev = SqsEvent::default();
    ev.records = records;
    let resp =
        consumer::handler::handle(d, ev, "inv-1", Instant::now() + Duration::from_secs(30)).await;
    resp.batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

pub fn acct() -> AccountId {
    AccountId::parse("acct_1").unwrap()
}

pub async fn status(d: &TestDeps, id: MessageId) -> StatusRecord {
    d.store.get(&acct(), &id).await.unwrap().unwrap()
}
