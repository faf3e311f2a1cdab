//! The delivery decisions with in-memory ports: every outcome of the
//! contract's "OnlyFans API, as the consumer calls it" section, poison
//! handling, claims, the kill switch, and the receive-count guard.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use consumer::ports::{Attributes, Queue, Store, Upstream};
use consumer::process::{Deps, Settings};
use shared::breaker::{Breaker, BreakerConfig};
use shared::delivery::{CallResult, Outcome};
use shared::limiter::{Decision, Limiter, LimiterError};
use shared::message::{AccountId, MessageId, Priority, QueueMessage};
use shared::queue::QueueError;
use shared::store::{ClaimOutcome, Status, StatusRecord, StoreError, Transition};
use shared::telemetry::Metrics;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

#[derive(Default)]
struct FakeStore {
    records: Mutex<HashMap<String, StatusRecord>>,
    claims: Mutex<HashMap<String, String>>,
    down: bool,
    /// Writes of `sent` that fail before one succeeds (Redis failing over
    /// just after the upstream answered).
    sent_write_failures: Mutex<u32>,
}

fn k(a: &AccountId, id: &MessageId) -> String {
    format!("{a}/{id}")
}

impl Store for FakeStore {
    async fn get(&self, a: &AccountId, id: &MessageId) -> Result<Option<StatusRecord>, StoreError> {
        if self.down {
            return Err(StoreError::Corrupt("down".into()));
        }
        Ok(self.records.lock().unwrap().get(&k(a, id)).cloned())
    }
    async fn transition(
        &self,
        a: &AccountId,
        id: &MessageId,
        to: Status,
        c: Transition,
        fallback: (Priority, OffsetDateTime),
    ) -> Result<Option<Status>, StoreError> {
        if to == Status::Sent {
            let mut left = self.sent_write_failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(StoreError::Corrupt("failing over".into()));
            }
        }
        let mut recs = self.records.lock().unwrap();
        let r = recs.entry(k(a, id)).or_insert(StatusRecord {
            message_id: *id,
            status: Status::Queued,
            priority: fallback.0,
            attempts: 0,
            created_at: fallback.1,
            sent_at: None,
            upstream_message_id: None,
            last_error: None,
        });
        if r.status.is_terminal() {
            return Ok(Some(r.status));
        }
        r.status = to;
        if let Some(x) = c.attempts {
            r.attempts = x;
        }
        if c.sent_at.is_some() {
            r.sent_at = c.sent_at;
        }
        if c.upstream_message_id.is_some() {
            r.upstream_message_id = c.upstream_message_id;
        }
        if c.last_error.is_some() {
            r.last_error = c.last_error;
        }
        Ok(Some(r.status))
    }
    async fn claim(
        &self,
        a: &AccountId,
        id: &MessageId,
        owner: &str,
        _l: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        if self.down {
            return Err(StoreError::Corrupt("down".into()));
        }
        let mut c = self.claims.lock().unwrap();
        if c.contains_key(&k(a, id)) {
            return Ok(ClaimOutcome::Held(Duration::from_secs(3)));
        }
        c.insert(k(a, id), owner.into());
        Ok(ClaimOutcome::Claimed)
    }
    async fn release(&self, a: &AccountId, id: &MessageId, owner: &str) -> Result<(), StoreError> {
        let mut c = self.claims.lock().unwrap();
        if c.get(&k(a, id)).map(String::as_str) == Some(owner) {
            c.remove(&k(a, id));
        }
        Ok(())
    }
}

#[derive(Default)]
struct FakeQueue {
    deferred: Mutex<Vec<(String, Duration)>>,
    dead: Mutex<Vec<(String, String)>>,
    requeued: Mutex<Vec<(String, Duration)>>,
    requeued_attributes: Mutex<Vec<Attributes>>,
}

impl Queue for FakeQueue {
    async fn defer(&self, rh: &str, wait: Duration) -> Result<(), QueueError> {
        self.deferred.lock().unwrap().push((rh.into(), wait));
        Ok(())
    }
    async fn dead_letter(
        &self,
        body: &str,
        _a: Attributes,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.dead.lock().unwrap().push((body.into(), reason.into()));
        Ok(())
    }
    async fn requeue(&self, body: &str, a: Attributes, delay: Duration) -> Result<(), QueueError> {
        self.requeued.lock().unwrap().push((body.into(), delay));
        self.requeued_attributes.lock().unwrap().push(a);
        Ok(())
    }
}

#[derive(Default)]
struct FakeUpstream {
    script: Mutex<VecDeque<Outcome>>,
    calls: Mutex<Vec<MessageId>>,
    refreshed: Mutex<u32>,
}

impl Upstream for FakeUpstream {
    async fn send(&self, msg: &QueueMessage) -> CallResult {
        self.calls.lock().unwrap().push(msg.message_id);
        let outcome = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Outcome::Sent {
                upstream_id: Some("ofm_1".into()),
            });
        CallResult {
            outcome,
            latency: Duration::from_millis(3),
        }
    }
    async fn refresh_token(&self) {
        *self.refreshed.lock().unwrap() += 1;
    }
}

#[derive(Default)]
struct FakeLimiter {
    script: Mutex<VecDeque<Result<Decision, ()>>>,
    paused: Mutex<Vec<Duration>>,
}

impl Limiter for FakeLimiter {
    async fn acquire(&self, _a: &AccountId, _p: Priority) -> Result<Decision, LimiterError> {
        match self.script.lock().unwrap().pop_front() {
            None => Ok(Decision::Allowed { tokens_left: 5.0 }),
            Some(Ok(d)) => Ok(d),
            Some(Err(())) => Err(LimiterError::Reply("down".into())),
        }
    }
    async fn pause(&self, _a: &AccountId, wait: Duration) -> Result<(), LimiterError> {
        self.paused.lock().unwrap().push(wait);
        Ok(())
    }
}

type TestDeps = Deps<FakeStore, FakeQueue, FakeUpstream, FakeLimiter>;

fn deps() -> TestDeps {
    Deps {
        store: FakeStore::default(),
        queue: FakeQueue::default(),
        upstream: FakeUpstream::default(),
        limiter: FakeLimiter::default(),
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
            deferral: shared::config::DeferralStrategy::Spread,
        },
    }
}

fn body(id: MessageId) -> String {
    serde_json::json!({
        "schemaVersion": 1, "messageId": id.to_string(), "accountId": "acct_1", "recipientId": "fan_1",
        "content": "hi", "priority": "high", "mediaUrls": [], "createdAt": "2026-11-27T01:00:00Z"
    })
    .to_string()
}

fn record(sqs_id: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(sqs_id.into());
    r.receipt_handle = Some(format!("rh-{sqs_id}"));
    r.body = Some(body.into());
    r.attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    r
}

async fn run(d: &TestDeps, records: Vec<SqsMessage>) -> Vec<String> {
    let mut ev = SqsEvent::default();
    ev.records = records;
    let resp =
        consumer::handler::handle(d, ev, "inv-1", Instant::now() + Duration::from_secs(30)).await;
    resp.batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

fn acct() -> AccountId {
    AccountId::parse("acct_1").unwrap()
}

async fn status(d: &TestDeps, id: MessageId) -> StatusRecord {
    d.store.get(&acct(), &id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_2xx_is_sent_with_the_upstream_id() {
    let d = deps();
    let id = MessageId::new();
    assert!(run(&d, vec![record("s1", &body(id), 1)]).await.is_empty());
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_1"));
    assert!(r.sent_at.is_some());
    assert!(d.store.claims.lock().unwrap().is_empty(), "claim released");
}

#[tokio::test]
async fn poison_goes_to_the_dlq_and_its_neighbours_are_delivered() {
    let d = deps();
    let (a, b) = (MessageId::new(), MessageId::new());
    let failures = run(
        &d,
        vec![
            record("s1", &body(a), 1),
            record("bad", "{nope", 1),
            record("s3", &body(b), 1),
        ],
    )
    .await;
    assert!(failures.is_empty(), "{failures:?}");
    let dead = d.queue.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "{nope");
    assert!(dead[0].1.contains("not valid JSON"));
    assert_eq!(d.upstream.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unknown_schema_version_is_poison() {
    let d = deps();
    let mut v: serde_json::Value = serde_json::from_str(&body(MessageId::new())).unwrap();
    v["schemaVersion"] = 7.into();
    assert!(
        run(&d, vec![record("s1", &v.to_string(), 1)])
            .await
            .is_empty()
    );
    assert!(
        d.queue.dead.lock().unwrap()[0]
            .1
            .contains("schema version 7")
    );
}

#[tokio::test]
async fn throttled_messages_are_deferred_not_failed() {
    let d = deps();
    let id = MessageId::new();
    d.limiter
        .script
        .lock()
        .unwrap()
        .push_back(Ok(Decision::Throttled {
            wait: Duration::from_millis(4200),
            tokens: 0.0,
        }));
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert_eq!(
        d.queue.deferred.lock().unwrap()[0],
        ("rh-s1".to_string(), Duration::from_secs(5))
    );
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Deferred);
    assert_eq!(r.attempts, 0, "a wait is not an attempt");
    assert!(d.upstream.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_naive_baseline_only_reports_a_failure() {
    let mut d = deps();
    d.settings.deferral = shared::config::DeferralStrategy::Naive;
    d.limiter
        .script
        .lock()
        .unwrap()
        .push_back(Ok(Decision::Throttled {
            wait: Duration::from_secs(4),
            tokens: 0.0,
        }));
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert!(
        d.queue.deferred.lock().unwrap().is_empty(),
        "visibility left to the queue"
    );
}

#[tokio::test]
async fn a_long_waiting_message_is_reenqueued_before_max_receive_count() {
    let d = deps();
    d.limiter
        .script
        .lock()
        .unwrap()
        .push_back(Ok(Decision::Throttled {
            wait: Duration::from_secs(3600),
            tokens: 0.0,
        }));
    assert!(
        run(&d, vec![record("s1", &body(MessageId::new()), 98)])
            .await
            .is_empty()
    );
    let rq = d.queue.requeued.lock().unwrap().clone();
    assert_eq!(rq.len(), 1);
    assert_eq!(rq[0].1, Duration::from_secs(900), "SQS's longest delay");
}

#[tokio::test]
async fn a_429_pauses_the_account_and_costs_no_attempt() {
    let d = deps();
    let id = MessageId::new();
    d.upstream
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::RateLimited {
            retry_after: Duration::from_secs(7),
        });
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert_eq!(
        d.limiter.paused.lock().unwrap().clone(),
        vec![Duration::from_secs(7)]
    );
    assert_eq!(
        d.queue.deferred.lock().unwrap()[0].1,
        Duration::from_secs(7)
    );
    let r = status(&d, id).await;
    assert_eq!((r.status, r.attempts), (Status::Deferred, 0));
}

#[tokio::test]
async fn transient_failures_back_off_then_die_in_the_dlq() {
    let d = deps();
    let id = MessageId::new();
    for _ in 0..3 {
        d.upstream
            .script
            .lock()
            .unwrap()
            .push_back(Outcome::Transient {
                reason: "upstream answered 503".into(),
            });
    }
    for attempt in 1..=2 {
        assert_eq!(
            run(&d, vec![record("s1", &body(id), attempt)]).await,
            vec!["s1"]
        );
        let r = status(&d, id).await;
        assert_eq!((r.status, r.attempts), (Status::Deferred, attempt));
        assert!(r.last_error.unwrap().contains("503"));
    }
    assert!(run(&d, vec![record("s1", &body(id), 3)]).await.is_empty());
    let r = status(&d, id).await;
    assert_eq!((r.status, r.attempts), (Status::Dead, 3));
    assert_eq!(d.queue.dead.lock().unwrap().len(), 1);
    assert!(
        d.queue.dead.lock().unwrap()[0]
            .1
            .contains("gave up after 3 attempts")
    );
}

#[tokio::test]
async fn an_open_upstream_circuit_defers_without_calling() {
    let d = deps();
    for _ in 0..3 {
        d.upstream
            .script
            .lock()
            .unwrap()
            .push_back(Outcome::Transient {
                reason: "upstream answered 503".into(),
            });
    }
    let ids: Vec<_> = (0..4)
        .map(|i| record(&format!("s{i}"), &body(MessageId::new()), 1))
        .collect();
    assert_eq!(run(&d, ids).await.len(), 4);
    assert_eq!(
        d.upstream.calls.lock().unwrap().len(),
        3,
        "the fourth waits for the circuit"
    );
    let waits: Vec<_> = d
        .queue
        .deferred
        .lock()
        .unwrap()
        .iter()
        .map(|(_, w)| *w)
        .collect();
    assert_eq!(waits[3], Duration::from_secs(30));
}

#[tokio::test]
async fn a_permanent_4xx_fails_with_the_upstream_reason() {
    let d = deps();
    let id = MessageId::new();
    d.upstream
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Permanent {
            status: 403,
            reason: "upstream answered 403: blocked".into(),
        });
    assert!(run(&d, vec![record("s1", &body(id), 1)]).await.is_empty());
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        r.last_error.as_deref(),
        Some("upstream answered 403: blocked")
    );
    assert!(d.queue.dead.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_retries() {
    let d = deps();
    d.upstream
        .script
        .lock()
        .unwrap()
        .push_back(Outcome::Unauthorized {
            reason: "upstream answered 401".into(),
        });
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert_eq!(*d.upstream.refreshed.lock().unwrap(), 1);
}

#[tokio::test]
async fn an_already_sent_message_is_not_sent_again() {
    let d = deps();
    let id = MessageId::new();
    assert!(run(&d, vec![record("s1", &body(id), 1)]).await.is_empty());
    assert!(run(&d, vec![record("s1", &body(id), 2)]).await.is_empty());
    assert_eq!(d.upstream.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_message_claimed_elsewhere_waits() {
    let d = deps();
    let id = MessageId::new();
    d.store
        .claims
        .lock()
        .unwrap()
        .insert(k(&acct(), &id), "other".into());
    assert_eq!(run(&d, vec![record("s1", &body(id), 1)]).await, vec!["s1"]);
    assert!(d.upstream.calls.lock().unwrap().is_empty());
    assert_eq!(
        d.queue.deferred.lock().unwrap()[0].1,
        Duration::from_secs(4)
    );
}

#[tokio::test]
async fn the_kill_switch_defers_everything_and_sends_nothing() {
    let mut d = deps();
    d.settings.enabled = false;
    let ids: Vec<_> = (0..3)
        .map(|i| record(&format!("s{i}"), &body(MessageId::new()), 1))
        .collect();
    assert_eq!(run(&d, ids).await.len(), 3);
    assert!(d.upstream.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn redis_down_fails_closed() {
    let mut d = deps();
    d.store.down = true;
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert!(d.upstream.calls.lock().unwrap().is_empty());
    let d = deps();
    d.limiter.script.lock().unwrap().push_back(Err(()));
    assert_eq!(
        run(&d, vec![record("s1", &body(MessageId::new()), 1)]).await,
        vec!["s1"]
    );
    assert!(
        d.upstream.calls.lock().unwrap().is_empty(),
        "no token, no send"
    );
}

#[tokio::test]
async fn a_record_without_an_id_never_fails_the_batch() {
    let d = deps();
    let mut r = record("", "{nope", 1);
    r.message_id = None;
    d.limiter
        .script
        .lock()
        .unwrap()
        .push_back(Ok(Decision::Throttled {
            wait: Duration::from_secs(1),
            tokens: 0.0,
        }));
    let mut r2 = record("", &body(MessageId::new()), 1);
    r2.message_id = None;
    let failures = run(&d, vec![r, r2, record("s3", &body(MessageId::new()), 1)]).await;
    assert!(failures.iter().all(|f| !f.is_empty()), "{failures:?}");
}

#[tokio::test]
async fn the_sample_events_are_handled() {
    for (name, ev) in [
        ("one", include_str!("../../../events/sqs-one-message.json")),
        (
            "mixed",
            include_str!("../../../events/sqs-mixed-poison.json"),
        ),
        (
            "priorities",
            include_str!("../../../events/sqs-priorities.json"),
        ),
    ] {
        let d = deps();
        let ev: SqsEvent = serde_json::from_str(ev).unwrap();
        let n = ev.records.len();
        let failures = run(&d, ev.records).await;
        assert!(failures.is_empty(), "{name}: {failures:?}");
        let sent = d.upstream.calls.lock().unwrap().len();
        let dead = d.queue.dead.lock().unwrap().len();
        assert_eq!(sent + dead, n, "{name}");
        if name == "mixed" {
            assert_eq!(dead, 2);
        }
    }
}

#[tokio::test]
async fn a_sent_status_is_written_even_if_redis_fails_for_a_moment() {
    let d = deps();
    *d.store.sent_write_failures.lock().unwrap() = 2;
    let id = MessageId::new();
    let failed = run(&d, vec![record("s1", &body(id), 1)]).await;
    assert!(failed.is_empty(), "sent: the record is deleted");
    assert_eq!(d.upstream.calls.lock().unwrap().len(), 1);
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent, "{r:?}");
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_1"));
}

#[tokio::test]
async fn a_sent_status_redis_cannot_take_is_recorded_by_a_copy() {
    let d = deps();
    *d.store.sent_write_failures.lock().unwrap() = u32::MAX;
    let id = MessageId::new();
    let failed = run(&d, vec![record("s1", &body(id), 1)]).await;
    assert!(failed.is_empty(), "sent: the record is deleted");
    assert_eq!(status(&d, id).await.status, Status::Sending);
    let (copy_body, _) = d.queue.requeued.lock().unwrap()[0].clone();
    let attrs = d.queue.requeued_attributes.lock().unwrap()[0].clone();
    let sent = attrs[shared::queue::attr::SENT_RECORD]
        .string_value()
        .unwrap()
        .to_owned();

    // Redis is back: the copy records the outcome, and calls nobody.
    *d.store.sent_write_failures.lock().unwrap() = 0;
    let mut copy = record("s2", &copy_body, 1);
    let mut a = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    a.string_value = Some(sent);
    a.data_type = Some("String".into());
    copy.message_attributes
        .insert(shared::queue::attr::SENT_RECORD.into(), a);
    let failed = run(&d, vec![copy]).await;
    assert!(failed.is_empty());
    assert_eq!(d.upstream.calls.lock().unwrap().len(), 1, "not sent again");
    let r = status(&d, id).await;
    assert_eq!(r.status, Status::Sent, "{r:?}");
    assert_eq!(r.upstream_message_id.as_deref(), Some("ofm_1"));
    assert_eq!(r.attempts, 1);
}

/// A log writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of an invocation, in the production format, names the
/// invocation's request id: lines about the batch and lines inside a
/// record's span alike (a JSON line shows only its innermost span).
#[tokio::test]
async fn every_log_line_of_an_invocation_carries_its_request_id() {
    use shared::telemetry::{log_filter, subscriber};
    let buf = LogBuf::default();
    let writer = buf.clone();
    let _default = tracing::subscriber::set_default(subscriber(
        move || writer.clone(),
        log_filter(None, Some("debug")),
    ));
    let d = deps();
    let sent = MessageId::new();
    let failures = run(
        &d,
        vec![record("s1", &body(sent), 1), record("bad", "{nope", 1)],
    )
    .await;
    assert!(failures.is_empty(), "{failures:?}");

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        assert_eq!(l["span"]["requestId"], "inv-1", "{l}");
    }
    // Both kinds of line were seen: inside the message's span, and about
    // the poison record (which never gets one).
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["message_id"] == sent.to_string().as_str()),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["name"] == "invocation" && l["fields"]["sqs_message_id"] == "bad"),
        "{text}"
    );
}
