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
            "recipientId",
            "content",
            "priority",
            "mediaUrls[0]",
            "sendAt"
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
            recipient_id: Some("fan_1".into()),
            campaign_id: None,
            send_at: None,
            slot_at: None,
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
async fn sample_event_delete_message_cancels_acct_1s_record() {
    let app = app();
    let sample = include_str!("../../../../events/apigw-delete-message.json");
    let raw: Value = serde_json::from_str(sample).unwrap();
    let id = MessageId::parse(raw["pathParameters"]["id"].as_str().unwrap()).unwrap();
    call(&app, event(sample)).await.problem(404);
    app.store.insert(
        "acct_1",
        StatusRecord {
            message_id: id,
            status: Status::Scheduled,
            priority: Priority::Medium,
            attempts: 0,
            created_at: OffsetDateTime::from_unix_timestamp(1_795_741_200).unwrap(),
            sent_at: None,
            upstream_message_id: None,
            last_error: None,
            recipient_id: Some("fan_1".into()),
            campaign_id: None,
            send_at: Some(OffsetDateTime::from_unix_timestamp(1_795_744_800).unwrap()),
            slot_at: None,
        },
    );
    let a = call(&app, event(sample)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "cancelled");
    assert_eq!(a.body["sendAt"], "2026-11-27T02:00:00Z");
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

#[tokio::test]
async fn sample_events_for_the_limits_routes_answer_as_documented() {
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-limits.json")),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"perMinute": 10, "burst": 10, "source": "default"})
    );
    let a = call(
        &app,
        event(include_str!(
            "../../../../events/apigw-put-account-limits.json"
        )),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"accountId": "acct_1", "perMinute": 120, "burst": 2, "source": "account"})
    );
    let a = call(
        &app,
        event(include_str!(
            "../../../../events/apigw-get-account-limits.json"
        )),
    )
    .await;
    assert_eq!(a.body["source"], "account");
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-get-limits.json")),
    )
    .await;
    assert_eq!(a.body["perMinute"], 120, "acct_1 sees its own limit");
    let a = call(
        &app,
        event(include_str!(
            "../../../../events/apigw-delete-account-limits.json"
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["source"], "default");
}

#[tokio::test]
async fn sample_events_for_the_campaign_routes_answer_as_documented() {
    use shared::campaign::{CampaignId, CampaignSpec, CampaignStore};
    use shared::message::{AccountId, Content, MediaUrls};
    let app = app();
    let a = call(
        &app,
        event(include_str!("../../../../events/apigw-post-campaign.json")),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(
        (a.body["accepted"].as_u64(), a.body["duplicates"].as_u64()),
        (Some(2), Some(1))
    );

    // The other samples name one campaign id: 404 until acct_1 has it.
    let sample = include_str!("../../../../events/apigw-get-campaign.json");
    let raw: Value = serde_json::from_str(sample).unwrap();
    let id = CampaignId::parse(raw["pathParameters"]["id"].as_str().unwrap()).unwrap();
    call(&app, event(sample)).await.problem(404);
    let spec = CampaignSpec {
        content: Content::parse("Hi!").unwrap(),
        priority: Priority::Low,
        media_urls: MediaUrls::default(),
        send_at: None,
    };
    let acct = AccountId::parse("acct_1").unwrap();
    app.store
        .create_campaign(&acct, &id, &spec, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let a = call(
        &app,
        event(include_str!(
            "../../../../events/apigw-post-campaign-recipients.json"
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["accepted"], 2);
    let a = call(&app, event(sample)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["counts"]["queued"], 2);
    let a = call(
        &app,
        event(include_str!(
            "../../../../events/apigw-get-campaign-messages.json"
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["messages"][0]["recipientId"], "fan_3");
    assert_eq!(a.body["nextCursor"], "1");
    let a = call(
        &app,
        event(include_str!(
            "../../../../events/apigw-delete-campaign.json"
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["counts"]["cancelled"], 2);
}
