//! The outbox against the real Redis (or the Redis Cluster at
//! `REDIS_CLUSTER_URL`, [`testkit::test_redis`]) and the real SQS-compatible
//! server (`AWS_ENDPOINT_URL_SQS`, which `make test` sets).

use aws_sdk_sqs::types::MessageSystemAttributeName;
use shared::breaker::{Breaker, BreakerConfig};
use shared::message::{
    AccountId, Content, MediaUrls, MessageId, NewMessage, Priority, QueueMessage, RecipientId,
};
use shared::outbox::{Outbox, ResilientQueue};
use shared::queue::{Enqueue, Redeliver, SqsQueue};
use std::time::Duration;
use time::OffsetDateTime;

async fn sqs() -> aws_sdk_sqs::Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_SQS").is_ok(),
        "AWS_ENDPOINT_URL_SQS must point at the SQS-compatible server (make test sets it)"
    );
    shared::queue::sqs_client(&shared::tls::sdk_config().await)
}

fn message(i: usize) -> QueueMessage {
    QueueMessage::new(
        MessageId::new(),
        AccountId::parse("t_outbox").unwrap(),
        NewMessage {
            recipient_id: RecipientId::parse(&format!("fan_{i}")).unwrap(),
            content: Content::parse("hello").unwrap(),
            priority: Priority::Low,
            media_urls: MediaUrls::default(),
            send_at: None,
        },
        OffsetDateTime::now_utc(),
    )
}

#[tokio::test]
async fn sqs_down_falls_back_to_the_outbox_and_replay_moves_in_order() {
    let client = sqs().await;
    let conn = testkit::test_redis().await.unwrap();
    let key = format!("of:test-outbox:{}", uuid::Uuid::new_v4().simple());
    let outbox = Outbox::with_key(conn, key);

    // A queue that does not exist: every send fails, as with SQS down.
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").unwrap();
    let missing = SqsQueue::new(
        client.clone(),
        format!("{endpoint}/123456789012/missing-{}", uuid::Uuid::new_v4()),
        None,
    );
    let resilient = ResilientQueue {
        sqs: missing,
        outbox: outbox.clone(),
        breaker: Breaker::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        }),
    };
    let msgs: Vec<QueueMessage> = (0..5).map(message).collect();
    for m in &msgs {
        resilient
            .enqueue(
                m,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            )
            .await
            .unwrap();
    }
    assert!(
        resilient.breaker.is_open(),
        "two failures open the breaker; later sends skip SQS"
    );
    assert_eq!(outbox.waiting().await.unwrap(), 5);

    // SQS is back: replay moves every entry, in order, and empties the outbox.
    let name = format!("outbox-{}", uuid::Uuid::new_v4().simple());
    let queue_url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue = SqsQueue::new(client.clone(), queue_url.clone(), None);
    let stats = outbox.replay(&queue, 100).await.unwrap();
    assert_eq!((stats.moved, stats.remaining, stats.skipped), (5, 0, false));
    let mut got = Vec::new();
    for _ in 0..10 {
        let out = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let attrs = m.message_attributes.clone().unwrap_or_default();
            assert_eq!(
                attrs
                    .get("priority")
                    .and_then(|a| a.string_value.as_deref()),
                Some("low")
            );
            assert!(attrs.contains_key("traceparent"));
            got.push(QueueMessage::parse(m.body.as_deref().unwrap()).unwrap());
        }
        if got.len() == 5 {
            break;
        }
    }
    assert_eq!(
        got.iter().map(|m| m.message_id).collect::<Vec<_>>(),
        msgs.iter().map(|m| m.message_id).collect::<Vec<_>>()
    );
    // A second replay finds nothing to move.
    assert_eq!(outbox.replay(&queue, 100).await.unwrap().moved, 0);
}

#[tokio::test]
async fn neither_sqs_nor_redis_is_an_error() {
    let client = sqs().await;
    // A Redis that is not there (lazy manager: fails on use).
    let conn = shared::store::connect_lazy("redis://127.0.0.1:1").unwrap();
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SQS").unwrap();
    let resilient = ResilientQueue {
        sqs: SqsQueue::new(
            client,
            format!("{endpoint}/123456789012/missing-{}", uuid::Uuid::new_v4()),
            None,
        ),
        outbox: Outbox::with_key(conn, "of:test-outbox:none"),
        breaker: Breaker::new(BreakerConfig::default()),
    };
    assert!(resilient.enqueue(&message(0), None).await.is_err());
}

#[tokio::test]
async fn redrive_lists_then_moves_dead_messages_and_revives_them() {
    use shared::store::{RedisStore, Status, StatusStore, Transition};
    let client = sqs().await;
    let store = RedisStore::new(
        testkit::test_redis().await.unwrap(),
        Duration::from_secs(60),
    );
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let create = |name: String| {
        let client = client.clone();
        async move {
            client
                .create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let dlq = create(format!("redrive-dlq-{tag}")).await;
    let main = create(format!("redrive-main-{tag}")).await;

    // A dead message (status dead in Redis, reason attribute) and a poison body.
    let dead = message(1);
    let fb = Some((dead.priority, dead.created_at));
    let gave_up = Transition {
        attempts: Some(5),
        last_error: Some("gave up".into()),
        ..Transition::default()
    };
    store
        .transition(
            &dead.account_id,
            &dead.message_id,
            Status::Dead,
            gave_up,
            fb,
        )
        .await
        .unwrap();
    let dlq_queue = SqsQueue::new(client.clone(), main.clone(), Some(dlq.clone()));
    dlq_queue
        .dead_letter(
            &dead.to_body(),
            Default::default(),
            "gave up after 5 attempts",
        )
        .await
        .unwrap();
    dlq_queue
        .dead_letter("{poison", Default::default(), "not valid JSON")
        .await
        .unwrap();

    let listed = shared::redrive::redrive(&client, &store, &dlq, &main, true, 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|m| m.reason == "gave up after 5 attempts")
    );
    assert!(listed.iter().all(|m| !m.revived));
    let depth = |q: String| {
        let client = client.clone();
        async move {
            let a = client
                .get_queue_attributes()
                .queue_url(q)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap_or_default();
            let n = |k| a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        }
    };
    assert_eq!(depth(main.clone()).await, 0, "a dry run moves nothing");
    assert_eq!(depth(dlq.clone()).await, 2);
    assert_eq!(
        store
            .get(&dead.account_id, &dead.message_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Status::Dead
    );

    // Let the dry run's short visibility pass, then move for real.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let moved = shared::redrive::redrive(&client, &store, &dlq, &main, false, 100)
        .await
        .unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(moved.iter().filter(|m| m.revived).count(), 1);
    assert_eq!(depth(dlq).await, 0);
    assert_eq!(depth(main.clone()).await, 2);
    let r = store
        .get(&dead.account_id, &dead.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, r.attempts), (Status::Queued, 0));
    let out = client
        .receive_message()
        .queue_url(&main)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    for m in out.messages.unwrap_or_default() {
        assert!(
            !m.message_attributes
                .unwrap_or_default()
                .contains_key("deadReason"),
            "the reason stays behind"
        );
    }
}
