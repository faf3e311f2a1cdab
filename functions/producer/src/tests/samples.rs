//! The sample events in `events/` answer as the README says.

use super::*;

// ---------------------------------------------------------------- sample events

fn event(json: &str) -> Request {
    lambda_http::request::from_str(json).unwrap()
}

#[tokio::test]
async fn sample_event_post_message_is_accepted_for_acct_1() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-post-message.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let sent = app.queue.sent.lock().unwrap();
    assert_eq!(sent[0].0.account_id.as_str(), "acct_1");
    assert_eq!(sent[0].0.priority, Priority::High);
    assert_eq!(
        sent[0].1.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
}

#[tokio::test]
async fn sample_event_post_invalid_lists_every_field() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-post-invalid.json")),
    )
    .await;
    assert_eq!(
        a.fields(),
        [
            "sendAt",
            "recipientId",
            "content",
            "priority",
            "mediaUrls[0]"
        ]
    );
}

#[tokio::test]
async fn sample_event_get_message_reads_acct_1s_record() {
    let app = app();
    let raw: Value =
        serde_json::from_str(include_str!("../../../../events/apigw-get-message.json")).unwrap();
    let id = MessageId::parse(raw["pathParameters"]["id"].as_str().unwrap()).unwrap();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-message.json")),
    )
    .await;
    a.problem(404);
    app.store.insert(
        "acct_1",
        StatusRecord {
            message_id: id,
            status: Status::Deferred,
            priority: Priority::Medium,
            attempts: 0,
            created_at: OffsetDateTime::from_unix_timestamp(1_795_741_200).unwrap(),
            sent_at: None,
            upstream_message_id: None,
            last_error: None,
        },
    );
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-message.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "deferred");
    assert_eq!(a.body["messageId"], id.to_string());
}

#[tokio::test]
async fn sample_event_get_status_answers() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-status.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["intakeEnabled"], true);
}
