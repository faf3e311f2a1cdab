//! `GET /v1/messages/{id}`.

use super::*;

// ---------------------------------------------------------------- GET message

#[tokio::test]
async fn an_account_reads_its_own_message_with_exactly_the_contract_fields() {
    let app = app();
    let posted = call(&app, post("acct_1", &valid())).await;
    let id = posted.body["messageId"].as_str().unwrap().to_owned();
    let a = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    let mut keys: Vec<&str> = a
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "campaignId",
            "createdAt",
            "lastError",
            "messageId",
            "priority",
            "recipientId",
            "sendAt",
            "sentAt",
            "status",
            "upstreamMessageId"
        ]
    );
    assert_eq!(a.body["recipientId"], "fan_123");
    assert_eq!(a.body["campaignId"], Value::Null);
    assert_eq!(a.body["sendAt"], Value::Null);
    assert_eq!(a.body["messageId"], id);
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["priority"], "high");
    assert_eq!(a.body["attempts"], 0);
    assert!(
        OffsetDateTime::parse(
            a.body["createdAt"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    assert_eq!(a.body["sentAt"], Value::Null);
    assert_eq!(a.body["upstreamMessageId"], Value::Null);
    assert_eq!(a.body["lastError"], Value::Null);
}

#[tokio::test]
async fn a_sent_message_shows_its_outcome() {
    let app = app();
    let id = MessageId::new();
    let t = OffsetDateTime::from_unix_timestamp(1_795_741_200).unwrap();
    app.store.insert(
        "acct_1",
        StatusRecord {
            message_id: id,
            status: Status::Sent,
            priority: Priority::Low,
            attempts: 2,
            created_at: t,
            sent_at: Some(t + Duration::from_secs(3)),
            upstream_message_id: Some("of_msg_9".into()),
            last_error: Some("upstream 503".into()),
            recipient_id: Some("fan_1".into()),
            campaign_id: None,
            send_at: None,
            slot_at: None,
        },
    );
    let a = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
    assert_eq!(
        a.body,
        json!({"messageId": id.to_string(), "status": "sent", "priority": "low", "attempts": 2,
               "createdAt": "2026-11-27T01:00:00Z", "sentAt": "2026-11-27T01:00:03Z",
               "upstreamMessageId": "of_msg_9", "lastError": "upstream 503",
               "recipientId": "fan_1", "campaignId": null, "sendAt": null})
    );
}

#[tokio::test]
async fn another_accounts_message_is_404_not_403() {
    let app = app();
    let posted = call(&app, post("acct_1", &valid())).await;
    let id = posted.body["messageId"].as_str().unwrap();
    let a = call(&app, get("acct_2", &format!("/v1/messages/{id}"))).await;
    a.problem(404);
    let a = call(
        &app,
        get("acct_1", &format!("/v1/messages/{}", MessageId::new())),
    )
    .await;
    a.problem(404);
}

#[tokio::test]
async fn a_malformed_message_id_is_400() {
    let app = app();
    for id in ["nope", "123", "019ac2f4-5b6e-7c3a-9d1f"] {
        let a = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
        assert!(
            a.problem(400)["type"]
                .as_str()
                .unwrap()
                .ends_with("invalid-message-id")
        );
    }
}
