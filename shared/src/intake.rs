//! Request body to [`NewMessage`] (and an admin's body to an
//! [`AccountLimit`]): every field checked, every error collected.
//!
//! The body is read as a JSON object first and each field is then parsed into
//! its domain type on its own, so a 400 lists all bad fields at once rather
//! than the first one serde trips over.

use crate::campaign::{CampaignSpec, MAX_RECIPIENTS, NewCampaign};
use crate::limiter::{self, AccountLimit};
use crate::message::{
    Content, MEDIA_URLS_MAX, MediaUrls, NewMessage, Priority, RecipientId, SEND_AT_MAX_AHEAD,
};
use crate::problem::FieldError;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Largest accepted body (the contract's 413 threshold, SQS's message limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

const KNOWN_FIELDS: [&str; 5] = ["recipientId", "content", "priority", "mediaUrls", "sendAt"];

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("{} field(s) are invalid", .0.len())]
    Fields(Vec<FieldError>),
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match obj.get(field) {
        None => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(FieldError::new(
                field,
                format!("must be a string, got {}", json_type(other)),
            ));
            None
        }
    }
}

/// Reads `sendAt`: RFC 3339 with an offset, at most [`SEND_AT_MAX_AHEAD`]
/// after `now`. A time in the past is kept as given (it means now), so a
/// retry of the same body later is still the same body.
pub fn parse_send_at(value: &Value, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let Value::String(s) = value else {
        return Err(format!(
            "must be an RFC 3339 date-time with an offset, got {}",
            json_type(value)
        ));
    };
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
        "must be an RFC 3339 date-time with an offset, e.g. 2026-12-24T18:00:00Z".to_owned()
    })?;
    if t - now > SEND_AT_MAX_AHEAD {
        return Err(format!(
            "must be at most {} days ahead",
            SEND_AT_MAX_AHEAD.whole_days()
        ));
    }
    Ok(t)
}

/// Parses a request body into a [`NewMessage`], with the wall clock's now.
pub fn parse_new_message(body: &[u8]) -> Result<NewMessage, IntakeError> {
    parse_new_message_at(body, OffsetDateTime::now_utc())
}

/// Parses a request body into a [`NewMessage`]; `now` bounds `sendAt`.
pub fn parse_new_message_at(body: &[u8], now: OffsetDateTime) -> Result<NewMessage, IntakeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| IntakeError::Malformed(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(IntakeError::NotAnObject);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.clone(),
                "unknown field; allowed fields are recipientId, content, priority, mediaUrls, sendAt",
            ));
        }
    }

    let recipient = required_str(&obj, "recipientId", &mut errors).and_then(|s| {
        RecipientId::parse(s)
            .map_err(|e| errors.push(FieldError::new("recipientId", e.0)))
            .ok()
    });
    let common = parse_common(&obj, now, &mut errors);

    match (recipient, common) {
        (Some(recipient_id), Some((content, priority, media_urls, send_at)))
            if errors.is_empty() =>
        {
            Ok(NewMessage {
                recipient_id,
                content,
                priority,
                media_urls,
                send_at,
            })
        }
        _ => Err(IntakeError::Fields(errors)),
    }
}

/// The fields a message and a campaign share: `content`, `priority`,
/// `mediaUrls`, `sendAt`. Errors are pushed to `errors`; `None` if any failed.
fn parse_common(
    obj: &Map<String, Value>,
    now: OffsetDateTime,
    errors: &mut Vec<FieldError>,
) -> Option<(Content, Priority, MediaUrls, Option<OffsetDateTime>)> {
    let content = required_str(obj, "content", errors).and_then(|s| {
        Content::parse(s)
            .map_err(|e| errors.push(FieldError::new("content", e.0)))
            .ok()
    });
    let priority = match obj.get("priority") {
        None => Some(Priority::default()),
        Some(Value::String(s)) => Priority::parse(s)
            .map_err(|e| errors.push(FieldError::new("priority", e.0)))
            .ok(),
        Some(other) => {
            errors.push(FieldError::new(
                "priority",
                format!(
                    "must be one of: low, medium, high; got {}",
                    json_type(other)
                ),
            ));
            None
        }
    };
    let media = match obj.get("mediaUrls") {
        None => Some(MediaUrls::default()),
        Some(Value::Array(items)) => {
            let before = errors.len();
            if items.len() > MEDIA_URLS_MAX {
                errors.push(FieldError::new(
                    "mediaUrls",
                    format!(
                        "must hold at most {MEDIA_URLS_MAX} URLs (got {})",
                        items.len()
                    ),
                ));
            }
            let ok = each_string(items, "mediaUrls", errors, |s| {
                MediaUrls::parse_one(s).map_err(|e| e.0)
            });
            if errors.len() == before {
                MediaUrls::new(ok)
                    .map_err(|e| errors.push(FieldError::new("mediaUrls", e.0)))
                    .ok()
            } else {
                None
            }
        }
        Some(other) => {
            errors.push(FieldError::new(
                "mediaUrls",
                format!("must be an array of https URLs, got {}", json_type(other)),
            ));
            None
        }
    };

    let send_at = match obj.get("sendAt") {
        None | Some(Value::Null) => Some(None),
        Some(v) => parse_send_at(v, now)
            .map_err(|e| errors.push(FieldError::new("sendAt", e)))
            .ok()
            .map(Some),
    };

    Some((content?, priority?, media?, send_at?))
}

/// A fingerprint of a message's meaning (not its bytes): the same message
/// with other whitespace or key order is the "same body" for idempotency.
pub fn fingerprint(msg: &NewMessage) -> String {
    let mut h = Sha256::new();
    for part in [
        msg.recipient_id.as_str(),
        msg.content.as_str(),
        msg.priority.as_str(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    for u in msg.media_urls.as_slice() {
        h.update((u.len() as u64).to_be_bytes());
        h.update(u.as_bytes());
    }
    // The instant, not its spelling: 18:00Z and 19:00+01:00 are one time. A
    // message without sendAt hashes as it did before sendAt existed.
    if let Some(t) = msg.send_at {
        h.update(b"sendAt");
        h.update(t.unix_timestamp_nanos().to_be_bytes());
    }
    hex::encode(h.finalize())
}

/// The fields of `POST /v1/campaigns`.
const CAMPAIGN_FIELDS: [&str; 5] = ["content", "mediaUrls", "priority", "sendAt", "recipientIds"];

/// Reads a request body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, IntakeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| IntakeError::Malformed(e.to_string()))?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(IntakeError::NotAnObject),
    }
}

fn unknown_fields(obj: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.clone(),
                format!("unknown field; allowed fields are {}", known.join(", ")),
            ));
        }
    }
}

/// `recipientIds`: 1 to [`MAX_RECIPIENTS`] valid recipient ids, each bad one
/// reported by its index (`recipientIds[3]`). Repeats are kept: counting
/// them as duplicates is the campaign's business, not a validation error.
fn recipient_ids(
    obj: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<RecipientId>> {
    let items = match obj.get("recipientIds") {
        None => {
            errors.push(FieldError::new("recipientIds", "is required"));
            return None;
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(FieldError::new(
                "recipientIds",
                format!(
                    "must be an array of recipient ids, got {}",
                    json_type(other)
                ),
            ));
            return None;
        }
    };
    let before = errors.len();
    if items.is_empty() || items.len() > MAX_RECIPIENTS {
        errors.push(FieldError::new(
            "recipientIds",
            format!(
                "must hold 1 to {MAX_RECIPIENTS} recipient ids (got {})",
                items.len()
            ),
        ));
    }
    let ok = each_string(items, "recipientIds", errors, |s| {
        RecipientId::parse(s).map_err(|e| e.0)
    });
    (errors.len() == before).then_some(ok)
}

/// Each item of the array `name` parsed by `parse`; a bad one, or one that
/// is not a string, is reported by its index (`name[i]`).
fn each_string<T>(
    items: &[Value],
    name: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut ok = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("{name}[{i}]");
        match item {
            Value::String(s) => match parse(s) {
                Ok(v) => ok.push(v),
                Err(e) => errors.push(FieldError::new(field, e)),
            },
            other => errors.push(FieldError::new(
                field,
                format!("must be a string, got {}", json_type(other)),
            )),
        }
    }
    ok
}

/// Parses `POST /v1/campaigns`' body; `now` bounds `sendAt`. Every bad
/// field is reported, each bad recipient by its index.
pub fn parse_new_campaign_at(body: &[u8], now: OffsetDateTime) -> Result<NewCampaign, IntakeError> {
    let obj = object(body)?;
    let mut errors = Vec::new();
    unknown_fields(&obj, &CAMPAIGN_FIELDS, &mut errors);
    let common = parse_common(&obj, now, &mut errors);
    let recipients = recipient_ids(&obj, &mut errors);
    match (common, recipients) {
        (Some((content, priority, media_urls, send_at)), Some(recipients)) if errors.is_empty() => {
            Ok(NewCampaign {
                spec: CampaignSpec {
                    content,
                    priority,
                    media_urls,
                    send_at,
                },
                recipients,
            })
        }
        _ => Err(IntakeError::Fields(errors)),
    }
}

/// Parses `POST /v1/campaigns/{id}/recipients`' body: `{"recipientIds": [...]}`.
pub fn parse_recipients(body: &[u8]) -> Result<Vec<RecipientId>, IntakeError> {
    let obj = object(body)?;
    let mut errors = Vec::new();
    unknown_fields(&obj, &["recipientIds"], &mut errors);
    match recipient_ids(&obj, &mut errors) {
        Some(r) if errors.is_empty() => Ok(r),
        _ => Err(IntakeError::Fields(errors)),
    }
}

/// A campaign request's fingerprint (its meaning, as [`fingerprint`]): the
/// shared fields and the recipients in the order given.
pub fn campaign_fingerprint(c: &NewCampaign) -> String {
    let mut h = Sha256::new();
    h.update(b"campaign");
    let part = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    part(&mut h, c.spec.content.as_str());
    part(&mut h, c.spec.priority.as_str());
    for u in c.spec.media_urls.as_slice() {
        part(&mut h, u);
    }
    if let Some(t) = c.spec.send_at {
        h.update(b"sendAt");
        h.update(t.unix_timestamp_nanos().to_be_bytes());
    }
    h.update(b"recipients");
    for r in &c.recipients {
        part(&mut h, r.as_str());
    }
    hex::encode(h.finalize())
}

/// `PUT /v1/admin/accounts/{accountId}/limits`' body:
/// `{"perMinute": 1-600, "burst": 1-1000}`, both required, whole numbers,
/// nothing else. Every bad field is reported.
pub fn parse_account_limit(body: &[u8]) -> Result<AccountLimit, IntakeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| IntakeError::Malformed(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(IntakeError::NotAnObject);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if key != "perMinute" && key != "burst" {
            errors.push(FieldError::new(
                key.clone(),
                "unknown field; allowed fields are perMinute, burst",
            ));
        }
    }
    let mut whole = |name: &str, range: std::ops::RangeInclusive<u32>| -> Option<u32> {
        let bounds = format!("{} to {}", range.start(), range.end());
        let n = match obj.get(name) {
            None => {
                errors.push(FieldError::new(
                    name,
                    format!("is required: a whole number from {bounds}"),
                ));
                return None;
            }
            Some(v) => v,
        };
        match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                let got = if n.is_number() {
                    "a number out of range".to_owned()
                } else {
                    json_type(n).to_owned()
                };
                errors.push(FieldError::new(
                    name,
                    format!("must be a whole number from {bounds}; got {got}"),
                ));
                None
            }
        }
    };
    let per_minute = whole("perMinute", limiter::PER_MINUTE_RANGE);
    let burst = whole("burst", limiter::BURST_RANGE);
    match (per_minute, burst) {
        (Some(p), Some(b)) if errors.is_empty() => AccountLimit::new(p, b)
            .ok_or_else(|| IntakeError::Fields(vec![FieldError::new("perMinute", "out of range")])),
        _ => Err(IntakeError::Fields(errors)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_account_limit_lists_every_bad_field() {
        let ok = parse_account_limit(br#"{"perMinute": 120, "burst": 2}"#).unwrap();
        assert_eq!((ok.per_minute(), ok.burst()), (120, 2));
        assert!(parse_account_limit(br#"{"perMinute": 600, "burst": 1000}"#).is_ok());
        assert!(parse_account_limit(br#"{"perMinute": 1, "burst": 1}"#).is_ok());
        let fields = |body: &[u8]| match parse_account_limit(body) {
            Err(IntakeError::Fields(e)) => e.into_iter().map(|e| e.field).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(fields(br#"{}"#), ["perMinute", "burst"]);
        assert_eq!(
            fields(br#"{"perMinute": 0, "burst": 1001}"#),
            ["perMinute", "burst"]
        );
        assert_eq!(fields(br#"{"perMinute": 601, "burst": 1}"#), ["perMinute"]);
        assert_eq!(
            fields(br#"{"perMinute": 1.5, "burst": "2"}"#),
            ["perMinute", "burst"]
        );
        assert_eq!(
            fields(br#"{"perMinute": -1, "burst": 2, "x": 1}"#),
            ["x", "perMinute"]
        );
        assert!(matches!(
            parse_account_limit(b"[1]"),
            Err(IntakeError::NotAnObject)
        ));
        assert!(matches!(
            parse_account_limit(b"{"),
            Err(IntakeError::Malformed(_))
        ));
    }

    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Vec<FieldError> {
        match parse_new_message(v.to_string().as_bytes()) {
            Err(IntakeError::Fields(f)) => f,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    fn names(v: Value) -> Vec<String> {
        fields(v).into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_full_valid_body_parses() {
        let m = parse_new_message(
            json!({"recipientId": "fan_123", "content": "Hello!", "priority": "high",
                   "mediaUrls": ["https://cdn.example.com/a.jpg"]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.priority, Priority::High);
        assert_eq!(m.media_urls.len(), 1);
    }

    #[test]
    fn optional_fields_default() {
        let m = parse_new_message(br#"{"recipientId":"f","content":"x"}"#).unwrap();
        assert_eq!(m.priority, Priority::Medium);
        assert!(m.media_urls.is_empty());
    }

    #[test]
    fn every_bad_field_is_listed_at_once() {
        let n = names(
            json!({"recipientId": "", "content": "   ", "priority": "urgent",
                             "mediaUrls": ["http://x.example/a", 3], "extra": 1}),
        );
        assert_eq!(
            n,
            vec![
                "extra",
                "recipientId",
                "content",
                "priority",
                "mediaUrls[0]",
                "mediaUrls[1]"
            ]
        );
    }

    #[test]
    fn missing_null_and_wrong_types() {
        assert_eq!(names(json!({})), vec!["recipientId", "content"]);
        let f = fields(
            json!({"recipientId": null, "content": 5, "priority": null, "mediaUrls": "https://x.example"}),
        );
        assert_eq!(f.len(), 4);
        assert!(f[0].message.contains("null"));
        assert!(f[1].message.contains("number"));
    }

    #[test]
    fn recipient_and_content_boundaries() {
        let ok = |r: &str, c: &str| {
            parse_new_message(
                json!({"recipientId": r, "content": c})
                    .to_string()
                    .as_bytes(),
            )
        };
        assert!(ok(&"a".repeat(64), &"é".repeat(5000)).is_ok());
        assert!(ok(&"a".repeat(65), "x").is_err());
        assert!(ok("a", &"é".repeat(5001)).is_err());
        assert!(ok("a", "").is_err());
        assert!(ok("", "x").is_err());
    }

    #[test]
    fn media_url_limits() {
        let many: Vec<String> = (0..11).map(|i| format!("https://x.example/{i}")).collect();
        assert_eq!(
            names(json!({"recipientId": "a", "content": "x", "mediaUrls": many})),
            vec!["mediaUrls"]
        );
        let ten: Vec<String> = (0..10).map(|i| format!("https://x.example/{i}")).collect();
        assert!(
            parse_new_message(
                json!({"recipientId": "a", "content": "x", "mediaUrls": ten})
                    .to_string()
                    .as_bytes()
            )
            .is_ok()
        );
        assert_eq!(
            names(json!({"recipientId": "a", "content": "x", "mediaUrls": ["nope"]})),
            vec!["mediaUrls[0]"]
        );
    }

    #[test]
    fn not_json_or_not_an_object() {
        assert!(matches!(
            parse_new_message(b"{"),
            Err(IntakeError::Malformed(_))
        ));
        assert!(matches!(
            parse_new_message(b""),
            Err(IntakeError::Malformed(_))
        ));
        assert_eq!(parse_new_message(b"[1]"), Err(IntakeError::NotAnObject));
        assert_eq!(parse_new_message(b"null"), Err(IntakeError::NotAnObject));
    }

    #[test]
    fn send_at_rules() {
        let now = time::macros::datetime!(2026-12-01 10:00 UTC);
        let at = |v: Value| {
            parse_new_message_at(
                json!({"recipientId": "f", "content": "x", "sendAt": v})
                    .to_string()
                    .as_bytes(),
                now,
            )
        };
        // (sendAt, accepted)
        let cases = [
            (json!("2026-12-24T18:00:00Z"), true),
            (json!("2026-12-24T19:00:00+01:00"), true),
            (json!("2026-12-31T10:00:00Z"), true), // exactly 30 days
            (json!("2026-12-31T10:00:01Z"), false),
            (json!("2026-11-01T10:00:00Z"), true), // the past means now
            (json!("2026-12-24T18:00:00"), false), // no offset
            (json!("2026-12-24"), false),
            (json!("tomorrow"), false),
            (json!(1_767_000_000), false),
            (Value::Null, true),
        ];
        for (v, ok) in cases {
            match at(v.clone()) {
                Ok(_) => assert!(ok, "{v} accepted"),
                Err(IntakeError::Fields(f)) => {
                    assert!(!ok, "{v} refused: {f:?}");
                    assert_eq!(f.len(), 1);
                    assert_eq!(f[0].field, "sendAt");
                }
                Err(e) => panic!("{v}: {e:?}"),
            }
        }
        let m = at(json!("2026-12-24T19:00:00+01:00")).unwrap();
        assert_eq!(
            m.send_at,
            Some(time::macros::datetime!(2026-12-24 18:00 UTC))
        );
        // Listed with the other bad fields.
        let f = parse_new_message_at(
            json!({"recipientId": "", "content": "x", "sendAt": "2027-06-01T00:00:00Z"})
                .to_string()
                .as_bytes(),
            now,
        );
        match f {
            Err(IntakeError::Fields(f)) => {
                let names: Vec<_> = f.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(names, ["recipientId", "sendAt"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fingerprint_counts_the_send_at_instant() {
        let body = |s: &str| {
            let v = json!({"recipientId": "f", "content": "x", "sendAt": s});
            parse_new_message(v.to_string().as_bytes()).unwrap()
        };
        let none = parse_new_message(br#"{"recipientId":"f","content":"x"}"#).unwrap();
        let a = body("2020-01-01T18:00:00Z");
        let b = body("2020-01-01T19:00:00+01:00");
        let c = body("2020-01-01T18:00:01Z");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_ne!(fingerprint(&a), fingerprint(&none));
    }

    #[test]
    fn fingerprint_ignores_formatting_but_not_meaning() {
        let a = parse_new_message(br#"{"recipientId":"f","content":"x"}"#).unwrap();
        let b = parse_new_message(br#"{ "content":"x",  "recipientId":"f", "priority":"medium" }"#)
            .unwrap();
        let c = parse_new_message(br#"{"recipientId":"f","content":"y"}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    fn fields_of(e: IntakeError) -> Vec<String> {
        match e {
            IntakeError::Fields(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_campaign_lists_every_bad_field_and_each_bad_recipient_by_index() {
        let now = OffsetDateTime::now_utc();
        let ok = parse_new_campaign_at(
            br#"{"content":"Hi!","priority":"low","recipientIds":["fan_1","fan_2","fan_1"]}"#,
            now,
        )
        .unwrap();
        assert_eq!(ok.recipients.len(), 3);
        assert_eq!(ok.spec.priority, Priority::Low);
        let bad = parse_new_campaign_at(
            br#"{"content":"","priority":"urgent","sendAt":"tomorrow","recipientIds":["ok","bad id",7],"extra":1}"#,
            now,
        )
        .unwrap_err();
        let mut f = fields_of(bad);
        f.sort();
        assert_eq!(
            f,
            [
                "content",
                "extra",
                "priority",
                "recipientIds[1]",
                "recipientIds[2]",
                "sendAt"
            ]
        );
        let none = parse_new_campaign_at(br#"{"content":"x","recipientIds":[]}"#, now).unwrap_err();
        assert_eq!(fields_of(none), ["recipientIds"]);
        let many: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("f{i}")).collect();
        let body =
            serde_json::to_vec(&serde_json::json!({"content":"x","recipientIds":many})).unwrap();
        assert_eq!(
            fields_of(parse_new_campaign_at(&body, now).unwrap_err()),
            ["recipientIds"]
        );
        let missing = parse_new_campaign_at(br#"{}"#, now).unwrap_err();
        let mut f = fields_of(missing);
        f.sort();
        assert_eq!(f, ["content", "recipientIds"]);
        assert!(matches!(
            parse_new_campaign_at(b"[]", now),
            Err(IntakeError::NotAnObject)
        ));
    }

    #[test]
    fn recipients_bodies_take_only_recipient_ids() {
        assert_eq!(
            parse_recipients(br#"{"recipientIds":["a","b"]}"#)
                .unwrap()
                .len(),
            2
        );
        let mut f = fields_of(
            parse_recipients(br#"{"recipientIds":["a","b c"],"content":"x"}"#).unwrap_err(),
        );
        f.sort();
        assert_eq!(f, ["content", "recipientIds[1]"]);
        assert!(matches!(
            parse_recipients(b"{"),
            Err(IntakeError::Malformed(_))
        ));
    }

    #[test]
    fn a_campaign_fingerprint_covers_its_recipients() {
        let now = OffsetDateTime::now_utc();
        let a = parse_new_campaign_at(br#"{"content":"x","recipientIds":["a","b"]}"#, now).unwrap();
        let b =
            parse_new_campaign_at(br#"{ "recipientIds":["a","b"], "content":"x" }"#, now).unwrap();
        let c = parse_new_campaign_at(br#"{"content":"x","recipientIds":["a","c"]}"#, now).unwrap();
        assert_eq!(campaign_fingerprint(&a), campaign_fingerprint(&b));
        assert_ne!(campaign_fingerprint(&a), campaign_fingerprint(&c));
    }
}
