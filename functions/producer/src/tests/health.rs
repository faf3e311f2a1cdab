//! `GET /health`.

use super::*;

// ---------------------------------------------------------------- health

#[tokio::test]
async fn health_is_200_when_both_answer_and_needs_no_token() {
    let app = app();
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        a.body,
        json!({"status": "ok", "checks": {"redis": "ok", "sqs": "ok"}})
    );
}

#[tokio::test]
async fn health_is_503_naming_what_failed() {
    let app = app();
    app.store.ping_fails.store(true, Ordering::SeqCst);
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert!(a.problem(503)["detail"].as_str().unwrap().contains("redis"));
    assert!(!a.body["detail"].as_str().unwrap().contains("sqs"));
    assert_eq!(a.body["checks"], json!({"redis": "error", "sqs": "ok"}));

    app.store.ping_fails.store(false, Ordering::SeqCst);
    app.queue.fail.store(true, Ordering::SeqCst);
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert!(a.problem(503)["detail"].as_str().unwrap().contains("sqs"));
    assert_eq!(a.body["checks"], json!({"redis": "ok", "sqs": "error"}));

    app.store.ping_hangs.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let a = call(&app, request("GET", "/health", &[], Body::Empty)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        a.problem(503)["checks"],
        json!({"redis": "timeout", "sqs": "error"})
    );
    assert!(a.body["detail"].as_str().unwrap().contains("redis and sqs"));
}
