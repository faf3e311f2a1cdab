//! The producer's HTTP API through the real stack: `cargo lambda watch`,
//! Redis and the SQS-compatible server. Each test uses its own account.

use anyhow::{Context, Result};
use integration_tests::{Stack, unique_account};
use serde_json::{Value, json};

/// A raw request's status, headers and JSON body (for header checks the
/// `Stack` helpers do not return).
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
    let resp = req.send().await.context("request to the producer")?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, headers, body))
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_valid_message_is_accepted_and_its_status_readable() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("prod_ok");
    let body = json!({"recipientId": "fan_123", "content": "Hello!", "priority": "high",
                      "mediaUrls": ["https://cdn.example.com/a.jpg"]});
    let (status, headers, accepted) = send(
        stack
            .http
            .post(format!("{}/v1/messages", stack.producer_url))
            .bearer_auth(stack.token(&account))
            .json(&body),
    )
    .await?;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(accepted["status"], "queued");
    let id = accepted["messageId"]
        .as_str()
        .context("messageId")?
        .to_owned();
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/v1/messages/{id}").as_str())
    );

    let (status, record) = stack.message_status(&account, &id).await?;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["messageId"], id.as_str());
    assert_eq!(record["priority"], "high");
    let known = ["queued", "deferred", "sending", "sent", "failed", "dead"];
    assert!(
        known.contains(&record["status"].as_str().unwrap_or_default()),
        "{record}"
    );
    for field in [
        "attempts",
        "createdAt",
        "sentAt",
        "upstreamMessageId",
        "lastError",
    ] {
        assert!(record.get(field).is_some(), "{field} missing from {record}");
    }

    // Another account cannot see it: 404, not 403.
    let (status, _) = stack
        .message_status(&unique_account("prod_other"), &id)
        .await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn an_invalid_message_is_400_listing_every_field() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("prod_bad");
    let body = json!({"recipientId": "fan 123!", "content": "   ", "priority": "urgent",
                      "mediaUrls": ["http://cdn.example.com/a.jpg"], "sendAt": "tomorrow"});
    let (status, headers, problem) = send(
        stack
            .http
            .post(format!("{}/v1/messages", stack.producer_url))
            .bearer_auth(stack.token(&account))
            .json(&body),
    )
    .await?;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(problem["status"], 400);
    for member in ["type", "title", "detail"] {
        assert!(
            problem[member].is_string(),
            "{member} missing from {problem}"
        );
    }
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .context("errors")?
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "content",
            "mediaUrls[0]",
            "priority",
            "recipientId",
            "sendAt"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn no_token_is_401_with_a_bearer_challenge() -> Result<()> {
    let stack = Stack::from_env();
    let (status, headers, problem) = send(
        stack
            .http
            .post(format!("{}/v1/messages", stack.producer_url))
            .json(&json!({"recipientId": "fan_123", "content": "Hello!"})),
    )
    .await?;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    assert_eq!(problem["status"], 401);

    let (status, headers, _) = send(
        stack
            .http
            .get(format!("{}/v1/status", stack.producer_url))
            .bearer_auth("not-a-jwt"),
    )
    .await?;
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").is_some_and(|v| v.contains("invalid_token")));
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("prod_idem");
    let post = |content: &str| {
        stack
            .http
            .post(format!("{}/v1/messages", stack.producer_url))
            .bearer_auth(stack.token(&account))
            .header("Idempotency-Key", "stack-key-1")
            .json(&json!({"recipientId": "fan_123", "content": content}))
    };
    let (first, _, a) = send(post("once")).await?;
    let (second, headers, b) = send(post("once")).await?;
    assert_eq!((first, second), (202, 202), "{a} {b}");
    assert_eq!(a["messageId"], b["messageId"]);
    assert_eq!(header(&headers, "idempotent-replayed"), Some("true"));
    let (conflict, _, c) = send(post("twice")).await?;
    assert_eq!(conflict, 409, "{c}");
    Ok(())
}

#[tokio::test]
async fn status_and_health_answer() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("prod_status");
    let (status, _, view) = send(
        stack
            .http
            .get(format!("{}/v1/status", stack.producer_url))
            .bearer_auth(stack.token(&account)),
    )
    .await?;
    assert_eq!(status, 200, "{view}");
    for field in [
        "visible",
        "inFlight",
        "delayed",
        "oldestMessageAgeSeconds",
        "dlqDepth",
    ] {
        assert!(
            view["queue"].get(field).is_some(),
            "queue.{field} missing from {view}"
        );
    }
    assert_eq!(
        view["bucket"]["perMinute"].as_f64(),
        Some(stack.rate_per_minute)
    );
    assert_eq!(view["bucket"]["burst"].as_f64(), Some(stack.burst));
    assert!(view["estimatedDrainSeconds"].is_u64(), "{view}");
    assert!(view["intakeEnabled"].is_boolean());

    let (status, _, health) =
        send(stack.http.get(format!("{}/health", stack.producer_url))).await?;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health,
        json!({"status": "ok", "checks": {"redis": "ok", "sqs": "ok"}})
    );
    Ok(())
}
