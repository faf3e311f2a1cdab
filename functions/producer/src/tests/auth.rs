//! Who is calling: no token, bad tokens, API Gateway authorizer claims (401).

use super::*;

// ---------------------------------------------------------------- 401

#[tokio::test]
async fn no_token_is_401_with_a_bare_bearer_challenge() {
    let app = app();
    for path in [
        "/v1/messages",
        "/v1/status",
        "/v1/messages/019ac2f4-5b6e-7c3a-9d1f-2e4b6a8c0d1e",
    ] {
        let method = if path == "/v1/messages" {
            "POST"
        } else {
            "GET"
        };
        let a = call(
            &app,
            request(
                method,
                path,
                &[("content-type", "application/json")],
                valid().to_string(),
            ),
        )
        .await;
        a.problem(401);
        assert_eq!(a.header(WWW_AUTHENTICATE), Some("Bearer"), "{path}");
    }
    for header in ["Basic dXNlcjpwdw==", "Bearer", "Bearer    ", "token"] {
        let a = call(
            &app,
            request(
                "GET",
                "/v1/status",
                &[("authorization", header)],
                Body::Empty,
            ),
        )
        .await;
        a.problem(401);
        assert_eq!(a.header(WWW_AUTHENTICATE), Some("Bearer"), "{header}");
    }
    assert_eq!(app.queue.count(), 0);
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_token() {
    let app = app();
    let expired = format!(
        "Bearer {}",
        shared::auth::sign(SECRET, "acct_1", now() - 7200, 3600).unwrap()
    );
    let other_key = format!(
        "Bearer {}",
        shared::auth::sign("other", "acct_1", now(), 3600).unwrap()
    );
    let bad_sub = format!(
        "Bearer {}",
        shared::auth::sign(SECRET, "a{b}", now(), 3600).unwrap()
    );
    let future = format!(
        "Bearer {}",
        shared::auth::sign(SECRET, "acct_1", now() + 3600, 3600).unwrap()
    );
    for (name, header) in [
        ("garbage", "Bearer not-a-jwt".to_owned()),
        ("expired", expired),
        ("signature", other_key),
        ("sub", bad_sub),
        ("nbf", future),
    ] {
        let a = call(
            &app,
            request(
                "GET",
                "/v1/status",
                &[("authorization", &header)],
                Body::Empty,
            ),
        )
        .await;
        a.problem(401);
        let challenge = a.header(WWW_AUTHENTICATE).unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains("error_description=\""),
            "{name}: {challenge}"
        );
    }
    let a = call(
        &app,
        request(
            "GET",
            "/v1/status",
            &[("authorization", "Bearer x.y.z")],
            Body::Empty,
        ),
    )
    .await;
    a.problem(401);
}

#[tokio::test]
async fn authorizer_claims_name_the_account() {
    let app = app();
    // No Authorization header at all: API Gateway already verified the token.
    let headers = json!({"content-type": "application/json"});
    let req = apigw_event(
        "POST",
        "/v1/messages",
        Some("acct_claims"),
        headers,
        Some(&valid().to_string()),
    );
    let a = call(&app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(
        app.queue.sent.lock().unwrap()[0].0.account_id.as_str(),
        "acct_claims"
    );

    // Claims win over a token for another account.
    let headers =
        json!({"content-type": "application/json", "authorization": bearer("acct_token")});
    let req = apigw_event(
        "POST",
        "/v1/messages",
        Some("acct_claims"),
        headers,
        Some(&valid().to_string()),
    );
    assert_eq!(call(&app, req).await.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.queue.sent.lock().unwrap()[1].0.account_id.as_str(),
        "acct_claims"
    );

    // A sub that cannot be an account id is refused.
    let req = apigw_event("GET", "/v1/status", Some("a/b"), json!({}), None);
    let a = call(&app, req).await;
    a.problem(401);
    assert!(
        a.header(WWW_AUTHENTICATE)
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn requiring_the_authorizer_refuses_locally_verified_tokens() {
    let app = app_with(Settings {
        require_authorizer: true,
        ..settings()
    });
    let a = call(&app, post("acct_1", &valid())).await;
    a.problem(401);
    assert_eq!(a.header(WWW_AUTHENTICATE), Some("Bearer"));
    let req = apigw_event(
        "POST",
        "/v1/messages",
        Some("acct_1"),
        json!({"content-type": "application/json"}),
        Some(&valid().to_string()),
    );
    assert_eq!(call(&app, req).await.status, StatusCode::ACCEPTED);
}
