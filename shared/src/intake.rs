//! Request body to [`NewMessage`]: every field checked, every error collected.
//!
//! The body is read as a JSON object first and each field is then parsed into
//! its domain type on its own, so a 400 lists all bad fields at once rather
//! than the first one serde trips over.

use crate::message::{Content, MEDIA_URLS_MAX, MediaUrls, NewMessage, Priority, RecipientId};
use crate::problem::FieldError;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest accepted body (the contract's 413 threshold, SQS's message limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

const KNOWN_FIELDS: [&str; 4] = ["recipientId", "content", "priority", "mediaUrls"];

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

/// Parses a request body into a [`NewMessage`].
pub fn parse_new_message(body: &[u8]) -> Result<NewMessage, IntakeError> {
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
                "unknown field; allowed fields are recipientId, content, priority, mediaUrls",
            ));
        }
    }

    let recipient = required_str(&obj, "recipientId", &mut errors).and_then(|s| {
        RecipientId::parse(s)
            .map_err(|e| errors.push(FieldError::new("recipientId", e.0)))
            .ok()
    });
    let content = required_str(&obj, "content", &mut errors).and_then(|s| {
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
            let mut ok = Vec::with_capacity(items.len());
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
            for (i, item) in items.iter().enumerate() {
                let field = format!("mediaUrls[{i}]");
                match item {
                    Value::String(s) => match MediaUrls::parse_one(s) {
                        Ok(u) => ok.push(u),
                        Err(e) => errors.push(FieldError::new(field, e.0)),
                    },
                    other => errors.push(FieldError::new(
                        field,
                        format!("must be a string, got {}", json_type(other)),
                    )),
                }
            }
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

    match (recipient, content, priority, media) {
        (Some(recipient_id), Some(content), Some(priority), Some(media_urls))
            if errors.is_empty() =>
        {
            Ok(NewMessage {
                recipient_id,
                content,
                priority,
                media_urls,
            })
        }
        _ => Err(IntakeError::Fields(errors)),
    }
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
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
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
    fn fingerprint_ignores_formatting_but_not_meaning() {
        let a = parse_new_message(br#"{"recipientId":"f","content":"x"}"#).unwrap();
        let b = parse_new_message(br#"{ "content":"x",  "recipientId":"f", "priority":"medium" }"#)
            .unwrap();
        let c = parse_new_message(br#"{"recipientId":"f","content":"y"}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
