//! `GET /v1/limits` and `GET|PUT|DELETE /v1/admin/accounts/{accountId}/limits`.

use super::*;
use shared::auth::{ADMIN_SCOPE, sign_with_scope};
use shared::limiter::AccountLimit;

const ADMIN_PATH: &str = "/v1/admin/accounts/acct_9/limits";

fn scoped(sub: &str, scope: &str) -> String {
    format!(
        "Bearer {}",
        sign_with_scope(SECRET, sub, Some(scope), now(), 3600).unwrap()
    )
}

/// An admin request with a token carrying `scope`.
fn admin(method: &str, path: &str, scope: &str, body: Option<&str>) -> Request {
    let auth = scoped("ops_1", scope);
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    request(
        method,
        path,
        &headers,
        body.map_or(Body::Empty, |b| Body::Text(b.to_owned())),
    )
}

fn put(body: &str) -> Request {
    admin("PUT", ADMIN_PATH, ADMIN_SCOPE, Some(body))
}

#[tokio::test]
async fn the_caller_sees_the_defaults_then_its_own_limit() {
    let app = app();
    let a = call(&app, get("acct_9", "/v1/limits")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"perMinute": 10, "burst": 10, "source": "default"})
    );
    let a = call(&app, put(r#"{"perMinute": 120, "burst": 2}"#)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"accountId": "acct_9", "perMinute": 120, "burst": 2, "source": "account"})
    );
    let a = call(&app, get("acct_9", "/v1/limits")).await;
    assert_eq!(
        a.body,
        json!({"perMinute": 120, "burst": 2, "source": "account"})
    );
    // Another account keeps the defaults; the caller's status shows its own.
    let other = call(&app, get("acct_1", "/v1/limits")).await;
    assert_eq!(other.body["source"], "default");
    let status = call(&app, get("acct_9", "/v1/status")).await;
    assert_eq!(status.body["bucket"]["perMinute"], 120.0);
    assert_eq!(status.body["bucket"]["burst"], 2.0);
    assert_eq!(status.body["bucket"]["tokens"], 2.0, "capped at the burst");
}

#[tokio::test]
async fn an_admin_reads_sets_and_clears_an_accounts_limit() {
    let app = app();
    let a = call(&app, admin("GET", ADMIN_PATH, ADMIN_SCOPE, None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["source"], "default");
    call(&app, put(r#"{"perMinute": 600, "burst": 1000}"#)).await;
    let a = call(&app, admin("GET", ADMIN_PATH, ADMIN_SCOPE, None)).await;
    assert_eq!(
        a.body,
        json!({"accountId": "acct_9", "perMinute": 600, "burst": 1000, "source": "account"})
    );
    let a = call(&app, admin("DELETE", ADMIN_PATH, ADMIN_SCOPE, None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"accountId": "acct_9", "perMinute": 10, "burst": 10, "source": "default"})
    );
    assert!(app.buckets.limits.lock().unwrap().is_empty());
    // DELETE is idempotent: again, the same answer.
    let again = call(&app, admin("DELETE", ADMIN_PATH, ADMIN_SCOPE, None)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, a.body);
}

#[tokio::test]
async fn the_admin_routes_need_the_admin_scope() {
    let app = app();
    for scope in ["", "messages:read", "messages:administrator", "admin"] {
        for (method, body) in [
            ("GET", None),
            ("PUT", Some(r#"{"perMinute": 1, "burst": 1}"#)),
            ("DELETE", None),
        ] {
            let a = call(&app, admin(method, ADMIN_PATH, scope, body)).await;
            let p = a.problem(403);
            assert!(p["detail"].as_str().unwrap().contains(ADMIN_SCOPE));
            assert_eq!(
                a.header(WWW_AUTHENTICATE),
                Some("Bearer error=\"insufficient_scope\", scope=\"messages:admin\"")
            );
        }
    }
    // A plain token too, and nothing was stored.
    call(&app, get("acct_9", ADMIN_PATH)).await.problem(403);
    assert!(app.buckets.limits.lock().unwrap().is_empty());
    // The scope among others is enough.
    let a = call(
        &app,
        admin("GET", ADMIN_PATH, "messages:read messages:admin", None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn the_admin_routes_need_a_token() {
    let app = app();
    for method in ["GET", "PUT", "DELETE"] {
        let a = call(&app, request(method, ADMIN_PATH, &[], Body::Empty)).await;
        a.problem(401);
    }
    call(&app, request("GET", "/v1/limits", &[], Body::Empty))
        .await
        .problem(401);
}

#[tokio::test]
async fn behind_the_authorizer_the_scope_claim_is_checked_again() {
    let app = app();
    let event = |scope: Option<&str>| {
        let mut v: Value = serde_json::from_str(include_str!(
            "../../../../events/apigw-get-account-limits.json"
        ))
        .unwrap();
        match scope {
            Some(s) => v["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] = json!(s),
            None => {
                v["requestContext"]["authorizer"]["jwt"]["claims"]
                    .as_object_mut()
                    .unwrap()
                    .remove("scope");
            }
        }
        lambda_http::request::from_str(&v.to_string()).unwrap()
    };
    assert_eq!(
        call(&app, event(Some(ADMIN_SCOPE))).await.status,
        StatusCode::OK
    );
    call(&app, event(Some("messages:read"))).await.problem(403);
    call(&app, event(None)).await.problem(403);
}

#[tokio::test]
async fn a_bad_put_lists_every_bad_field_and_stores_nothing() {
    let app = app();
    let a = call(
        &app,
        put(r#"{"perMinute": 0, "burst": 1001, "extra": true}"#),
    )
    .await;
    assert_eq!(a.fields(), ["extra", "perMinute", "burst"]);
    let a = call(&app, put(r#"{"perMinute": 601, "burst": 2.5}"#)).await;
    assert_eq!(a.fields(), ["perMinute", "burst"]);
    let a = call(&app, put(r#"{}"#)).await;
    assert_eq!(a.fields(), ["perMinute", "burst"]);
    let a = call(&app, put(r#"{"perMinute": "10", "burst": null}"#)).await;
    assert_eq!(a.fields(), ["perMinute", "burst"]);
    // A bad account id is listed with the body's fields.
    let bad_id = "/v1/admin/accounts/a%7Bb%7D/limits";
    let a = call(
        &app,
        admin(
            "PUT",
            bad_id,
            ADMIN_SCOPE,
            Some(r#"{"perMinute": 0, "burst": 1}"#),
        ),
    )
    .await;
    assert_eq!(a.fields(), ["accountId", "perMinute"]);
    call(&app, put("[1]")).await.problem(400);
    call(&app, put("{")).await.problem(400);
    // Not JSON: 415; too large: 413.
    let auth = scoped("ops_1", ADMIN_SCOPE);
    let text = request(
        "PUT",
        ADMIN_PATH,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "text/plain"),
        ],
        "perMinute=1",
    );
    call(&app, text).await.problem(415);
    let big = format!(
        r#"{{"perMinute": 1, "burst": 1, "x": "{}"}}"#,
        "a".repeat(300_000)
    );
    call(&app, put(&big)).await.problem(413);
    assert!(app.buckets.limits.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_account_id_is_400_on_every_method() {
    let app = app();
    for (method, body) in [("GET", None), ("DELETE", None)] {
        let a = call(
            &app,
            admin(
                method,
                "/v1/admin/accounts/a%7Bb%7D/limits",
                ADMIN_SCOPE,
                body,
            ),
        )
        .await;
        assert_eq!(a.fields(), ["accountId"]);
    }
}

#[tokio::test]
async fn limits_routes_are_503_when_redis_does_not_answer() {
    let app = app();
    app.buckets
        .limits
        .lock()
        .unwrap()
        .insert("acct_9".into(), AccountLimit::new(60, 2).unwrap());
    app.buckets.fail.store(true, Ordering::SeqCst);
    let a = call(&app, get("acct_9", "/v1/limits")).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(r#"{"perMinute": 1, "burst": 1}"#)),
        ("DELETE", None),
    ] {
        call(&app, admin(method, ADMIN_PATH, ADMIN_SCOPE, body))
            .await
            .problem(503);
    }
    app.buckets.fail.store(false, Ordering::SeqCst);
    assert_eq!(
        app.buckets
            .limits
            .lock()
            .unwrap()
            .get("acct_9")
            .map(|l| l.per_minute()),
        Some(60),
        "nothing changed"
    );
}
