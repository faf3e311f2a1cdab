//! Cancel (`DELETE /v1/messages/{id}`) and scheduled send (`sendAt`)
//! through the real stack. Each test uses its own account.

use anyhow::{Context, Result};
use integration_tests::{Stack, eventually, unique_account};
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn delete(stack: &Stack, account: Option<&str>, id: &str) -> Result<(u16, Value)> {
    let mut req = stack
        .http
        .delete(format!("{}/v1/messages/{id}", stack.producer_url));
    if let Some(a) = account {
        req = req.bearer_auth(stack.token(a));
    }
    let resp = req.send().await.context("DELETE /v1/messages/{id}")?;
    let status = resp.status().as_u16();
    Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
}

fn message(send_at: Option<OffsetDateTime>) -> Value {
    let mut v = json!({"recipientId": "fan_1", "content": "Hello!", "priority": "high"});
    if let Some(t) = send_at {
        v["sendAt"] = t.format(&Rfc3339).unwrap_or_default().into();
    }
    v
}

async fn post(stack: &Stack, account: &str, send_at: Option<OffsetDateTime>) -> Result<String> {
    let (status, body) = stack.post_message(account, &message(send_at)).await?;
    anyhow::ensure!(status == 202, "POST answered {status}: {body}");
    Ok(body["messageId"].as_str().context("messageId")?.to_owned())
}

async fn wait_status(
    stack: &Stack,
    account: &str,
    id: &str,
    want: &str,
    limit: Duration,
) -> Result<()> {
    eventually(&format!("{id} to be {want}"), limit, || async {
        let (_, v) = stack.message_status(account, id).await?;
        Ok((v["status"] == want).then_some(()))
    })
    .await
}

/// The stub's records of one message (its `Idempotency-Key` is the id).
async fn stub_calls(stack: &Stack, account: &str, id: &str) -> Result<Vec<Value>> {
    Ok(stack
        .stub_requests(account)
        .await?
        .into_iter()
        .filter(|r| r["idempotencyKey"] == id)
        .collect())
}

#[tokio::test]
async fn delete_answers_every_status_the_contract_names() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("cancel_codes");
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let id = post(&stack, &account, Some(later)).await?;
    let (_, view) = stack.message_status(&account, &id).await?;
    assert_eq!(view["status"], "scheduled", "{view}");

    assert_eq!(delete(&stack, None, &id).await?.0, 401);
    assert_eq!(delete(&stack, Some(&account), "not-a-uuid").await?.0, 400);
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(delete(&stack, Some(&account), &unknown).await?.0, 404);
    let other = unique_account("cancel_other");
    assert_eq!(delete(&stack, Some(&other), &id).await?.0, 404);

    let (status, view) = delete(&stack, Some(&account), &id).await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["recipientId"], "fan_1");
    assert_eq!(view["campaignId"], Value::Null);
    assert!(view["sendAt"].is_string(), "{view}");
    let (status, again) = delete(&stack, Some(&account), &id).await?;
    assert_eq!((status, &again["status"]), (200, &json!("cancelled")));

    // Sent: too late.
    let sent = post(&stack, &account, None).await?;
    wait_status(&stack, &account, &sent, "sent", Duration::from_secs(120)).await?;
    let (status, problem) = delete(&stack, Some(&account), &sent).await?;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("sent")
    );
    Ok(())
}

#[tokio::test]
async fn a_scheduled_message_reaches_the_stub_at_its_send_at() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("sched");
    let send_at = OffsetDateTime::now_utc() + Duration::from_secs(5);
    let id = post(&stack, &account, Some(send_at)).await?;
    let (_, view) = stack.message_status(&account, &id).await?;
    assert_eq!(view["status"], "scheduled", "{view}");
    let call = eventually(
        "the scheduled message at the stub",
        Duration::from_secs(60),
        || async { Ok(stub_calls(&stack, &account, &id).await?.into_iter().next()) },
    )
    .await?;
    let due_us = (send_at.unix_timestamp_nanos() / 1000) as i64;
    // The stub's system clock at arrival, like the send_at read here.
    let at_us = call["receivedAtWallUs"]
        .as_i64()
        .context("receivedAtWallUs")?;
    let late_ms = (at_us - due_us) / 1000;
    println!("scheduled message reached the stub {late_ms} ms after its sendAt");
    assert!(at_us >= due_us, "{late_ms} ms: before its sendAt");
    assert!(late_ms <= 2000, "{late_ms} ms after its sendAt");
    wait_status(&stack, &account, &id, "sent", Duration::from_secs(30)).await?;
    Ok(())
}

#[tokio::test]
async fn a_cancelled_deferred_message_never_reaches_the_stub() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("cancel_deferred");
    // The first call is answered 429 with Retry-After: the account pauses,
    // and the next message is deferred without a call.
    stack
        .stub_fault(json!({"account": account, "kind": "status", "status": 429, "retryAfter": 15, "count": 1}))
        .await?;
    let first = post(&stack, &account, None).await?;
    wait_status(
        &stack,
        &account,
        &first,
        "deferred",
        Duration::from_secs(120),
    )
    .await?;
    let second = post(&stack, &account, None).await?;
    wait_status(
        &stack,
        &account,
        &second,
        "deferred",
        Duration::from_secs(60),
    )
    .await?;
    let (status, view) = delete(&stack, Some(&account), &second).await?;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("cancelled")),
        "{view}"
    );
    // The pause ends; the first goes, the cancelled one never does.
    wait_status(&stack, &account, &first, "sent", Duration::from_secs(90)).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(stub_calls(&stack, &account, &second).await?.is_empty());
    let (_, view) = stack.message_status(&account, &second).await?;
    assert_eq!(view["status"], "cancelled");
    assert!(
        stack.dlq_matching(&second).await?.is_empty(),
        "not dead-lettered"
    );
    Ok(())
}

/// Twenty messages due at once, cancelled at moments spread from a second
/// before to a second after they are due, while the consumer instances
/// claim and send them: no message whose DELETE answered 200 reaches the
/// stub, and every 409 is a message the stub received.
#[tokio::test]
async fn cancels_racing_the_consumers_never_let_a_cancelled_message_through() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("cancel_race");
    let due = OffsetDateTime::now_utc() + Duration::from_secs(6);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(post(&stack, &account, Some(due)).await?);
    }
    let mut deletes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (stack, account, id) = (stack.clone(), account.clone(), id.clone());
        let at = due - Duration::from_millis(1000) + Duration::from_millis(100 * i as u64);
        deletes.push(tokio::spawn(async move {
            let wait = (at - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            let (status, _) = delete(&stack, Some(&account), &id).await?;
            anyhow::Ok((id, status))
        }));
    }
    let mut outcomes = Vec::new();
    for d in deletes {
        outcomes.push(d.await??);
    }
    for (id, status) in &outcomes {
        let want = if *status == 200 { "cancelled" } else { "sent" };
        wait_status(&stack, &account, id, want, Duration::from_secs(120)).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut cancelled, mut late) = (0, 0);
    for (id, status) in &outcomes {
        let calls = stub_calls(&stack, &account, id).await?;
        match status {
            200 => {
                assert!(
                    calls.is_empty(),
                    "{id}: cancelled (200), yet the stub got it"
                );
                cancelled += 1;
            }
            409 => {
                assert_eq!(calls.len(), 1, "{id}: 409, so it went, once");
                late += 1;
            }
            other => panic!("{id}: DELETE answered {other}"),
        }
    }
    println!("{cancelled} cancelled, {late} too late");
    assert!(cancelled > 0, "the early cancels win");
    Ok(())
}
