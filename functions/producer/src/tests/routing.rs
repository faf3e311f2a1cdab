//! Routing: 404, 405 with `Allow`, and the path prefixes that are tolerated.

use super::*;

// ---------------------------------------------------------------- routing

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = app();
    for path in ["/", "/v2/messages", "/v1/messages/a/b", "/healthz"] {
        call(&app, get("acct_1", path)).await.problem(404);
    }
    for (method, path, allow) in [
        ("GET", "/v1/messages", "POST"),
        (
            "PUT",
            "/v1/messages/019ac2f4-5b6e-7c3a-9d1f-2e4b6a8c0d1e",
            "GET, DELETE",
        ),
        ("POST", "/v1/status", "GET"),
        ("PUT", "/health", "GET"),
    ] {
        let a = call(&app, request(method, path, &[], Body::Empty)).await;
        a.problem(405);
        assert_eq!(a.header(ALLOW), Some(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn cargo_lambda_and_stage_prefixes_are_tolerated() {
    let app = app();
    let a = call(
        &app,
        request("GET", "/lambda-url/producer/health", &[], Body::Empty),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let auth = bearer("acct_1");
    let req = request(
        "POST",
        "/lambda-url/producer/v1/messages/",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        valid().to_string(),
    );
    let a = call(&app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    // Location is the API's own path, whatever prefix the request came through.
    assert!(a.header(LOCATION).unwrap().starts_with("/v1/messages/"));

    let mut staged: Value =
        serde_json::from_str(include_str!("../../../../events/apigw-get-status.json")).unwrap();
    staged["requestContext"]["stage"] = "prod".into();
    staged["rawPath"] = "/prod/v1/status".into();
    let a = call(
        &app,
        lambda_http::request::from_str(&staged.to_string()).unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}
