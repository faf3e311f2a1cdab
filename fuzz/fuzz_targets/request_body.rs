//! The producer's request-body parser on arbitrary bytes.
//!
//! `parse_new_message` must answer every body with `Ok` or an `IntakeError`,
//! never a panic. What it accepts must meet the documented limits, checked
//! here independently of the domain types' own constructors, and its
//! idempotency fingerprint must depend only on the message's meaning.
//! `IdempotencyKey::parse` gets the same bytes as a header value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use shared::idempotency::{IdempotencyKey, KEY_MAX};
use shared::intake::{IntakeError, fingerprint, parse_new_message};
use shared::message::NewMessage;

fn check_limits(msg: &NewMessage) {
    // recipientId: 1–64 characters of [A-Za-z0-9_-].
    let r = msg.recipient_id.as_str();
    assert!(
        (1..=64).contains(&r.len()),
        "recipientId length {}",
        r.len()
    );
    assert!(
        r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "recipientId {r:?}"
    );
    // content: 1–5000 Unicode scalar values, not only whitespace.
    let c = msg.content.as_str();
    let chars = c.chars().count();
    assert!((1..=5000).contains(&chars), "content has {chars} chars");
    assert!(
        !c.chars().all(char::is_whitespace),
        "content is only whitespace"
    );
    // mediaUrls: at most 10, each an absolute https URL with a host, no
    // credentials, at most 2048 bytes, no whitespace or control characters.
    let media = msg.media_urls.as_slice();
    assert!(media.len() <= 10, "{} media URLs", media.len());
    for u in media {
        assert!(u.len() <= 2048, "media URL of {} bytes", u.len());
        // Kept raw and sent upstream as is: nothing the URL parser would
        // have stripped or dropped.
        assert!(
            !u.chars().any(|c| c.is_whitespace() || c.is_control()),
            "media URL with whitespace or control characters: {u:?}"
        );
        let parsed = url::Url::parse(u).expect("accepted media URL does not parse");
        assert_eq!(parsed.scheme(), "https");
        assert!(parsed.host_str().is_some_and(|h| !h.is_empty()));
        assert!(parsed.username().is_empty() && parsed.password().is_none());
    }
}

/// `FUZZ_TRACE=1` prints each outcome (to see what seeds reach).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_new_message(data);
    if trace() {
        eprintln!("request_body: {parsed:?}");
    }
    match parsed {
        Ok(msg) => {
            check_limits(&msg);
            // Only a JSON object can have been accepted.
            assert!(matches!(
                serde_json::from_slice::<Value>(data),
                Ok(Value::Object(_))
            ));
            let fp = fingerprint(&msg);
            assert_eq!(fp, fingerprint(&msg.clone()), "fingerprint is not stable");
            assert_eq!(fp.len(), 64);
            // The same message written canonically (other key order, other
            // whitespace, defaults spelled out) parses to the same value and
            // the same fingerprint: "same body" for Idempotency-Key.
            let mut canonical = json!({
                "mediaUrls": msg.media_urls.as_slice(),
                "priority": msg.priority.as_str(),
                "content": msg.content.as_str(),
                "recipientId": msg.recipient_id.as_str(),
            });
            if let Some(t) = msg.send_at {
                let spelled = t
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("an accepted sendAt formats again");
                canonical["sendAt"] = spelled.into();
            }
            let again = parse_new_message(canonical.to_string().as_bytes())
                .expect("canonical form of an accepted message is refused");
            assert_eq!(again, msg);
            assert_eq!(fingerprint(&again), fp);
        }
        // A 400 must name at least one field.
        Err(IntakeError::Fields(errors)) => {
            assert!(!errors.is_empty(), "Fields error with no field");
        }
        Err(IntakeError::Malformed(_) | IntakeError::NotAnObject) => {}
    }

    if let Ok(key) = IdempotencyKey::parse(data) {
        let key = key.as_str();
        assert!((1..=KEY_MAX).contains(&key.len()));
        assert!(key.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
});
