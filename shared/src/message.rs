//! Domain values and the versioned queue-message format.
//!
//! Parse, don't validate: each newtype's only constructor checks its input,
//! so a `RecipientId` or a `Content` in hand is always valid. The producer
//! builds them from a request body ([`crate::intake`]); the consumer builds
//! them again from the queue body ([`QueueMessage::parse`]), because a queue
//! can hold anything anyone sent to it.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use uuid::Uuid;

/// The queue body's schema version this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest recipient id the OnlyFans API accepts, in characters.
pub const RECIPIENT_ID_MAX: usize = 64;
/// Longest message text, in Unicode scalar values (not bytes).
pub const CONTENT_MAX_CHARS: usize = 5000;
/// Most media attachments one message may carry.
pub const MEDIA_URLS_MAX: usize = 10;
/// Longest media URL; longer ones are refused rather than truncated.
pub const MEDIA_URL_MAX_LEN: usize = 2048;
/// Longest account id (a JWT `sub`).
pub const ACCOUNT_ID_MAX: usize = 128;
/// How far ahead a message may be scheduled (`sendAt`).
pub const SEND_AT_MAX_AHEAD: time::Duration = time::Duration::days(30);

/// Why a domain value was refused. The text is shown to API clients, so it
/// says what to fix and never echoes the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// The account a message is sent from: the bearer token's `sub`.
///
/// It becomes part of Redis keys (inside a `{...}` hash tag) and of the
/// upstream URL path, so braces, slashes and whitespace are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len == 0 || len > ACCOUNT_ID_MAX {
            return Err(invalid(format!("must be 1 to {ACCOUNT_ID_MAX} characters")));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@' | '|'))
        {
            return Err(invalid("may only contain letters, digits and _ - . : @ |"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fan a message goes to: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RecipientId(String);

impl RecipientId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len == 0 || len > RECIPIENT_ID_MAX {
            return Err(invalid(format!(
                "must be 1 to {RECIPIENT_ID_MAX} characters"
            )));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "may only contain letters A-Z a-z, digits, '_' and '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text: 1–5000 characters (Unicode scalar values), not only whitespace.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Content(String);

impl Content {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len == 0 {
            return Err(invalid("must not be empty"));
        }
        if len > CONTENT_MAX_CHARS {
            return Err(invalid(format!(
                "must be at most {CONTENT_MAX_CHARS} characters (got {len})"
            )));
        }
        if raw.chars().all(char::is_whitespace) {
            return Err(invalid("must not be only whitespace"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Content is the user's private text: it never reaches a log line.
impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Content({} chars)", self.0.chars().count())
    }
}

/// Delivery priority. `High` may use the whole bucket; the others leave a
/// reserve for it (see [`crate::limiter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(invalid("must be one of: low, medium, high")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most ten absolute `https` URLs with a host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct MediaUrls(Vec<String>);

impl MediaUrls {
    /// Checks one URL; used per element so each bad one is reported by index.
    pub fn parse_one(raw: &str) -> Result<String, Invalid> {
        if raw.len() > MEDIA_URL_MAX_LEN {
            return Err(invalid(format!(
                "must be at most {MEDIA_URL_MAX_LEN} bytes"
            )));
        }
        // The URL parser strips leading and trailing spaces and control
        // characters and drops tabs and newlines inside; the raw string is
        // what goes upstream, so it must not hold any.
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("must not contain whitespace or control characters"));
        }
        let url = url::Url::parse(raw).map_err(|_| invalid("must be an absolute URL"))?;
        if url.scheme() != "https" {
            return Err(invalid("must use https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("must have a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not contain credentials"));
        }
        Ok(raw.to_owned())
    }

    /// Builds the list from already-checked URLs.
    pub fn new(urls: Vec<String>) -> Result<Self, Invalid> {
        if urls.len() > MEDIA_URLS_MAX {
            return Err(invalid(format!(
                "must hold at most {MEDIA_URLS_MAX} URLs (got {})",
                urls.len()
            )));
        }
        for u in &urls {
            Self::parse_one(u)?;
        }
        Ok(Self(urls))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A message's id: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| invalid("must be a UUID"))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Any UUID as an id (the idempotency protocol keeps a campaign's id
    /// in the same slot as a message's).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A validated request to send one message, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub recipient_id: RecipientId,
    pub content: Content,
    pub priority: Priority,
    pub media_urls: MediaUrls,
    /// Not before this time (`sendAt`, as given: a time in the past means
    /// now). At most [`SEND_AT_MAX_AHEAD`] ahead of when it was accepted.
    pub send_at: Option<OffsetDateTime>,
}

/// The queue body, version 1: what the producer enqueues and the consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: MessageId,
    pub account_id: AccountId,
    pub recipient_id: RecipientId,
    pub content: Content,
    pub priority: Priority,
    pub media_urls: MediaUrls,
    /// When the producer accepted it (shown to users, and the start of the
    /// DeliveryLatency metric).
    pub created_at: OffsetDateTime,
    /// The upstream never gets it before this time.
    pub send_at: Option<OffsetDateTime>,
}

/// Serialised form of [`QueueMessage`]; unknown fields are refused so a
/// message from a newer writer is never half-understood.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireV1 {
    schema_version: u32,
    message_id: Uuid,
    account_id: String,
    recipient_id: String,
    content: String,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    media_urls: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Added with scheduled send: absent in older bodies, which still parse.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    send_at: Option<OffsetDateTime>,
}

/// Why a queue body is poison. Shown in the DLQ's `PoisonReason` attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoisonReason {
    #[error("body is not valid JSON of the queue format: {0}")]
    Malformed(String),
    #[error("unknown schema version {0} (this consumer reads {SCHEMA_VERSION})")]
    UnknownVersion(u64),
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl QueueMessage {
    pub fn new(
        message_id: MessageId,
        account_id: AccountId,
        msg: NewMessage,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            message_id,
            account_id,
            recipient_id: msg.recipient_id,
            content: msg.content,
            priority: msg.priority,
            media_urls: msg.media_urls,
            created_at,
            send_at: msg.send_at,
        }
    }

    /// The JSON written to SQS.
    pub fn to_body(&self) -> String {
        let wire = WireV1 {
            schema_version: SCHEMA_VERSION,
            message_id: self.message_id.as_uuid(),
            account_id: self.account_id.as_str().to_owned(),
            recipient_id: self.recipient_id.as_str().to_owned(),
            content: self.content.as_str().to_owned(),
            priority: self.priority,
            media_urls: self.media_urls.as_slice().to_vec(),
            created_at: self.created_at,
            send_at: self.send_at,
        };
        // Serialising plain strings, numbers and a well-formed timestamp into
        // a String cannot fail; fall back to an empty object rather than panic.
        serde_json::to_string(&wire).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a queue body; anything that is not a valid v1 message is poison.
    pub fn parse(body: &str) -> Result<Self, PoisonReason> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| PoisonReason::Malformed(e.to_string()))?;
        match value
            .get("schemaVersion")
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => return Err(PoisonReason::UnknownVersion(v)),
            None => {
                return Err(PoisonReason::Malformed(
                    "missing or non-integer schemaVersion".into(),
                ));
            }
        }
        let wire: WireV1 =
            serde_json::from_value(value).map_err(|e| PoisonReason::Malformed(e.to_string()))?;
        let field = |field: &'static str| {
            move |e: Invalid| PoisonReason::InvalidField { field, reason: e.0 }
        };
        Ok(Self {
            message_id: MessageId(wire.message_id),
            account_id: AccountId::parse(&wire.account_id).map_err(field("accountId"))?,
            recipient_id: RecipientId::parse(&wire.recipient_id).map_err(field("recipientId"))?,
            content: Content::parse(&wire.content).map_err(field("content"))?,
            priority: wire.priority,
            media_urls: MediaUrls::new(wire.media_urls).map_err(field("mediaUrls"))?,
            created_at: wire.created_at,
            send_at: wire.send_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QueueMessage {
        QueueMessage::new(
            MessageId::new(),
            AccountId::parse("acct_1").unwrap(),
            NewMessage {
                recipient_id: RecipientId::parse("fan_123").unwrap(),
                content: Content::parse("Hello!").unwrap(),
                priority: Priority::High,
                media_urls: MediaUrls::new(vec!["https://cdn.example.com/a.jpg".into()]).unwrap(),
                send_at: None,
            },
            OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        )
    }

    #[test]
    fn queue_body_round_trips() {
        let m = sample();
        assert_eq!(QueueMessage::parse(&m.to_body()).unwrap(), m);
    }

    #[test]
    fn send_at_round_trips_and_old_bodies_still_parse() {
        let mut m = sample();
        let body = m.to_body();
        assert!(!body.contains("sendAt"), "absent when unset: {body}");
        // A body written before scheduled send existed.
        assert_eq!(QueueMessage::parse(&body).unwrap().send_at, None);
        m.send_at = Some(OffsetDateTime::from_unix_timestamp(1_700_003_600).unwrap());
        assert!(m.to_body().contains(r#""sendAt":"2023-11-14T23:13:20Z""#));
        assert_eq!(QueueMessage::parse(&m.to_body()).unwrap(), m);
        let mut v: serde_json::Value = serde_json::from_str(&m.to_body()).unwrap();
        v["sendAt"] = "tomorrow".into();
        assert!(matches!(
            QueueMessage::parse(&v.to_string()),
            Err(PoisonReason::Malformed(_))
        ));
    }

    #[test]
    fn poison_bodies_are_named() {
        assert!(matches!(
            QueueMessage::parse("not json"),
            Err(PoisonReason::Malformed(_))
        ));
        assert!(matches!(
            QueueMessage::parse("{}"),
            Err(PoisonReason::Malformed(_))
        ));
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_body()).unwrap();
        v["schemaVersion"] = 2.into();
        assert_eq!(
            QueueMessage::parse(&v.to_string()),
            Err(PoisonReason::UnknownVersion(2))
        );
        v["schemaVersion"] = 1.into();
        v["recipientId"] = "bad id!".into();
        assert!(matches!(
            QueueMessage::parse(&v.to_string()),
            Err(PoisonReason::InvalidField {
                field: "recipientId",
                ..
            })
        ));
        v["recipientId"] = "ok".into();
        v["extra"] = true.into();
        assert!(matches!(
            QueueMessage::parse(&v.to_string()),
            Err(PoisonReason::Malformed(_))
        ));
    }

    #[test]
    fn recipient_bounds() {
        assert!(RecipientId::parse("").is_err());
        assert!(RecipientId::parse("a").is_ok());
        assert!(RecipientId::parse(&"a".repeat(64)).is_ok());
        assert!(RecipientId::parse(&"a".repeat(65)).is_err());
        assert!(RecipientId::parse("fan 1").is_err());
        assert!(RecipientId::parse("fän").is_err());
        assert!(RecipientId::parse("A-z_09").is_ok());
    }

    #[test]
    fn content_counts_characters_not_bytes() {
        assert!(Content::parse("").is_err());
        assert!(Content::parse(" \n\t ").is_err());
        assert!(Content::parse("x").is_ok());
        assert!(Content::parse(&"é".repeat(5000)).is_ok()); // 10 000 bytes
        assert!(Content::parse(&"é".repeat(5001)).is_err());
        assert!(Content::parse(&"😀".repeat(5000)).is_ok());
        assert!(Content::parse(&"a".repeat(5001)).is_err());
    }

    #[test]
    fn content_debug_hides_text() {
        let c = Content::parse("secret words").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn media_urls_rules() {
        assert!(MediaUrls::parse_one("https://x.example/a.png").is_ok());
        assert!(MediaUrls::parse_one("http://x.example/a.png").is_err());
        assert!(MediaUrls::parse_one("ftp://x.example/a.png").is_err());
        assert!(MediaUrls::parse_one("not a url").is_err());
        assert!(MediaUrls::parse_one("https://").is_err());
        assert!(MediaUrls::parse_one("https://user:pw@x.example/").is_err());
        // Found by fuzzing: the URL parser accepts these, the raw string kept them.
        assert!(MediaUrls::parse_one(" https://x.example/a").is_err());
        assert!(MediaUrls::parse_one("https://x.example/a\n").is_err());
        assert!(MediaUrls::parse_one("https://x.exa\tmple/a").is_err());
        assert!(MediaUrls::parse_one("\u{0}https://x.example/a").is_err());
        assert!(MediaUrls::parse_one("https://x.example/\u{a0}").is_err());
        assert!(MediaUrls::parse_one("https://bücher.example/ä.png").is_ok());
        assert!(MediaUrls::parse_one(&format!("https://x.example/{}", "a".repeat(2100))).is_err());
        let ten = vec!["https://x.example/a".to_string(); 10];
        assert!(MediaUrls::new(ten.clone()).is_ok());
        let mut eleven = ten;
        eleven.push("https://x.example/b".into());
        assert!(MediaUrls::new(eleven).is_err());
    }

    #[test]
    fn account_ids_are_key_and_path_safe() {
        assert!(AccountId::parse("acct_1").is_ok());
        assert!(AccountId::parse("auth0|abc").is_ok());
        assert!(AccountId::parse("a{b}").is_err());
        assert!(AccountId::parse("a/b").is_err());
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn message_ids_are_v7() {
        let id = MessageId::new();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(MessageId::parse(&id.to_string()).unwrap(), id);
        assert!(MessageId::parse("nope").is_err());
    }
}
