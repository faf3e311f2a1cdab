//! Per-account limits through the real stack: the admin routes, and an
//! account with its own limit delivered beside one at the defaults.

use anyhow::Result;
use integration_tests::{
    Stack, curve_violations, eventually, nearest_rank, queue_body, unique_account,
};
use serde_json::{Value, json};
use std::time::Duration;

/// Sends `n` messages of `account` through the queue and returns the stub's
/// arrival times (µs) once all have arrived 2xx.
async fn deliver(stack: &Stack, account: &str, n: usize, limit: Duration) -> Result<Vec<u64>> {
    let bodies: Vec<(String, String)> = (0..n)
        .map(|_| {
            let id = uuid::Uuid::now_v7().to_string();
            (
                queue_body(account, &id, "medium", "fan_1"),
                account.to_owned(),
            )
        })
        .collect();
    stack.enqueue_bodies(&bodies).await?;
    eventually(&format!("{n} sends of {account}"), limit, || async {
        let ok = stack
            .stub_requests(account)
            .await?
            .iter()
            .filter(|r| {
                r["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            })
            .count();
        Ok((ok >= n).then_some(()))
    })
    .await?;
    let all = stack.stub_requests(account).await?;
    let violations = all.iter().filter(|r| r["violation"] == true).count();
    let duplicates = all.iter().filter(|r| r["duplicate"] == true).count();
    assert_eq!(
        violations, 0,
        "{account}: the stub counted limit violations"
    );
    assert_eq!(duplicates, 0, "{account}: a message reached the stub twice");
    let mut times: Vec<u64> = all
        .iter()
        .filter_map(|r| r["receivedAtUs"].as_u64())
        .collect();
    times.sort_unstable();
    Ok(times)
}

/// Share of the budget `burst + rate * span / 60` the sends used.
fn used(times: &[u64], per_minute: f64, burst: f64) -> f64 {
    let span = (times[times.len() - 1] - times[0]) as f64 / 1e6;
    times.len() as f64 / (burst + per_minute * span / 60.0)
}

/// One account at 30/min burst 5 (its own limit, the contract's example),
/// one at the defaults (600/min burst 10 in the stack tests), sending at
/// once: each keeps its own curve, and each uses at least 90 % of its own
/// budget.
///
/// Why a burst of 5: a message deferred through SQS comes back up to a
/// second or two after its slot (visibility counts whole seconds, the
/// poller batches), and a bucket whose burst is about one second of its
/// rate or less loses the tokens that accrue meanwhile. 120/min burst 2
/// measured 84.6 % of its budget on one run of an earlier form of this
/// test; a burst of 5 at 30/min holds ten seconds of lateness.
#[tokio::test]
async fn an_account_with_its_own_limit_keeps_its_own_curve() -> Result<()> {
    let stack = Stack::from_env();
    let own = unique_account("own_limit");
    let default = unique_account("default_limit");
    let (own_rate, own_burst) = (30.0, 5.0);
    stack.set_account_limit(&own, 30, 5).await?;
    // (15 - 5) at one per two seconds: 20 s; (120 - burst) at the default: ~11 s.
    let (n_own, n_default) = (15, 120);
    let limit = Duration::from_secs(120);
    let (a, b) = tokio::join!(
        deliver(&stack, &own, n_own, limit),
        deliver(&stack, &default, n_default, limit)
    );
    stack.clear_account_limit(&own).await?;
    let (a, b) = (a?, b?);
    let tol = Duration::from_millis(50);
    assert_eq!(
        curve_violations(&a, own_rate, own_burst, tol),
        0,
        "own curve"
    );
    // And it was held to its own curve, not the default one: at 600/min
    // burst 10 all 15 could have gone within 0.5 s.
    let span_own = (a[a.len() - 1] - a[0]) as f64 / 1e6;
    assert!(
        span_own >= 19.0,
        "own limit ignored: {n_own} sends in {span_own:.1}s"
    );
    assert_eq!(
        curve_violations(&b, stack.rate_per_minute, stack.burst, tol),
        0,
        "default curve"
    );
    let (ua, ub) = (
        used(&a, own_rate, own_burst),
        used(&b, stack.rate_per_minute, stack.burst),
    );
    eprintln!(
        "own 30/min burst 5: {n_own} sends, {:.1}% of its budget; default: {n_default} sends, {:.1}%",
        ua * 100.0,
        ub * 100.0
    );
    assert!(
        ua >= 0.90,
        "own limit: only {:.1}% of its budget",
        ua * 100.0
    );
    assert!(ub >= 0.90, "default: only {:.1}% of its budget", ub * 100.0);
    Ok(())
}

async fn call(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    token: Option<String>,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = stack
        .http
        .request(method, format!("{}{path}", stack.producer_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Every route and status the limits routes answer, through the stack.
#[tokio::test]
async fn limits_routes_answer_every_status() -> Result<()> {
    use reqwest::Method;
    let stack = Stack::from_env();
    let acct = unique_account("limits_routes");
    let path = format!("/v1/admin/accounts/{acct}/limits");
    let admin = || Some(stack.admin_token("t_ops"));
    let user = || Some(stack.token(&acct));

    let (s, v) = call(&stack, Method::GET, "/v1/limits", user(), None).await?;
    assert_eq!(s, 200);
    assert_eq!(v["source"], "default");
    assert_eq!(v["perMinute"].as_f64(), Some(stack.rate_per_minute));
    assert_eq!(
        call(&stack, Method::GET, "/v1/limits", None, None).await?.0,
        401
    );

    // 401 without a token, 403 without the scope: nothing stored.
    let body = json!({"perMinute": 120, "burst": 2});
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let (s, _) = call(&stack, m.clone(), &path, None, Some(body.clone())).await?;
        assert_eq!(s, 401, "{m}");
        let (s, v) = call(&stack, m.clone(), &path, user(), Some(body.clone())).await?;
        assert_eq!(s, 403, "{m}: {v}");
        assert_eq!(v["status"], 403);
    }
    // 400: every bad field, the account id among them.
    let (s, v) = call(
        &stack,
        Method::PUT,
        &path,
        admin(),
        Some(json!({"perMinute": 0, "burst": 5000, "x": 1})),
    )
    .await?;
    assert_eq!(s, 400);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["x", "perMinute", "burst"]);
    let long = format!("/v1/admin/accounts/{}/limits", "a".repeat(200));
    let (s, v) = call(&stack, Method::GET, &long, admin(), None).await?;
    assert_eq!(
        (s, v["errors"][0]["field"].as_str()),
        (400, Some("accountId"))
    );
    let (s, _) = call(&stack, Method::GET, "/v1/limits", user(), None).await?;
    assert_eq!(s, 200);

    // 200: set, read by the admin and by the account itself, cleared.
    let (s, v) = call(&stack, Method::PUT, &path, admin(), Some(body)).await?;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"accountId": acct, "perMinute": 120, "burst": 2, "source": "account"})
    );
    let (s, v) = call(&stack, Method::GET, &path, admin(), None).await?;
    assert_eq!((s, v["source"].as_str()), (200, Some("account")));
    let (_, v) = call(&stack, Method::GET, "/v1/limits", user(), None).await?;
    assert_eq!(
        v,
        json!({"perMinute": 120, "burst": 2, "source": "account"})
    );
    let (s, v) = call(&stack, Method::DELETE, &path, admin(), None).await?;
    assert_eq!((s, v["source"].as_str()), (200, Some("default")));
    let (s, _) = call(&stack, Method::DELETE, &path, admin(), None).await?;
    assert_eq!(s, 200, "DELETE is idempotent");
    let (_, v) = call(&stack, Method::GET, "/v1/limits", user(), None).await?;
    assert_eq!(v["source"], "default");
    Ok(())
}

/// A measurement, not part of `make test`: how evenly a backlog deferred
/// through the queue goes out on the local stack. One account at 60/min
/// burst 5 (its own limit: a bucket that keeps its token for seconds, so
/// its messages are deferred through SQS rather than waited for in
/// process) with 40 messages at once. Each send after the burst is set
/// against a one-a-second grid anchored at the earliest of them: how far
/// behind the grid a send goes is how late it came back for its slot
/// (whole-second visibility, the poller, the invocation). Run with
/// `cargo test -p integration-tests --test stack limits::a_deferred_backlog -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: the figures are printed"]
async fn a_deferred_backlog_against_its_ideal_curve() -> Result<()> {
    let stack = Stack::from_env();
    let account = unique_account("lateness");
    let (rate, burst, n) = (60.0, 5.0, 40usize);
    stack.set_account_limit(&account, 60, 5).await?;
    let times = deliver(&stack, &account, n, Duration::from_secs(150)).await;
    stack.clear_account_limit(&account).await?;
    let times = times?;
    assert_eq!(
        curve_violations(&times, rate, burst, Duration::from_millis(50)),
        0
    );
    let interval_us = 60e6 / rate;
    // The last 30 sends: past the burst and the first deferrals.
    let tail: Vec<f64> = times
        .iter()
        .enumerate()
        .skip(n - 30)
        .map(|(k, &t)| t as f64 - k as f64 * interval_us)
        .collect();
    let anchor = tail.iter().copied().fold(f64::INFINITY, f64::min);
    let mut late: Vec<f64> = tail.iter().map(|t| (t - anchor) / 1e6).collect();
    late.sort_by(f64::total_cmp);
    let pick = |q: f64| nearest_rank(&late, q);
    eprintln!(
        "{n} sends at 60/min burst 5: the last 30 behind a one-a-second grid p50 {:.3} s, p90 {:.3} s, max {:.3} s; {:.1}% of the budget",
        pick(0.5),
        pick(0.9),
        pick(1.0),
        used(&times, rate, burst) * 100.0
    );
    Ok(())
}
