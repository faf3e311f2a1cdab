//! Redis Cluster's rule, checked: every script and every pipeline touches
//! keys of one slot, and a script touches only the keys it is given.
//!
//! A Redis Cluster refuses (`CROSSSLOT`) a script whose declared keys are in
//! several slots, and a key a script builds itself may live on another node
//! altogether. These tests read the sources of every module that talks to
//! Redis, so a script added later (campaigns included) is checked without
//! being listed here; the key lists below are the ones each call site passes.
//! The adapters' tests run on a real cluster too (`make test-cluster`).

#[cfg(test)]
mod tests {
    use crate::keys;
    use crate::message::{AccountId, MessageId, Priority};
    use crate::redis_conn::key_slot;

    /// Every module that runs a script or a command on Redis.
    const SOURCES: &[(&str, &str)] = &[
        ("store.rs", include_str!("store.rs")),
        ("idempotency.rs", include_str!("idempotency.rs")),
        ("outbox.rs", include_str!("outbox.rs")),
        ("campaign.rs", include_str!("campaign.rs")),
        ("limiter/mod.rs", include_str!("limiter/mod.rs")),
        (
            "limiter/token_bucket.lua",
            include_str!("limiter/token_bucket.lua"),
        ),
    ];

    /// Commands a script may run without a key (they touch no data).
    const KEYLESS: &[&str] = &["TIME"];

    /// Parameters of a script's helper function that name keys: store.rs's
    /// `move_count(rec, counts, ...)`. Allowed as a call's key only because
    /// `helpers_are_given_keys` checks that every call passes `KEYS[..]`.
    const KEY_PARAMS: &[(&str, &[&str])] = &[("move_count", &["rec", "counts"])];

    /// Each `redis.call(...)`/`redis.pcall(...)`: the command and its first argument.
    fn calls(src: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for pat in ["redis.call(", "redis.pcall("] {
            for (at, _) in src.match_indices(pat) {
                let rest = &src[at + pat.len()..];
                let args: Vec<&str> = rest
                    .split(')')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .collect();
                let cmd = args[0].trim_matches(|c| c == '\'' || c == '"');
                out.push((
                    cmd.to_ascii_uppercase(),
                    args.get(1).copied().unwrap_or_default().to_owned(),
                ));
            }
        }
        out
    }

    /// Script locals bound to a key as given: `local k = KEYS[6 + ...]`.
    fn key_aliases(src: &str) -> Vec<String> {
        src.lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("local ")?;
                let (name, value) = rest.split_once('=')?;
                value
                    .trim()
                    .starts_with("KEYS[")
                    .then(|| name.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn scripts_touch_only_the_keys_they_are_given() {
        let mut seen = 0;
        for (file, src) in SOURCES {
            let aliases = key_aliases(src);
            for (cmd, first) in calls(src) {
                seen += 1;
                if KEYLESS.contains(&cmd.as_str())
                    || aliases.contains(&first)
                    || KEY_PARAMS
                        .iter()
                        .any(|(_, params)| params.contains(&first.as_str()))
                {
                    continue;
                }
                assert!(
                    first.starts_with("KEYS["),
                    "{file}: redis.call('{cmd}', {first}, ...) builds its key in the script: \
                     in a cluster it may be on another node; pass it in KEYS"
                );
            }
        }
        // The sources were read (a moved file would make this test vacuous).
        assert!(seen > 20, "only {seen} redis.call found");
    }

    #[test]
    fn helpers_are_given_keys() {
        let mut seen = 0;
        for (file, src) in SOURCES {
            for (helper, params) in KEY_PARAMS {
                let call = format!("{helper}(");
                for (at, _) in src.match_indices(&call) {
                    // Skip the definition (`local function move_count(`) and
                    // mentions in Rust doc comments.
                    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
                    if src[..at].ends_with("function ")
                        || src[line_start..at].trim_start().starts_with("//")
                    {
                        continue;
                    }
                    seen += 1;
                    let args: Vec<&str> = src[at + call.len()..]
                        .split(')')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .collect();
                    for (i, _) in params.iter().enumerate() {
                        let arg = args.get(i).copied().unwrap_or_default();
                        assert!(
                            arg.starts_with("KEYS["),
                            "{file}: {helper}(...) argument {} is {arg}, not a KEYS entry",
                            i + 1
                        );
                    }
                }
            }
        }
        assert!(seen >= 4, "only {seen} helper calls found");
    }

    #[test]
    fn the_audit_knows_a_local_bound_to_a_key() {
        assert_eq!(
            key_aliases("local k = KEYS[6 + (i - 7) / 2]\nlocal n = tonumber(ARGV[1])"),
            vec!["k".to_owned()]
        );
    }

    #[test]
    fn the_audit_reads_a_call_as_redis_does() {
        assert_eq!(
            calls("redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) redis.pcall(\"time\")"),
            vec![
                ("SET".to_owned(), "KEYS[1]".to_owned()),
                ("TIME".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            calls("redis.call('GET', 'of:' .. ARGV[1])")[0].1,
            "'of:' .. ARGV[1]"
        );
    }

    /// The keys each multi-key call passes, as its call site builds them.
    fn multi_key_calls(a: &AccountId, id: &MessageId) -> Vec<(&'static str, Vec<String>)> {
        let mut calls = Vec::new();
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            // limiter::RedisLimiter::acquire_step: token_bucket.lua
            calls.push((
                "token_bucket.lua",
                vec![
                    keys::bucket(a),
                    keys::horizon(a, p),
                    keys::pause(a),
                    keys::limits(a),
                ],
            ));
        }
        // store: BEGIN_SEND (status, claim and the campaign counters together);
        // TRANSITION, CANCEL and REVIVE name the status and the counters.
        calls.push((
            "BEGIN_SEND",
            vec![
                keys::status(a, id),
                keys::claim(a, id),
                keys::campaign_counts(a),
            ],
        ));
        // campaign: ADD (the campaign's record, recipients, list, pending
        // set, the counters, and each new message's status record).
        let c = "0b7e3c1e-0000-4000-8000-000000000001";
        calls.push((
            "campaign ADD",
            vec![
                keys::campaign(a, c),
                keys::campaign_recipients(a, c),
                keys::campaign_messages(a, c),
                keys::campaign_pending(a, c),
                keys::campaign_counts(a),
                keys::status(a, id),
            ],
        ));
        // limiter::RedisLimiter::view: one pipeline (HMGET, PTTL, TIME, HMGET).
        calls.push((
            "view pipeline",
            vec![keys::bucket(a), keys::pause(a), keys::limits(a)],
        ));
        calls
    }

    #[test]
    fn every_script_keeps_its_keys_in_one_slot() {
        for name in ["acct_1", "a", "creator-42", "x_y_z_0123456789"] {
            let a = AccountId::parse(name).unwrap();
            let id = MessageId::new();
            let account_slot = key_slot(&keys::bucket(&a));
            for (call, ks) in multi_key_calls(&a, &id) {
                for k in &ks {
                    assert_eq!(key_slot(k), account_slot, "{call}: {k} of {ks:?}");
                }
            }
            // Every single-key call of the account lands there too: one
            // account, one shard (a script may add any of its keys later).
            for k in [
                keys::status(&a, &id),
                keys::claim(&a, &id),
                keys::idempotency(&a, "k"),
                keys::limits(&a),
            ] {
                assert_eq!(key_slot(&k), account_slot, "{k}");
            }
        }
    }

    #[test]
    fn accounts_spread_over_the_slots() {
        // The hash tag is the account alone: different accounts land on
        // different slots (so on every shard), which is what cluster mode is for.
        let slots: std::collections::BTreeSet<u16> = (0..1000)
            .map(|i| {
                key_slot(&keys::bucket(
                    &AccountId::parse(&format!("acct_{i}")).unwrap(),
                ))
            })
            .collect();
        assert!(slots.len() > 950, "{} distinct slots", slots.len());
        let thirds = [0..5461u16, 5461..10923, 10923..16384];
        for t in thirds {
            assert!(slots.iter().any(|s| t.contains(s)), "no account in {t:?}");
        }
    }
}
