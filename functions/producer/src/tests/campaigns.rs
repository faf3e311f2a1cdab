//! Campaigns: `POST /v1/campaigns`, `POST /v1/campaigns/{id}/recipients`,
//! `GET` and `DELETE /v1/campaigns/{id}`, `GET /v1/campaigns/{id}/messages`.

use super::*;
use std::collections::HashSet;

fn send(method: &str, account: &str, path: &str, body: &Value, extra: &[(&str, &str)]) -> Request {
    let auth = bearer(account);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    request(method, path, &headers, body.to_string())
}

fn create(account: &str, body: &Value) -> Request {
    send("POST", account, "/v1/campaigns", body, &[])
}

fn delete(account: &str, path: &str) -> Request {
    let auth = bearer(account);
    request(
        "DELETE",
        path,
        &[("authorization", auth.as_str())],
        Body::Empty,
    )
}

fn campaign(recipients: &[&str]) -> Value {
    json!({"content": "Hi!", "priority": "low", "mediaUrls": ["https://cdn.example.com/a.jpg"], "recipientIds": recipients})
}

/// The recipients of every message the queue took, in order.
fn enqueued_recipients(app: &TestApp) -> Vec<String> {
    app.queue
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(m, _)| m.recipient_id.as_str().to_owned())
        .collect()
}

async fn created(app: &TestApp, account: &str, recipients: &[&str]) -> String {
    let a = call(app, create(account, &campaign(recipients))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    a.body["campaignId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_campaign_is_one_message_per_distinct_recipient() {
    let app = app();
    let a = call(&app, create("acct_1", &campaign(&["f1", "f2", "f1"]))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["campaignId"].as_str().unwrap();
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["accepted"], 2);
    assert_eq!(a.body["duplicates"], 1);
    assert_eq!(
        a.header(LOCATION),
        Some(format!("/v1/campaigns/{id}").as_str())
    );
    assert_eq!(enqueued_recipients(&app), ["f1", "f2"]);
    // In tens: two messages, one batch call.
    assert_eq!(app.queue.batch_calls.load(Ordering::SeqCst), 1);

    // Each message is a message: its view names the campaign and recipient.
    let sent = app.queue.sent.lock().unwrap().clone();
    let (m, _) = &sent[0];
    assert_eq!(m.content.as_str(), "Hi!");
    assert_eq!(m.priority, Priority::Low);
    let view = call(
        &app,
        get("acct_1", &format!("/v1/messages/{}", m.message_id)),
    )
    .await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["campaignId"], id);
    assert_eq!(view.body["recipientId"], "f1");
    assert_eq!(view.body["status"], "queued");
    assert_eq!(view.body["sendAt"], Value::Null);

    // GET: counts and an estimate.
    let g = call(&app, get("acct_1", &format!("/v1/campaigns/{id}"))).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.body);
    assert_eq!(g.body["campaignId"], id);
    assert_eq!(g.body["priority"], "low");
    assert_eq!(g.body["total"], 2);
    assert_eq!(g.body["counts"]["queued"], 2);
    assert_eq!(g.body["counts"]["cancelled"], 0);
    assert_eq!(g.body["sendAt"], Value::Null);
    assert!(g.body["estimatedCompletionAt"].is_string(), "{}", g.body);
    assert!(g.body["createdAt"].is_string());
}

#[tokio::test]
async fn recipients_are_added_once_across_calls() {
    let app = app();
    let id = created(&app, "acct_1", &["f1", "f2"]).await;
    let path = format!("/v1/campaigns/{id}/recipients");
    let a = call(
        &app,
        send(
            "POST",
            "acct_1",
            &path,
            &json!({"recipientIds": ["f2", "f3", "f3", "f4"]}),
            &[],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(
        (a.body["accepted"].as_u64(), a.body["duplicates"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(a.body["campaignId"], id.as_str());
    // The same call again (a client's retry): nothing new.
    let again = call(
        &app,
        send(
            "POST",
            "acct_1",
            &path,
            &json!({"recipientIds": ["f2", "f3", "f3", "f4"]}),
            &[],
        ),
    )
    .await;
    assert_eq!(
        (
            again.body["accepted"].as_u64(),
            again.body["duplicates"].as_u64()
        ),
        (Some(0), Some(4))
    );
    assert_eq!(enqueued_recipients(&app), ["f1", "f2", "f3", "f4"]);
    let g = call(&app, get("acct_1", &format!("/v1/campaigns/{id}"))).await;
    assert_eq!(g.body["total"], 4);
    // The added messages share the campaign's content.
    assert!(
        app.queue
            .sent
            .lock()
            .unwrap()
            .iter()
            .all(|(m, _)| m.content.as_str() == "Hi!")
    );
}

#[tokio::test]
async fn bad_bodies_list_each_bad_recipient_by_index_and_store_nothing() {
    let app = app();
    let a = call(
        &app,
        create(
            "acct_1",
            &json!({"content": "", "recipientIds": ["ok", "no spaces", 3], "x": 1}),
        ),
    )
    .await;
    let mut fields = a.fields();
    fields.sort();
    assert_eq!(
        fields,
        ["content", "recipientIds[1]", "recipientIds[2]", "x"]
    );
    assert_eq!(app.queue.count(), 0);
    assert!(app.store.campaigns.lock().unwrap().is_empty());

    let many: Vec<String> = (0..1001).map(|i| format!("f{i}")).collect();
    let a = call(
        &app,
        create("acct_1", &json!({"content": "x", "recipientIds": many})),
    )
    .await;
    assert_eq!(a.fields(), ["recipientIds"]);

    let a = call(
        &app,
        request(
            "POST",
            "/v1/campaigns",
            &[("authorization", bearer("acct_1").as_str())],
            "{}",
        ),
    )
    .await;
    a.problem(415);
    let a = call(
        &app,
        send("POST", "acct_1", "/v1/campaigns", &json!([1]), &[]),
    )
    .await;
    a.problem(400);
    let big = "x".repeat(300 * 1024);
    let a = call(
        &app,
        create("acct_1", &json!({"content": big, "recipientIds": ["f"]})),
    )
    .await;
    a.problem(413);
    let a = call(&app, request("POST", "/v1/campaigns", &[], "{}")).await;
    a.problem(401);
}

#[tokio::test]
async fn a_thousand_recipients_go_in_batches_of_ten() {
    let app = app();
    let many: Vec<String> = (0..1000).map(|i| format!("fan_{i}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    let a = call(&app, create("acct_1", &campaign(&names))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.body["accepted"], 1000);
    assert_eq!(app.queue.count(), 1000);
    assert_eq!(app.queue.batch_calls.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn the_same_idempotency_key_answers_the_first_answer() {
    let app = app();
    let body = campaign(&["f1", "f2"]);
    let first = call(
        &app,
        send(
            "POST",
            "acct_1",
            "/v1/campaigns",
            &body,
            &[("idempotency-key", "k1")],
        ),
    )
    .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = call(
        &app,
        send(
            "POST",
            "acct_1",
            "/v1/campaigns",
            &body,
            &[("idempotency-key", "k1")],
        ),
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(
        again.header(crate::handler::IDEMPOTENT_REPLAYED),
        Some("true")
    );
    assert_eq!(app.queue.count(), 2);
    let other = call(
        &app,
        send(
            "POST",
            "acct_1",
            "/v1/campaigns",
            &campaign(&["f3"]),
            &[("idempotency-key", "k1")],
        ),
    )
    .await;
    other.problem(409);
    // Another account's same key is its own.
    let b = call(
        &app,
        send(
            "POST",
            "acct_2",
            "/v1/campaigns",
            &body,
            &[("idempotency-key", "k1")],
        ),
    )
    .await;
    assert_eq!(b.status, StatusCode::ACCEPTED);
    assert_ne!(b.body["campaignId"], first.body["campaignId"]);
}

#[tokio::test]
async fn a_partial_queue_failure_is_503_and_a_retry_completes_it_without_doubles() {
    let app = app();
    app.queue
        .refuse_recipients
        .lock()
        .unwrap()
        .insert("f2".into());
    let body = campaign(&["f1", "f2", "f3"]);
    let key = [("idempotency-key", "retry-me")];
    let a = call(&app, send("POST", "acct_1", "/v1/campaigns", &body, &key)).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    assert_eq!(enqueued_recipients(&app), ["f1", "f3"]);

    app.queue.refuse_recipients.lock().unwrap().clear();
    let b = call(&app, send("POST", "acct_1", "/v1/campaigns", &body, &key)).await;
    assert_eq!(b.status, StatusCode::ACCEPTED, "{}", b.body);
    // The retry stored f2's message (made by the first attempt); the others
    // were already stored and are not sent again.
    assert_eq!(
        (b.body["accepted"].as_u64(), b.body["duplicates"].as_u64()),
        (Some(1), Some(2))
    );
    let sent = app.queue.sent.lock().unwrap().clone();
    let recipients: HashSet<&str> = sent.iter().map(|(m, _)| m.recipient_id.as_str()).collect();
    let ids: HashSet<MessageId> = sent.iter().map(|(m, _)| m.message_id).collect();
    assert_eq!((sent.len(), recipients.len(), ids.len()), (3, 3, 3));
    let id = b.body["campaignId"].as_str().unwrap();
    let g = call(&app, get("acct_1", &format!("/v1/campaigns/{id}"))).await;
    assert_eq!(g.body["total"], 3);

    // The same on the recipients route, retried with the same recipients.
    app.queue
        .refuse_recipients
        .lock()
        .unwrap()
        .insert("f5".into());
    let path = format!("/v1/campaigns/{id}/recipients");
    let more = json!({"recipientIds": ["f4", "f5"]});
    call(&app, send("POST", "acct_1", &path, &more, &[]))
        .await
        .problem(503);
    app.queue.refuse_recipients.lock().unwrap().clear();
    let ok = call(&app, send("POST", "acct_1", &path, &more, &[])).await;
    assert_eq!(
        (ok.body["accepted"].as_u64(), ok.body["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    let mut r = enqueued_recipients(&app);
    r.sort();
    assert_eq!(r, ["f1", "f2", "f3", "f4", "f5"]);
}

#[tokio::test]
async fn campaigns_are_invisible_to_other_accounts() {
    let app = app();
    let id = created(&app, "acct_1", &["f1"]).await;
    for req in [
        get("acct_2", &format!("/v1/campaigns/{id}")),
        get("acct_2", &format!("/v1/campaigns/{id}/messages")),
        delete("acct_2", &format!("/v1/campaigns/{id}")),
        send(
            "POST",
            "acct_2",
            &format!("/v1/campaigns/{id}/recipients"),
            &json!({"recipientIds": ["x"]}),
            &[],
        ),
    ] {
        call(&app, req).await.problem(404);
    }
    let unknown = uuid::Uuid::new_v4();
    call(&app, get("acct_1", &format!("/v1/campaigns/{unknown}")))
        .await
        .problem(404);
    call(&app, get("acct_1", "/v1/campaigns/not-a-uuid"))
        .await
        .problem(400);
    call(&app, delete("acct_1", "/v1/campaigns/not-a-uuid"))
        .await
        .problem(400);
    // Untouched by the other account's attempts.
    let g = call(&app, get("acct_1", &format!("/v1/campaigns/{id}"))).await;
    assert_eq!(
        (
            g.body["total"].as_u64(),
            g.body["counts"]["cancelled"].as_u64()
        ),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn pages_are_stable_filtered_and_checked() {
    let app = app();
    let id = created(&app, "acct_1", &["f1", "f2", "f3", "f4", "f5"]).await;
    let base = format!("/v1/campaigns/{id}/messages");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=2&cursor={c}"),
            None => format!("{base}?limit=2"),
        };
        let p = call(&app, get("acct_1", &path)).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        for m in p.body["messages"].as_array().unwrap() {
            assert_eq!(m["campaignId"], id.as_str());
            seen.push(m["recipientId"].as_str().unwrap().to_owned());
        }
        match p.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["f1", "f2", "f3", "f4", "f5"]);

    // Cancel one message; the filter finds it alone.
    let all = call(&app, get("acct_1", &base)).await;
    assert_eq!(all.body["messages"].as_array().unwrap().len(), 5);
    assert_eq!(all.body["nextCursor"], Value::Null);
    let m2 = all.body["messages"][1]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = call(&app, delete("acct_1", &format!("/v1/messages/{m2}"))).await;
    assert_eq!(c.status, StatusCode::OK);
    let f = call(&app, get("acct_1", &format!("{base}?status=cancelled"))).await;
    let msgs = f.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["messageId"], m2.as_str());
    let g = call(&app, get("acct_1", &format!("/v1/campaigns/{id}"))).await;
    assert_eq!(
        (
            g.body["counts"]["cancelled"].as_u64(),
            g.body["counts"]["queued"].as_u64()
        ),
        (Some(1), Some(4))
    );

    let bad = call(
        &app,
        get("acct_1", &format!("{base}?status=nope&limit=501&cursor=x")),
    )
    .await;
    assert_eq!(bad.fields(), ["status", "limit", "cursor"]);
}

#[tokio::test]
async fn delete_cancels_what_has_not_gone_and_closes_the_campaign() {
    let app = app();
    let id = created(&app, "acct_1", &["f1", "f2", "f3"]).await;
    let sent = app.queue.sent.lock().unwrap().clone();
    // f1 is being sent already: it stays.
    let mut r = app.store.record("acct_1", &sent[0].0.message_id).unwrap();
    r.status = Status::Sending;
    app.store.insert("acct_1", r);

    let path = format!("/v1/campaigns/{id}");
    let d = call(&app, delete("acct_1", &path)).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(d.body["counts"]["cancelled"], 2);
    assert_eq!(d.body["counts"]["sending"], 1);
    assert_eq!(d.body["total"], 3);
    for (m, _) in &sent[1..] {
        assert_eq!(
            app.store.record("acct_1", &m.message_id).unwrap().status,
            Status::Cancelled
        );
    }
    // Again: 200, the same counts.
    let again = call(&app, delete("acct_1", &path)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["counts"], d.body["counts"]);
    // No more recipients.
    let add = call(
        &app,
        send(
            "POST",
            "acct_1",
            &format!("{path}/recipients"),
            &json!({"recipientIds": ["f9"]}),
            &[],
        ),
    )
    .await;
    assert_eq!(
        add.problem(409)["type"]
            .as_str()
            .map(|t| t.ends_with("campaign-cancelled")),
        Some(true)
    );
    assert_eq!(app.queue.count(), 3);
}

#[tokio::test]
async fn a_scheduled_campaign_is_scheduled() {
    let app = app();
    let at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let at_s = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut body = campaign(&["f1"]);
    body["sendAt"] = at_s.clone().into();
    let a = call(&app, create("acct_1", &body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.body["status"], "scheduled");
    let id = a.body["campaignId"].as_str().unwrap();
    let g = call(&app, get("acct_1", &format!("/v1/campaigns/{id}"))).await;
    assert_eq!(g.body["counts"]["scheduled"], 1);
    assert!(g.body["sendAt"].is_string());
    // Not before sendAt.
    let eta = OffsetDateTime::parse(
        g.body["estimatedCompletionAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(eta >= at.replace_nanosecond(0).unwrap());
    let mut far = campaign(&["f1"]);
    far["sendAt"] = "2099-01-01T00:00:00Z".into();
    assert_eq!(
        call(&app, create("acct_1", &far)).await.fields(),
        ["sendAt"]
    );
}

#[tokio::test]
async fn an_unavailable_store_or_queue_is_503() {
    let app = app();
    let id = created(&app, "acct_1", &["f1"]).await;
    app.store.unreachable.store(true, Ordering::SeqCst);
    for req in [
        create("acct_1", &campaign(&["f2"])),
        get("acct_1", &format!("/v1/campaigns/{id}")),
        get("acct_1", &format!("/v1/campaigns/{id}/messages")),
        delete("acct_1", &format!("/v1/campaigns/{id}")),
    ] {
        let a = call(&app, req).await;
        a.problem(503);
        assert!(a.header(RETRY_AFTER).is_some());
    }
    app.store.unreachable.store(false, Ordering::SeqCst);
    app.queue.fail.store(true, Ordering::SeqCst);
    call(&app, create("acct_1", &campaign(&["f2"])))
        .await
        .problem(503);
    app.buckets.fail.store(true, Ordering::SeqCst);
    app.queue.fail.store(false, Ordering::SeqCst);
    call(&app, get("acct_1", &format!("/v1/campaigns/{id}")))
        .await
        .problem(503);
}
