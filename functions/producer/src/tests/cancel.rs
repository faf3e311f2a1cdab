//! `DELETE /v1/messages/{id}` (cancel) and `sendAt` (scheduled send).

use super::*;
use shared::store::StatusStore;

fn delete(account: &str, path: &str) -> Request {
    let auth = bearer(account);
    request(
        "DELETE",
        path,
        &[("authorization", auth.as_str())],
        Body::Empty,
    )
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn with_send_at(send_at: &str) -> Value {
    let mut v = valid();
    v["sendAt"] = send_at.into();
    v
}

/// Moves a stored record to `status`, as the consumer would.
fn set_status(app: &TestApp, id: &str, status: Status) {
    let id = MessageId::parse(id).unwrap();
    let mut r = app.store.record("acct_1", &id).unwrap();
    r.status = status;
    app.store.insert("acct_1", r);
}

// ---------------------------------------------------------------- cancel

#[tokio::test]
async fn cancel_answers_every_status_the_contract_names() {
    let app = app();
    // 200 for each cancellable status, with the view, status `cancelled`.
    for before in [Status::Scheduled, Status::Queued, Status::Deferred] {
        let posted = call(&app, post("acct_1", &valid())).await;
        let id = posted.body["messageId"].as_str().unwrap().to_owned();
        set_status(&app, &id, before);
        let path = format!("/v1/messages/{id}");
        let a = call(&app, delete("acct_1", &path)).await;
        assert_eq!(a.status, StatusCode::OK, "{before:?}: {}", a.body);
        assert_eq!(a.body["status"], "cancelled");
        assert_eq!(a.body["messageId"], id.as_str());
        assert_eq!(a.body["recipientId"], "fan_123");
        // Again: still 200, still cancelled; GET agrees.
        let again = call(&app, delete("acct_1", &path)).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body, a.body);
        assert_eq!(call(&app, get("acct_1", &path)).await.body, a.body);
    }
    // 409 once sending or settled; nothing changes.
    for late in [Status::Sending, Status::Sent, Status::Failed, Status::Dead] {
        let posted = call(&app, post("acct_1", &valid())).await;
        let id = posted.body["messageId"].as_str().unwrap().to_owned();
        set_status(&app, &id, late);
        let path = format!("/v1/messages/{id}");
        let a = call(&app, delete("acct_1", &path)).await;
        a.problem(409);
        assert!(
            a.body["detail"].as_str().unwrap().contains(late.as_str()),
            "{}",
            a.body
        );
        assert_eq!(
            call(&app, get("acct_1", &path)).await.body["status"],
            late.as_str()
        );
    }
    // 404 for an unknown id and for another account's; 400 for a non-UUID.
    let posted = call(&app, post("acct_1", &valid())).await;
    let id = posted.body["messageId"].as_str().unwrap().to_owned();
    let path = format!("/v1/messages/{id}");
    call(&app, delete("acct_2", &path)).await.problem(404);
    assert_eq!(
        call(&app, get("acct_1", &path)).await.body["status"],
        "queued"
    );
    let unknown = format!("/v1/messages/{}", MessageId::new());
    call(&app, delete("acct_1", &unknown)).await.problem(404);
    call(&app, delete("acct_1", "/v1/messages/nope"))
        .await
        .problem(400);
    // 401 without a token; 503 while Redis does not answer.
    call(&app, request("DELETE", &path, &[], Body::Empty))
        .await
        .problem(401);
    app.store.unreachable.store(true, Ordering::SeqCst);
    call(&app, delete("acct_1", &path)).await.problem(503);
    app.store.unreachable.store(false, Ordering::SeqCst);
    assert_eq!(
        call(&app, get("acct_1", &path)).await.body["status"],
        "queued"
    );
}

// ---------------------------------------------------------------- sendAt

#[tokio::test]
async fn a_scheduled_message_is_accepted_as_scheduled_and_shows_its_send_at() {
    let app = app();
    let send_at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let send_at = send_at.replace_nanosecond(0).unwrap();
    let a = call(&app, post("acct_1", &with_send_at(&rfc3339(send_at)))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "scheduled");
    let id = a.body["messageId"].as_str().unwrap().to_owned();
    let view = call(&app, get("acct_1", &format!("/v1/messages/{id}"))).await;
    assert_eq!(view.body["status"], "scheduled");
    assert_eq!(view.body["sendAt"], rfc3339(send_at));
    // It travels in the queue message.
    let sent = app.queue.sent.lock().unwrap();
    assert_eq!(sent[0].0.send_at, Some(send_at));
}

#[tokio::test]
async fn a_send_at_in_the_past_is_queued_and_one_too_far_ahead_is_400() {
    let app = app();
    let past = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let a = call(&app, post("acct_1", &with_send_at(&rfc3339(past)))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.body["status"], "queued");
    let queued = app.queue.count();
    let far = OffsetDateTime::now_utc() + Duration::from_secs(31 * 86_400);
    for bad in [rfc3339(far), "2026-12-24T18:00:00".into(), "soon".into()] {
        let a = call(&app, post("acct_1", &with_send_at(&bad))).await;
        assert_eq!(a.fields(), ["sendAt"], "{bad}");
    }
    // Listed with the other bad fields; nothing stored.
    let mut body = with_send_at(&rfc3339(far));
    body["content"] = "  ".into();
    assert_eq!(
        call(&app, post("acct_1", &body)).await.fields(),
        ["content", "sendAt"]
    );
    assert_eq!(app.queue.count(), queued, "nothing queued");
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_send_at_is_a_conflict() {
    let app = app();
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + Duration::from_secs(7200);
    let key = [("idempotency-key", "sched-1")];
    let first = call(&app, post_with("acct_1", &with_send_at(&rfc3339(t)), &key)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    // The same instant spelled with another offset is the same body.
    let same = (t.to_offset(time::macros::offset!(+2)))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let replay = call(&app, post_with("acct_1", &with_send_at(&same), &key)).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    assert_eq!(replay.body["messageId"], first.body["messageId"]);
    let other = rfc3339(t + Duration::from_secs(1));
    call(&app, post_with("acct_1", &with_send_at(&other), &key))
        .await
        .problem(409);
    let none = call(&app, post_with("acct_1", &valid(), &key)).await;
    none.problem(409);
    assert_eq!(app.queue.count(), 1);
    let id = MessageId::parse(first.body["messageId"].as_str().unwrap()).unwrap();
    let acct = shared::message::AccountId::parse("acct_1").unwrap();
    assert!(app.store.get(&acct, &id).await.unwrap().is_some());
}
