//! The simulation's own tests: it replays a seed exactly, the delivery path
//! keeps its guarantees in the small scenarios, and the checks can fail.

use sim::check::ScenarioReport;
use sim::scenario::{Deferral, Scenario};
use std::path::Path;

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn run(s: &Scenario) -> ScenarioReport {
    sim::run(s).unwrap_or_else(|e| panic!("{}: {e}", s.name))
}

/// The report without the one field that measures the machine.
fn replayable(mut r: ScenarioReport) -> String {
    r.wall_s = 0.0;
    serde_json::to_string_pretty(&r).unwrap_or_default()
}

fn assert_guarantees_hold(r: &ScenarioReport) {
    assert!(r.messages > 0, "{r:#?}");
    assert_eq!(r.violations, 0, "{r:#?}");
    assert_eq!(r.lost, 0, "{r:#?}");
    assert_eq!(r.duplicates, 0, "{r:#?}");
    assert_eq!(r.dlq_throttled_only, 0, "{r:#?}");
    assert_eq!(
        r.detail.pending, 0,
        "everything went out in the drain time: {r:#?}"
    );
    assert_eq!(r.detail.sent, r.messages, "{r:#?}");
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte() {
    let s = scenario("smoke");
    let a = replayable(run(&s));
    let b = replayable(run(&s));
    assert_eq!(a, b);
    let mut other = s.clone();
    other.seed += 1;
    assert_ne!(a, replayable(run(&other)), "another seed, another run");
}

#[test]
fn smoke_and_backlog_keep_every_guarantee() {
    for name in ["smoke", "backlog"] {
        assert_guarantees_hold(&run(&scenario(name)));
    }
}

/// Issue 15's "no message sent later than its ideal slot + 2 s (+ the
/// upstream's own latency)", for one backlogged account at 10/min: its
/// `medium` messages against a perfect bucket that keeps the same one-token
/// reserve (against one that spends it they are an interval, 6 s, behind).
#[test]
fn a_backlog_goes_out_within_two_seconds_of_its_ideal_slots() {
    let s = scenario("backlog");
    let r = run(&s);
    assert_guarantees_hold(&r);
    let upstream = (s.upstream.latency_ms + s.upstream.jitter_ms) as f64 / 1000.0;
    assert!(
        r.max_lateness_backlogged_reserve_s <= 2.0 + upstream,
        "{} s behind the ideal slots: {r:#?}",
        r.max_lateness_backlogged_reserve_s
    );
    assert!(r.max_lateness_backlogged_s > 6.0, "{r:#?}");
}

/// `high` may take the last token (no reserve), so one token too many in
/// the bucket shows as an eleventh message in the first burst.
#[test]
fn a_limiter_that_grants_one_extra_token_is_caught() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/backlog.toml");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.replace("messages = 200", "messages = 200\npriority = \"high\"");
    let mut s = Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_guarantees_hold(&run(&s));
    s.faults.limiter_extra_token = true;
    let r = run(&s);
    assert!(r.violations > 0, "{r:#?}");
    assert!(!r.passed());
}

/// With a short visibility timeout and a low `maxReceiveCount`, the naive
/// strategy (a throttled message is only reported as a batch item failure)
/// lets SQS's redrive dead-letter messages that only waited; the default
/// strategy defers them to their slot and re-enqueues before the redrive.
#[test]
fn naive_deferral_dead_letters_waiting_messages_and_spread_does_not() {
    let mut s = scenario("backlog");
    s.queue.visibility_timeout_s = 30;
    s.queue.max_receive_count = 5;
    s.consumer.deferral = Deferral::Naive;
    let naive = run(&s);
    assert!(naive.dlq_throttled_only > 0, "{naive:#?}");
    assert!(naive.detail.dead_by_redrive > 0, "{naive:#?}");

    s.consumer.deferral = Deferral::Spread;
    assert_guarantees_hold(&run(&s));
}

/// The naive baseline is slow, not stuck: with nothing to dead-letter its
/// retries, a backlog drains. It once asked the limiter as a newcomer, so
/// each retry took a new slot behind those of its own earlier denials; where
/// a full bucket is less than 2 s of tokens (600/min, burst 10: `make bench`'s
/// settings) no newcomer could ever jump the queue, and after the first
/// burst nothing was sent again.
#[test]
fn naive_deferral_drains_a_backlog_in_the_end() {
    let mut s = scenario("backlog");
    s.limits.per_minute = 600;
    s.queue.visibility_timeout_s = 5;
    s.queue.max_receive_count = 1000;
    s.consumer.deferral = Deferral::Naive;
    s.consumer.in_process_wait_ms = 0;
    // Eight invocations at once, as in the bench: more than one account's
    // sends in order could keep up with, so the limit binds.
    s.lambda.max_concurrency = 8;
    let naive = run(&s);
    assert!(
        naive.detail.sqs_receives > 2 * naive.messages,
        "the limit never bound: {naive:#?}"
    );
    assert_eq!(naive.detail.sent, naive.messages, "{naive:#?}");
    assert_eq!(naive.lost, 0, "{naive:#?}");
    assert_eq!(naive.violations, 0, "{naive:#?}");
}

#[test]
fn a_bad_scenario_file_is_an_error_not_a_panic() {
    let base = "name = \"x\"\nseed = 1\nduration_s = 60\n";
    let steady = "[[traffic]]\nkind = \"steady\"\nprefix = \"a\"\naccounts = 1\nper_hour = 10\n";
    for bad in [
        String::new(),
        base.to_owned(),
        format!("{base}[queue]\nvisibility_timeout_s = 43201\n{steady}"),
        format!("{base}[lambda]\nbatch_size = 11\nbatching_window_s = 0\n{steady}"),
        format!("{base}[lambda]\nbatch_size = 10001\n{steady}"),
        format!("{base}[limits]\nper_minute = 0\n{steady}"),
        format!(
            "{base}{}",
            steady.replace("prefix = \"a\"", "prefix = \"a b\"")
        ),
        format!("{base}{}", steady.replace("per_hour = 10", "per_hour = -1")),
        format!("{base}unknown = 1\n{steady}"),
        format!(
            "{base}[[traffic]]\nkind = \"burst\"\nprefix = \"a\"\naccounts = 1\nmessages = 5\nat_s = 61\n"
        ),
    ] {
        assert!(Scenario::parse(&bad).is_err(), "accepted:\n{bad}");
    }
    assert!(Scenario::parse(&format!("{base}{steady}")).is_ok());
    // Lambda takes batches past 10 from a standard queue with a window.
    assert!(Scenario::parse(&format!("{base}[lambda]\nbatch_size = 100\n{steady}")).is_ok());
}

/// Redis unreachable: nothing goes without a token, nothing is lost. A
/// failover that loses the limiter's keys refills every bucket, and the
/// curve check sees the second burst.
#[test]
fn a_redis_failover_loses_nothing_but_lost_limiter_keys_break_the_curve() {
    let text = |loses: bool| {
        format!(
            "name = \"failover\"\nseed = 7\nduration_s = 900\ndrain_s = 1800\n\
             [[faults.redis_outage]]\nat_s = 300\nfor_s = 30\nloses_limiter_keys = {loses}\n\
             [[traffic]]\nkind = \"steady\"\nprefix = \"acct\"\naccounts = 10\nper_hour = 3000\nzipf = 1.0\n"
        )
    };
    let parse = |t: String| Scenario::parse(&t).unwrap_or_else(|e| panic!("{e}"));
    assert_guarantees_hold(&run(&parse(text(false))));
    let lost = run(&parse(text(true)));
    assert!(lost.violations > 0, "{lost:#?}");
    assert_eq!(lost.lost, 0, "{lost:#?}");
}

/// A failover to a replica a second behind hands the tokens taken in that
/// second back: with a bucket that takes longer to refill than the outage
/// lasts and no reserve to absorb them, the account goes over its curve
/// as soon as new messages arrive to take them (it keeps posting during its
/// backlog; the backlog's own messages come at their slots, one a refill
/// interval, and would leave the extra tokens unused). With
/// `REDIS_WAIT_REPLICAS` = 1 the taken tokens were on the replica already,
/// and the curve holds (issue 17).
#[test]
fn a_failover_that_loses_a_second_breaks_the_curve_unless_the_functions_wait_for_the_replica() {
    let text = |wait: u32| {
        format!(
            "name = \"failover\"\nseed = 3\nduration_s = 600\ndrain_s = 1800\n\
             [limits]\nper_minute = 120\nburst = 100\nreserve_medium_percent = 0\n\
             [upstream]\njitter_ms = 0\n\
             [redis]\nwait_replicas = {wait}\n\
             [[faults.redis_outage]]\nat_s = 300\nfor_s = 2\nloses_ms = 1000\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"backlog\"\naccounts = 1\nmessages = 1500\n\
             [[traffic]]\nkind = \"steady\"\nprefix = \"backlog\"\naccounts = 1\nper_hour = 3600\n"
        )
    };
    let parse = |t: String| Scenario::parse(&t).unwrap_or_else(|e| panic!("{e}"));
    let lost = run(&parse(text(0)));
    assert!(lost.violations > 0, "{lost:#?}");
    assert_eq!(lost.lost, 0, "{lost:#?}");
    assert_guarantees_hold(&run(&parse(text(1))));
}

/// Invocations dying mid-batch lose nothing and never break the curve. (A
/// crash between the upstream's 2xx and the `sent` write does send the
/// message again: the report counts those duplicates; see sim/README.md.)
#[test]
fn crashed_invocations_lose_nothing_and_keep_the_curve() {
    let r = run(&scenario("crashes"));
    assert!(r.detail.invocation_crashes > 0, "{r:#?}");
    assert_eq!(r.violations, 0, "{r:#?}");
    assert_eq!(r.lost, 0, "{r:#?}");
    assert_eq!(r.detail.pending, 0, "{r:#?}");
    assert_eq!(r.dlq_throttled_only, 0, "{r:#?}");
}

/// A 429 storm pauses accounts; nothing is lost or dead-lettered for it.
#[test]
fn a_429_storm_is_waited_out() {
    let r = run(&scenario("storms"));
    assert!(r.detail.upstream_429s > 0, "{r:#?}");
    assert_guarantees_hold(&r);
}

/// A backlog longer than SQS's 12-hour visibility cap (900 messages at one
/// a minute: 15 hours): every message keeps its slot through the chained
/// deferrals, no visibility change is refused, and the account uses its
/// whole budget (issue 15; 0.50 before slots were kept).
#[test]
fn a_backlog_past_twelve_hours_keeps_its_slots_and_uses_its_budget() {
    let s = Scenario::parse(
        "name = \"past-12h\"\nseed = 4\nduration_s = 600\ndrain_s = 57600\n\
         [limits]\nper_minute = 1\nburst = 2\n\
         [[traffic]]\nkind = \"burst\"\nprefix = \"mass\"\naccounts = 1\nmessages = 900\n\
         [[traffic]]\nkind = \"steady\"\nprefix = \"fan\"\naccounts = 5\nper_hour = 10\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = run(&s);
    assert_guarantees_hold(&r);
    assert_eq!(r.detail.visibility_refused, 0, "{r:#?}");
    let budget = r.budget_used_backlogged.unwrap_or(0.0);
    assert!(budget >= 0.99, "budget {budget}: {r:#?}");
}

/// The upstream counts arrivals, and calls' latencies differ (the default
/// 150 ms + up to 100 ms here): a bucket drained to zero would grant sends
/// exactly on the curve, and a call faster than the one before it would
/// arrive over it. The limiter keeps the guard (what 100 ms refills) in
/// every bucket, and a burst of one owes it. Measured before the guard
/// (2026-12-03, these scenarios): 866 of 900 arrivals over the curve for a
/// burst of one at 1/min, 5 of 6,000 for twenty `high` backlogs at 10/min
/// (burst 10, no reserve); now none, with 0.996 and 0.994 of the budget.
#[test]
fn the_latency_spread_never_puts_an_arrival_over_the_curve() {
    for (text, at_least) in [
        (
            "name = \"burst-1\"\nseed = 8\nduration_s = 600\ndrain_s = 60000\n\
             [limits]\nper_minute = 1\nburst = 1\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"one\"\naccounts = 1\nmessages = 900\npriority = \"high\"\n",
            0.99,
        ),
        (
            "name = \"high-backlogs\"\nseed = 7\nduration_s = 600\ndrain_s = 36000\n\
             [limits]\nper_minute = 10\nburst = 10\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"hi\"\naccounts = 20\nmessages = 300\npriority = \"high\"\n",
            0.99,
        ),
    ] {
        let s = Scenario::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.upstream.jitter_ms > 0, "the default jitter");
        let r = run(&s);
        assert_guarantees_hold(&r);
        let budget = r.budget_used_backlogged.unwrap_or(0.0);
        assert!(budget >= at_least, "{}: budget {budget}: {r:#?}", r.name);
    }
}

/// A backlog at 600/min keeps every guarantee and uses its budget. (Its
/// quiet neighbours' latency: `a_fair_queue_keeps_quiet_accounts_ahead_of_a_backlog`.)
#[test]
fn a_fast_backlog_keeps_its_guarantees_and_budget() {
    let s = Scenario::parse(
        "name = \"fast\"\nseed = 5\nduration_s = 300\ndrain_s = 600\n\
         [limits]\nper_minute = 600\nburst = 10\n\
         [[traffic]]\nkind = \"burst\"\nprefix = \"noisy\"\naccounts = 1\nmessages = 2000\nover_s = 1.0\n\
         [[traffic]]\nkind = \"steady\"\nprefix = \"quiet\"\naccounts = 20\nper_hour = 400\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = run(&s);
    assert_guarantees_hold(&r);
    let budget = r.budget_used_backlogged.unwrap_or(0.0);
    assert!(budget >= 0.98, "budget {budget}: {r:#?}");
}

/// Quiet accounts beside a 600/min backlog: on a fair queue (every message
/// carries `MessageGroupId = accountId`, so SQS serves quiet groups first)
/// their p99 stays within the 2 s; on a queue that ignores the
/// group they wait behind the backlog. The same scenario, the queue the
/// only difference.
#[test]
fn a_fair_queue_keeps_quiet_accounts_ahead_of_a_backlog() {
    let scenario = |fair: bool| {
        Scenario::parse(&format!(
            "name = \"fair-{fair}\"\nseed = 5\nduration_s = 300\ndrain_s = 600\n\
             [limits]\nper_minute = 600\nburst = 10\n[queue]\nfair = {fair}\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"noisy\"\naccounts = 1\nmessages = 2000\nover_s = 1.0\n\
             [[traffic]]\nkind = \"steady\"\nprefix = \"quiet\"\naccounts = 20\nper_hour = 400\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let fair = run(&scenario(true));
    let unfair = run(&scenario(false));
    assert_guarantees_hold(&fair);
    assert_guarantees_hold(&unfair);
    let p99 = |r: &ScenarioReport| r.quiet_p99_s.unwrap_or(f64::INFINITY);
    eprintln!(
        "quiet p99: fair {} s, unfair {} s; budget fair {:?}, unfair {:?}",
        p99(&fair),
        p99(&unfair),
        fair.budget_used_backlogged,
        unfair.budget_used_backlogged
    );
    assert!(
        p99(&fair) <= 2.0,
        "fair: quiet p99 {} s: {fair:#?}",
        p99(&fair)
    );
    assert!(
        p99(&unfair) > 10.0,
        "unfair: quiet p99 {} s (the backlog should hold them up)",
        p99(&unfair)
    );
    assert!(
        fair.budget_used_backlogged.unwrap_or(0.0) >= 0.98,
        "{fair:#?}"
    );
}

/// A 2-minute 5xx storm opens the upstream's circuit breaker. The real
/// policy probes once the breaker's 30 s are up, the probe's answer settles
/// it, and after the storm everything goes. A copy of the policy whose
/// probe is never settled (`faults.breaker_probe_leak`: the permit leaked)
/// refuses every call from then on: quiet accounts' messages are deferred
/// again and again (re-enqueued before SQS's redrive) and never end, which
/// the `stalled_quiet` check catches.
#[test]
fn a_breaker_probe_that_is_never_settled_is_caught() {
    let text = "name = \"probe\"\nseed = 11\nduration_s = 900\ndrain_s = 3600\n\
                [[upstream.outage]]\nat_s = 300\nfor_s = 120\n\
                [[traffic]]\nkind = \"steady\"\nprefix = \"acct\"\naccounts = 10\nper_hour = 300\n";
    let mut s = Scenario::parse(text).unwrap_or_else(|e| panic!("{e}"));
    let healthy = run(&s);
    assert!(healthy.passed(), "{healthy:#?}");
    assert_eq!(healthy.lost, 0, "{healthy:#?}");
    assert_eq!(healthy.detail.pending, 0, "{healthy:#?}");
    assert!(
        healthy.detail.upstream_requests > healthy.detail.sent,
        "the storm failed calls: {healthy:#?}"
    );

    s.faults.breaker_probe_leak = true;
    let leaky = run(&s);
    assert!(!leaky.passed(), "{leaky:#?}");
    assert!(leaky.stalled_quiet > 0, "{leaky:#?}");
    assert_eq!(leaky.violations, 0, "{leaky:#?}");
    assert!(
        leaky.detail.sent < healthy.detail.sent,
        "nothing goes after the leak: {leaky:#?}"
    );
}

/// An account with its own limit (60/min burst 5, as the admin route sets
/// it) backlogged beside accounts at the default 600/min: the limiter holds
/// it to its own limit and the checker judges it against that limit (an
/// engine that ignored the own limit would break its curve), every
/// guarantee holds and the budget is used.
///
/// The upstream's latency varies by the default 100 ms, and the checker
/// judges arrival times with no tolerance: before the limiter kept the
/// guard (what 100 ms refills) the vip account's sends, granted one second
/// apart, arrived up to 50 ms closer (138 of 300 over the curve by a
/// fraction of a token), and this test ran with no jitter.
///
/// On a queue that ignores the group (as moto does), with the template's
/// default of 2 concurrent invocations: this is the limiter's property. On a
/// fair queue the 60/min account's deferred messages make it the noisy
/// group (its hidden backlog is in flight), so they wait, back at their
/// slots, behind the 600/min account's visible backlog while its in-process
/// waits hold both invocations: 0.90 of the budget, 39 s late at worst. With
/// the production profile's 20 (samconfig.toml) the invocations are not all
/// held, and the fair queue keeps the budget too (docs/scheduling.md).
#[test]
fn an_account_with_its_own_limit_keeps_its_own_curve() {
    let text = |queue: &str| {
        format!(
            "name = \"own-limit\"\nseed = 6\nduration_s = 300\ndrain_s = 900\n\
             [limits]\nper_minute = 600\nburst = 10\n\
             [[limits.accounts]]\naccount = \"vip_0\"\nper_minute = 60\nburst = 5\n{queue}\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"vip\"\naccounts = 1\nmessages = 300\nover_s = 1.0\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"fast\"\naccounts = 1\nmessages = 600\nover_s = 1.0\n"
        )
    };
    for queue in [
        "[queue]\nfair = false",
        "[queue]\nfair = true\n[lambda]\nmax_concurrency = 20",
    ] {
        let r = run(&Scenario::parse(&text(queue)).unwrap_or_else(|e| panic!("{e}")));
        assert_guarantees_hold(&r);
        let budget = r.budget_used_backlogged.unwrap_or(0.0);
        assert!(budget >= 0.98, "{queue}: budget {budget}: {r:#?}");
    }
}

/// The request counts follow SQS's billing: a campaign's messages go ten to
/// a `SendMessageBatch`, a long poll that waits for a message is one
/// `ReceiveMessage`, and a batch's deferrals one `ChangeMessageVisibilityBatch`.
#[test]
fn sqs_requests_are_counted_as_sqs_bills_them() {
    let text = |campaign: bool| {
        format!(
            "name = \"requests\"\nseed = 5\nduration_s = 60\ndrain_s = 600\n\
             [limits]\nper_minute = 60\nburst = 10\n\
             [lambda]\nbatching_window_s = 0\n\
             [[traffic]]\nkind = \"burst\"\nprefix = \"camp\"\naccounts = 1\nmessages = 100\n\
             campaign = {campaign}\n"
        )
    };
    let parse = |t: String| Scenario::parse(&t).unwrap_or_else(|e| panic!("{e}"));
    let single = run(&parse(text(false)));
    let campaign = run(&parse(text(true)));
    for r in [&single, &campaign] {
        assert_guarantees_hold(r);
    }
    assert_eq!(single.detail.sqs_sends, 100);
    assert_eq!(campaign.detail.sqs_sends, 10, "ten SendMessageBatch of ten");
    // 90 of the 100 wait for their slots; each received batch's deferrals
    // are one request, not one each.
    let d = &campaign.detail;
    assert!(d.sqs_visibility_changes > 0, "{d:#?}");
    assert!(d.sqs_visibility_changes <= 10, "{d:#?}");
    // Without a batching window every receive that returned records started
    // an invocation, and a 20 s long poll that ends with a message is the
    // same request: no receive came back empty while messages were due at
    // least every second.
    assert_eq!(d.sqs_empty_receives, 0, "{d:#?}");
    assert_eq!(d.sqs_receives, d.invocations, "{d:#?}");
}

/// A batch past 10 records is gathered over the batching window by
/// receives of up to 10 each, as Lambda's poller does for a standard queue.
#[test]
fn a_batch_of_fifty_is_five_receives_and_one_invocation() {
    let text = "name = \"big-batches\"\nseed = 5\nduration_s = 60\ndrain_s = 600\n\
                [lambda]\nbatch_size = 50\nbatching_window_s = 1\n\
                [[traffic]]\nkind = \"burst\"\nprefix = \"one\"\naccounts = 100\nmessages = 1\n";
    let r = run(&Scenario::parse(text).unwrap_or_else(|e| panic!("{e}")));
    assert_guarantees_hold(&r);
    let d = &r.detail;
    assert_eq!(d.sent, 100, "{d:#?}");
    assert_eq!(d.invocations, 2, "two batches of 50: {d:#?}");
    assert_eq!(d.sqs_receives - d.sqs_empty_receives, 10, "{d:#?}");
}
