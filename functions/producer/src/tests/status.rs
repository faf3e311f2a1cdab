//! `GET /v1/status`.

use super::*;

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_shows_queue_bucket_drain_and_intake() {
    let app = app();
    *app.queue.stats.lock().unwrap() = QueueStats {
        visible: 7,
        in_flight: 2,
        delayed: 1,
        dlq_depth: 3,
        oldest_age_secs: None,
    };
    let a = call(&app, get("acct_1", "/v1/status")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        a.body,
        json!({
            "queue": {"visible": 7, "inFlight": 2, "delayed": 1, "oldestMessageAgeSeconds": null, "dlqDepth": 3},
            "bucket": {"tokens": 7.25, "perMinute": 10.0, "burst": 10.0, "pausedForSeconds": 0},
            // 10 messages at 10 per minute.
            "estimatedDrainSeconds": 60,
            "intakeEnabled": true,
        })
    );
}

#[tokio::test]
async fn status_reports_a_pause_and_a_known_oldest_age() {
    let mut app = app();
    app.buckets.view.paused_for = Some(Duration::from_millis(2500));
    app.buckets.view.tokens = 0.0;
    app.queue.stats.lock().unwrap().oldest_age_secs = Some(42);
    let a = call(&app, get("acct_1", "/v1/status")).await;
    assert_eq!(a.body["bucket"]["pausedForSeconds"], 3);
    assert_eq!(a.body["queue"]["oldestMessageAgeSeconds"], 42);
    assert_eq!(a.body["estimatedDrainSeconds"], 0);
}

#[tokio::test]
async fn status_is_503_when_sqs_or_redis_do_not_answer() {
    let app = app();
    app.queue.fail.store(true, Ordering::SeqCst);
    let a = call(&app, get("acct_1", "/v1/status")).await;
    a.problem(503);
    assert!(a.header(RETRY_AFTER).is_some());
    app.queue.fail.store(false, Ordering::SeqCst);
    app.buckets.fail.store(true, Ordering::SeqCst);
    call(&app, get("acct_1", "/v1/status")).await.problem(503);
}
