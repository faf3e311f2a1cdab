//! The SQS model (`sim/src/queue.rs`) held to moto, the SQS-compatible server
//! the project's stack runs: one trace of API calls (SendMessage with and
//! without `DelaySeconds`, ReceiveMessage, ChangeMessageVisibility,
//! DeleteMessage, redrive to a DLQ at `maxReceiveCount`, GetQueueAttributes)
//! is played against a real moto server on real time and against the model on
//! virtual time, and every answer is compared: which messages a receive
//! returns with their `ApproximateReceiveCount`, whether a call is accepted,
//! the queue's visible / in-flight / delayed counts, what reached the DLQ.
//!
//! Visibility timeouts are 2 s so the trace takes ~10 s. Every step is timed
//! at least 0.5 s away from any moment a message changes state, and a step
//! that starts more than 0.2 s late on the real side (a loaded machine) makes
//! the attempt void: it is replayed on fresh queues (three attempts).
//!
//! Where moto and AWS's documentation disagree, the model follows AWS and the
//! step says so ([`Expect::Differs`]): both answers are pinned, so the test
//! still fails if either side changes (a moto that starts agreeing with AWS
//! turns the step into a plain comparison).
//!
//! Needs an SQS-compatible server at `AWS_ENDPOINT_URL_SQS` (`make test`
//! starts one; by hand: `.venv/bin/moto_server -H 127.0.0.1 -p 9610` and
//! `AWS_ENDPOINT_URL_SQS=http://127.0.0.1:9610`).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use shared::queue::Attributes;
use sim::queue::{Counts, DeadCause, SimQueue};
use sim::scenario::QueueCfg;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// The main queue's visibility timeout and redrive, for both sides.
const VISIBILITY_S: u32 = 2;
const MAX_RECEIVE_COUNT: u32 = 2;
/// How late a real call may start before the attempt is void.
const MAX_LAG: Duration = Duration::from_millis(200);
const ATTEMPTS: usize = 3;

/// The queues of one trace: the main one (with its DLQ) and one queue per
/// documented difference, so that a step where the two sides part ways
/// leaves the rest of the trace comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Q {
    Main,
    StaleDelete,
    StaleChange,
    NotInFlight,
    TotalFromReceive,
    BatchChange,
}

const QUEUES: [Q; 6] = [
    Q::Main,
    Q::StaleDelete,
    Q::StaleChange,
    Q::NotInFlight,
    Q::TotalFromReceive,
    Q::BatchChange,
];

/// Which receipt handle of a message: the newest, or the one of its n-th
/// receive (1-based).
#[derive(Debug, Clone, Copy)]
enum Handle {
    Latest,
    Nth(usize),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Send {
        body: &'static str,
        delay_s: i32,
    },
    Receive,
    Change {
        body: &'static str,
        handle: Handle,
        secs: i32,
    },
    Delete {
        body: &'static str,
        handle: Handle,
    },
    /// `ChangeMessageVisibilityBatch` with each body's newest handle.
    ChangeBatch {
        entries: &'static [(&'static str, i32)],
    },
    Counts,
    /// The bodies SQS's redrive moved to the DLQ.
    Dlq,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Accepted,
    Refused,
    /// A batch request's entries that failed.
    BatchFailed(usize),
    /// Body → `ApproximateReceiveCount`.
    Received(BTreeMap<String, u32>),
    Counts(Counts),
    Dlq(BTreeSet<String>),
}

enum Expect {
    /// The two sides must answer alike.
    Same,
    /// moto departs from AWS's documentation; the model follows AWS.
    Differs {
        why: &'static str,
        model: Answer,
        moto: Answer,
    },
}

struct Step {
    /// Milliseconds after the trace's start.
    at_ms: u64,
    q: Q,
    op: Op,
    expect: Expect,
}

fn counts(visible: u64, not_visible: u64, delayed: u64) -> Answer {
    Answer::Counts(Counts {
        visible,
        not_visible,
        delayed,
    })
}

/// The trace. Comments give each message's state changes (s after start),
/// which every step keeps at least 0.5 s away from.
fn trace() -> Vec<Step> {
    use Expect::Same;
    use Op::*;
    let s = |at_ms, q, op| Step {
        at_ms,
        q,
        op,
        expect: Same,
    };
    let differs = |at_ms, q, op, why, model, moto| Step {
        at_ms,
        q,
        op,
        expect: Expect::Differs { why, model, moto },
    };
    vec![
        // --- main queue: visibility 2 s, redrive after 2 receives ---
        s(
            0,
            Q::Main,
            Send {
                body: "a",
                delay_s: 0,
            },
        ),
        // b delayed until 2.1
        s(
            100,
            Q::Main,
            Send {
                body: "b",
                delay_s: 2,
            },
        ),
        s(
            200,
            Q::Main,
            Send {
                body: "c",
                delay_s: 0,
            },
        ),
        s(
            300,
            Q::Main,
            Send {
                body: "e",
                delay_s: 0,
            },
        ),
        // DelaySeconds is 0-900.
        s(
            400,
            Q::Main,
            Send {
                body: "x",
                delay_s: 901,
            },
        ),
        // a, c, e: first receive, hidden until 2.5
        s(500, Q::Main, Receive),
        s(700, Q::Main, Counts),
        // c visible again at once
        s(
            800,
            Q::Main,
            Change {
                body: "c",
                handle: Handle::Latest,
                secs: 0,
            },
        ),
        // c: second receive, hidden until 3.2
        s(1200, Q::Main, Receive),
        // a hidden until 6.4 (counted from the call)
        s(
            1400,
            Q::Main,
            Change {
                body: "a",
                handle: Handle::Latest,
                secs: 5,
            },
        ),
        // Nothing visible: b delayed, a, c and e hidden.
        s(1500, Q::Main, Receive),
        s(
            1600,
            Q::Main,
            Delete {
                body: "c",
                handle: Handle::Latest,
            },
        ),
        // e visible since 2.5 but not received again: its newest handle deletes it.
        s(
            2600,
            Q::Main,
            Delete {
                body: "e",
                handle: Handle::Latest,
            },
        ),
        // b visible since 2.1: first receive, hidden until 5.1
        s(3100, Q::Main, Receive),
        // Out of range (0-43,200 s).
        s(
            3600,
            Q::Main,
            Change {
                body: "b",
                handle: Handle::Latest,
                secs: 43_201,
            },
        ),
        s(3700, Q::Main, Counts),
        // b visible since 5.1, a hidden until 6.4: b's second receive, hidden until 7.6
        s(5600, Q::Main, Receive),
        // a visible since 6.4: its second receive, hidden until 9.0
        s(7000, Q::Main, Receive),
        // b visible since 7.6 after 2 receives: the redrive moves it, nothing returned
        s(8100, Q::Main, Receive),
        // a visible since 9.0: moved too
        s(9500, Q::Main, Receive),
        s(9600, Q::Main, Counts),
        s(9700, Q::Main, Dlq),
        // --- DeleteMessage with an older receipt handle ---
        s(
            4000,
            Q::StaleDelete,
            Send {
                body: "s",
                delay_s: 0,
            },
        ),
        s(4100, Q::StaleDelete, Receive),
        s(
            4200,
            Q::StaleDelete,
            Change {
                body: "s",
                handle: Handle::Latest,
                secs: 0,
            },
        ),
        s(4300, Q::StaleDelete, Receive),
        s(
            4400,
            Q::StaleDelete,
            Delete {
                body: "s",
                handle: Handle::Nth(1),
            },
        ),
        differs(
            4500,
            Q::StaleDelete,
            Counts,
            "AWS: 'you must provide the most recently received receipt handle for the message \
             (otherwise, the request succeeds, but the message will not be deleted)' \
             (API_DeleteMessage); moto deletes with any handle the message ever had",
            counts(0, 1, 0),
            counts(0, 0, 0),
        ),
        // --- ChangeMessageVisibility with an older receipt handle ---
        s(
            4700,
            Q::StaleChange,
            Send {
                body: "s",
                delay_s: 0,
            },
        ),
        s(4800, Q::StaleChange, Receive),
        s(
            4900,
            Q::StaleChange,
            Change {
                body: "s",
                handle: Handle::Latest,
                secs: 0,
            },
        ),
        s(5000, Q::StaleChange, Receive),
        differs(
            5100,
            Q::StaleChange,
            Change {
                body: "s",
                handle: Handle::Nth(1),
                secs: 0,
            },
            "AWS documents one current receipt handle per receive (API_ReceiveMessage, \
             API_DeleteMessage); the model refuses an older one as it refuses a message not in \
             flight, moto accepts any handle the message ever had",
            Answer::Refused,
            Answer::Accepted,
        ),
        // --- ChangeMessageVisibility on a message that is no longer in flight ---
        s(
            6000,
            Q::NotInFlight,
            Send {
                body: "s",
                delay_s: 0,
            },
        ),
        s(6100, Q::NotInFlight, Receive),
        s(
            6200,
            Q::NotInFlight,
            Change {
                body: "s",
                handle: Handle::Latest,
                secs: 0,
            },
        ),
        differs(
            6300,
            Q::NotInFlight,
            Change {
                body: "s",
                handle: Handle::Latest,
                secs: 5,
            },
            "AWS: after the visibility timeout 'any attempt to change the visibility timeout or \
             to delete that message ... might result in an error' (API_ChangeMessageVisibility, \
             error MessageNotInflight); the model refuses, moto changes a visible message's \
             visibility",
            Answer::Refused,
            Answer::Accepted,
        ),
        // --- ChangeMessageVisibilityBatch: each entry on its own ---
        s(
            7100,
            Q::BatchChange,
            Send {
                body: "p",
                delay_s: 0,
            },
        ),
        s(
            7150,
            Q::BatchChange,
            Send {
                body: "q",
                delay_s: 0,
            },
        ),
        s(
            7175,
            Q::BatchChange,
            Send {
                body: "r",
                delay_s: 0,
            },
        ),
        // p, q, r: first receive, hidden until 9.2
        s(7200, Q::BatchChange, Receive),
        // p visible at once, q hidden until 12.3; r's 43,201 s is out of
        // range: that entry fails, the others are done.
        s(
            7300,
            Q::BatchChange,
            ChangeBatch {
                entries: &[("p", 0), ("q", 5), ("r", 43_201)],
            },
        ),
        // p: its second receive; q and r still hidden.
        s(7400, Q::BatchChange, Receive),
        s(7500, Q::BatchChange, Counts),
        // r back at 9.2 (the queue's 2 s, untouched by the failed entry); q not yet.
        s(9700, Q::BatchChange, Receive),
        // --- the 12-hour total, counted from the receive ---
        s(
            1000,
            Q::TotalFromReceive,
            Send {
                body: "s",
                delay_s: 0,
            },
        ),
        s(3000, Q::TotalFromReceive, Receive),
        differs(
            3200,
            Q::TotalFromReceive,
            Change {
                body: "s",
                handle: Handle::Latest,
                secs: 43_199,
            },
            "AWS: a message's 'total visibility timeout' may not pass 12 hours, counted from the \
             receive (sqs-visibility-timeout.html, API_ChangeMessageVisibility's example); moto \
             counts from the send, 2.2 s earlier here",
            Answer::Accepted,
            Answer::Refused,
        ),
    ]
}

// ---------------------------------------------------------------- model side

struct ModelSide {
    queues: HashMap<Q, SimQueue>,
    handles: HashMap<(Q, String), Vec<String>>,
}

impl ModelSide {
    fn new() -> Self {
        let cfg = QueueCfg {
            visibility_timeout_s: VISIBILITY_S,
            max_receive_count: MAX_RECEIVE_COUNT,
            // moto stores MessageGroupId and ignores it.
            fair: false,
            ..QueueCfg::default()
        };
        Self {
            queues: QUEUES.iter().map(|q| (*q, SimQueue::new(cfg, 1))).collect(),
            handles: HashMap::new(),
        }
    }

    fn handle(&self, q: Q, body: &str, h: Handle) -> String {
        let all = self
            .handles
            .get(&(q, body.to_owned()))
            .cloned()
            .unwrap_or_default();
        pick(&all, h)
    }

    fn apply(&mut self, q: Q, op: Op) -> Answer {
        let queue = self.queues[&q].clone();
        match op {
            Op::Send { body, delay_s } => {
                let delay = Duration::from_secs(u64::try_from(delay_s).unwrap_or(u64::MAX));
                accepted(
                    queue
                        .send(body.to_owned(), Attributes::new(), delay)
                        .is_ok(),
                )
            }
            Op::Receive => {
                let mut out = BTreeMap::new();
                for r in queue.receive(10) {
                    let body = r.body.clone().unwrap_or_default();
                    let n = r
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    self.handles
                        .entry((q, body.clone()))
                        .or_default()
                        .push(r.receipt_handle.clone().unwrap_or_default());
                    out.insert(body, n);
                }
                Answer::Received(out)
            }
            Op::Change { body, handle, secs } => {
                let wait = Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX));
                accepted(
                    queue
                        .change_visibility(&self.handle(q, body, handle), wait)
                        .is_ok(),
                )
            }
            Op::ChangeBatch { entries } => {
                let entries: Vec<(String, Duration)> = entries
                    .iter()
                    .map(|(body, secs)| {
                        (
                            self.handle(q, body, Handle::Latest),
                            Duration::from_secs(u64::try_from(*secs).unwrap_or(u64::MAX)),
                        )
                    })
                    .collect();
                Answer::BatchFailed(queue.change_visibility_batch(&entries))
            }
            Op::Delete { body, handle } => {
                // DeleteMessage answers success even for an older handle
                // (the message stays): what it did shows in later steps.
                queue.delete_batch(&[self.handle(q, body, handle)]);
                Answer::Accepted
            }
            Op::Counts => Answer::Counts(queue.counts()),
            Op::Dlq => Answer::Dlq(
                queue
                    .dlq()
                    .into_iter()
                    .filter(|d| d.cause == DeadCause::Redrive)
                    .map(|d| d.body)
                    .collect(),
            ),
        }
    }
}

fn pick(all: &[String], h: Handle) -> String {
    match h {
        Handle::Latest => all.last(),
        Handle::Nth(n) => n.checked_sub(1).and_then(|i| all.get(i)),
    }
    .cloned()
    .unwrap_or_else(|| "no-such-handle".to_owned())
}

fn accepted(ok: bool) -> Answer {
    if ok {
        Answer::Accepted
    } else {
        Answer::Refused
    }
}

// ----------------------------------------------------------------- moto side

struct MotoSide {
    sqs: Client,
    urls: HashMap<Q, String>,
    dlq_url: String,
    handles: HashMap<(Q, String), Vec<String>>,
}

async fn create(sqs: &Client, name: &str, attrs: &[(QueueAttributeName, String)]) -> String {
    let attrs: HashMap<_, _> = attrs.iter().cloned().collect();
    sqs.create_queue()
        .queue_name(name)
        .set_attributes(Some(attrs))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateQueue {name}: {e:?}"))
        .queue_url
        .unwrap_or_else(|| panic!("CreateQueue {name}: no URL"))
}

impl MotoSide {
    async fn new(sqs: Client) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let dlq_url = create(&sqs, &format!("simtrace-{run}-dlq"), &[]).await;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetQueueAttributes QueueArn: {e:?}"))
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_else(|| panic!("the DLQ has no ARN"));
        let redrive = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
        })
        .to_string();
        let mut urls = HashMap::new();
        for (i, q) in QUEUES.iter().enumerate() {
            let url = create(
                &sqs,
                &format!("simtrace-{run}-{i}"),
                &[
                    (
                        QueueAttributeName::VisibilityTimeout,
                        VISIBILITY_S.to_string(),
                    ),
                    (QueueAttributeName::RedrivePolicy, redrive.clone()),
                ],
            )
            .await;
            urls.insert(*q, url);
        }
        Self {
            sqs,
            urls,
            dlq_url,
            handles: HashMap::new(),
        }
    }

    async fn delete_queues(&self) {
        for url in self.urls.values().chain(std::iter::once(&self.dlq_url)) {
            let _ = self.sqs.delete_queue().queue_url(url).send().await;
        }
    }

    fn handle(&self, q: Q, body: &str, h: Handle) -> String {
        let all = self
            .handles
            .get(&(q, body.to_owned()))
            .cloned()
            .unwrap_or_default();
        pick(&all, h)
    }

    async fn counts(&self, url: &str) -> Counts {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetQueueAttributes: {e:?}"))
            .attributes
            .unwrap_or_default();
        let get = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k:?} in {attrs:?}"))
        };
        Counts {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            not_visible: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        }
    }

    async fn receive(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage: {e:?}"))
            .messages
            .unwrap_or_default()
    }

    async fn apply(&mut self, q: Q, op: Op) -> Answer {
        let url = self.urls[&q].clone();
        match op {
            Op::Send { body, delay_s } => accepted(
                self.sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .delay_seconds(delay_s)
                    .send()
                    .await
                    .is_ok(),
            ),
            Op::Receive => {
                let mut out = BTreeMap::new();
                for m in self.receive(&url).await {
                    let body = m.body.clone().unwrap_or_default();
                    let n = m
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    self.handles
                        .entry((q, body.clone()))
                        .or_default()
                        .push(m.receipt_handle.clone().unwrap_or_default());
                    out.insert(body, n);
                }
                Answer::Received(out)
            }
            Op::Change { body, handle, secs } => accepted(
                self.sqs
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(self.handle(q, body, handle))
                    .visibility_timeout(secs)
                    .send()
                    .await
                    .is_ok(),
            ),
            Op::ChangeBatch { entries } => {
                let entries = entries
                    .iter()
                    .enumerate()
                    .map(|(i, (body, secs))| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(self.handle(q, body, Handle::Latest))
                            .visibility_timeout(*secs)
                            .build()
                            .unwrap_or_else(|e| panic!("entry: {e}"))
                    })
                    .collect::<Vec<_>>();
                match self
                    .sqs
                    .change_message_visibility_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => Answer::BatchFailed(out.failed().len()),
                    Err(_) => Answer::Refused,
                }
            }
            Op::Delete { body, handle } => accepted(
                self.sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(self.handle(q, body, handle))
                    .send()
                    .await
                    .is_ok(),
            ),
            Op::Counts => Answer::Counts(self.counts(&url).await),
            Op::Dlq => {
                let url = self.dlq_url.clone();
                let mut bodies = BTreeSet::new();
                // Short polls until the DLQ has given every message once
                // (what it holds is hidden after a receive).
                for _ in 0..10 {
                    let got = self.receive(&url).await;
                    if got.is_empty() {
                        break;
                    }
                    bodies.extend(got.into_iter().filter_map(|m| m.body));
                }
                Answer::Dlq(bodies)
            }
        }
    }
}

// ------------------------------------------------------------------ the test

/// One line of the recorded trace.
#[derive(Debug)]
struct Line {
    at_ms: u64,
    q: Q,
    op: Op,
    model: Answer,
    moto: Answer,
    late_ms: u128,
}

/// Plays the trace on both sides; `None` when the real side fell behind.
fn play(real: &tokio::runtime::Runtime, sqs: &Client) -> Option<Vec<Line>> {
    let model_rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut model = ModelSide::new();
    let model_start = model_rt.block_on(async { tokio::time::Instant::now() });
    let mut moto = real.block_on(MotoSide::new(sqs.clone()));
    // A first request outside the clock: the connection is set up.
    real.block_on(moto.counts(&moto.urls[&Q::Main].clone()));

    let mut steps = trace();
    // Stable: steps at one time keep their written order.
    steps.sort_by_key(|s| s.at_ms);
    let real_start = std::time::Instant::now();
    let mut lines = Vec::new();
    let mut on_time = true;
    for step in &steps {
        let at = Duration::from_millis(step.at_ms);
        let (moto_answer, late) = real.block_on(async {
            tokio::time::sleep_until(tokio::time::Instant::from_std(real_start + at)).await;
            let late = real_start.elapsed().saturating_sub(at);
            (moto.apply(step.q, step.op).await, late)
        });
        let model_answer = model_rt.block_on(async {
            tokio::time::sleep_until(model_start + at).await;
            model.apply(step.q, step.op)
        });
        // The call must also have ended in time (moto answers in ms).
        let late = late.max(real_start.elapsed().saturating_sub(at));
        if late > MAX_LAG {
            on_time = false;
        }
        lines.push(Line {
            at_ms: step.at_ms,
            q: step.q,
            op: step.op,
            model: model_answer,
            moto: moto_answer,
            late_ms: late.as_millis(),
        });
    }
    real.block_on(moto.delete_queues());
    if !on_time {
        let late: Vec<String> = lines
            .iter()
            .filter(|l| l.late_ms > MAX_LAG.as_millis())
            .map(|l| {
                format!(
                    "{:?} {:?} at {} ms: {} ms late",
                    l.q, l.op, l.at_ms, l.late_ms
                )
            })
            .collect();
        eprintln!(
            "real calls ended more than {MAX_LAG:?} late ({}); replaying on fresh queues",
            late.join("; ")
        );
        return None;
    }
    // Checked only for an attempt that kept its timing.
    for (line, step) in lines.iter().zip(&steps) {
        let shown = || format!("{:#?}", lines);
        match &step.expect {
            Expect::Same => assert_eq!(
                line.model,
                line.moto,
                "the model and moto disagree at {} ms on {:?} {:?}\nthe recorded trace: {}",
                line.at_ms,
                line.q,
                line.op,
                shown()
            ),
            Expect::Differs { why, model, moto } => {
                assert_eq!(
                    &line.model,
                    model,
                    "the model left AWS's documented behaviour at {} ms ({why})\n{}",
                    line.at_ms,
                    shown()
                );
                assert_eq!(
                    &line.moto,
                    moto,
                    "moto's answer changed at {} ms: if it now follows AWS ({why}), make this \
                     step a comparison\n{}",
                    line.at_ms,
                    shown()
                );
            }
        }
    }
    Some(lines)
}

#[test]
fn the_sqs_model_answers_as_moto_does_on_a_recorded_trace() {
    if std::env::var("AWS_ENDPOINT_URL_SQS").map_or(true, |v| v.trim().is_empty()) {
        panic!(
            "AWS_ENDPOINT_URL_SQS is not set: this test needs an SQS-compatible server, e.g. \
             `.venv/bin/moto_server -H 127.0.0.1 -p 9610` and \
             AWS_ENDPOINT_URL_SQS=http://127.0.0.1:9610 (`make test` does both)"
        );
    }
    let real = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let sqs = real.block_on(async { shared::queue::sqs_client(&shared::tls::sdk_config().await) });
    for attempt in 1..=ATTEMPTS {
        if let Some(lines) = play(&real, &sqs) {
            let receives = lines.iter().filter(|l| matches!(l.op, Op::Receive)).count();
            assert!(receives >= 10, "the trace compared {receives} receives");
            eprintln!(
                "{} steps compared on attempt {attempt}, worst lag {} ms",
                lines.len(),
                lines.iter().map(|l| l.late_ms).max().unwrap_or(0)
            );
            return;
        }
    }
    panic!("the real side fell behind the trace's timing on all {ATTEMPTS} attempts");
}
