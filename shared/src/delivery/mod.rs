//! The OnlyFans API: the client, what its answers mean, and what the
//! consumer does about them.
//!
//! [`classify`] is the one place that turns an upstream answer into an
//! outcome (sent, rate limited, transient, permanent); it is a plain function
//! so every status code's meaning is unit-tested without a server.
//! [`policy`] holds every "what next" rule of delivery as a pure function.
//! [`Upstream`] is the port the consumer calls; [`OnlyFansClient`] is its
//! real adapter.

pub mod policy;

use crate::clock::Clock;
use crate::config::Secret;
use crate::message::QueueMessage;
use crate::ssm::SecretSource;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::RwLock;
use tokio::time::Instant;

/// Used when a 429 carries no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Upstream reasons kept in status records are cut to this many characters.
const REASON_MAX_CHARS: usize = 500;

/// What became of one upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: delivered; the upstream's message id if it sent one.
    Sent { upstream_id: Option<String> },
    /// 429: not a failure; the account must wait this long.
    RateLimited { retry_after: Duration },
    /// 408, 5xx, timeout, connection error: try again later.
    Transient { reason: String },
    /// 401: our token was refused (it may have been rotated): refresh, retry.
    Unauthorized { reason: String },
    /// Any other 4xx: the upstream will never accept this message.
    Permanent { status: u16, reason: String },
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn reason_from_body(status: u16, body: &str) -> String {
    // Prefer a JSON error message; fall back to the raw text, cut short.
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "error", "detail", "title"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    let text: String = text.chars().take(REASON_MAX_CHARS).collect();
    if text.is_empty() {
        format!("upstream answered {status}")
    } else {
        format!("upstream answered {status}: {text}")
    }
}

/// What an HTTP answer from the OnlyFans API means.
/// `now` reads a `Retry-After` given as an HTTP date.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str, now: SystemTime) -> Outcome {
    match status {
        200..=299 => {
            let upstream_id = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| match v.get("id") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                });
            Outcome::Sent { upstream_id }
        }
        429 => Outcome::RateLimited {
            retry_after: parse_retry_after(retry_after, now).unwrap_or(DEFAULT_RETRY_AFTER),
        },
        401 => Outcome::Unauthorized {
            reason: reason_from_body(status, body),
        },
        408 | 500..=599 => Outcome::Transient {
            reason: reason_from_body(status, body),
        },
        400..=499 => Outcome::Permanent {
            status,
            reason: reason_from_body(status, body),
        },
        // 1xx/3xx should never reach us (redirects are not followed): treat as
        // transient so a misbehaving proxy does not lose messages.
        _ => Outcome::Transient {
            reason: format!("unexpected upstream status {status}"),
        },
    }
}

/// The OnlyFans API as the consumer needs it.
pub trait Upstream: Send + Sync {
    /// Sends one message. Never fails: transport errors are an [`Outcome`].
    fn send(&self, msg: &QueueMessage) -> impl Future<Output = CallResult> + Send;
    /// Re-reads the API token (after a 401: it may have been rotated).
    fn refresh_token(&self) -> impl Future<Output = ()> + Send;
}

/// Uniform samples in [0, 1) for the backoff's jitter. Not cryptographic
/// (fastrand's wyrand); seeded, so the simulation replays a run exactly.
#[derive(Debug)]
pub struct Jitter(Mutex<fastrand::Rng>);

impl Jitter {
    /// Seeded from the process's entropy (production).
    pub fn new() -> Self {
        Self(Mutex::new(fastrand::Rng::new()))
    }

    /// The same sequence for the same seed.
    pub fn seeded(seed: u64) -> Self {
        Self(Mutex::new(fastrand::Rng::with_seed(seed)))
    }

    pub fn sample(&self) -> f64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).f64()
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

/// The OnlyFans API client: one `reqwest::Client` (connection reuse,
/// connect and total timeouts) built at cold start.
#[derive(Clone)]
pub struct OnlyFansClient {
    http: reqwest::Client,
    base: url::Url,
    token: Arc<RwLock<Secret>>,
    /// Where the token is read again after a 401 (Secrets Manager or SSM in
    /// AWS; none locally, where it never changes).
    token_source: Option<SecretSource>,
    /// Wall time for `Retry-After` dates.
    clock: Clock,
}

/// One upstream call's outcome and duration.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub outcome: Outcome,
    pub latency: Duration,
}

impl OnlyFansClient {
    pub fn new(
        base: url::Url,
        token: Secret,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        crate::tls::install();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("outbound-messages/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            token: Arc::new(RwLock::new(token)),
            token_source: None,
            clock: Clock::system(),
        })
    }

    /// Reads the token again from `source` after a 401.
    pub fn with_token_source(mut self, source: Option<SecretSource>) -> Self {
        self.token_source = source;
        self
    }

    /// Reads `Retry-After` dates against this clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the token (after a 401 and a fresh read of the secret).
    pub async fn set_token(&self, token: Secret) {
        *self.token.write().await = token;
    }

    /// `{base}/v1/accounts/{accountId}/chats/{recipientId}/messages`, with
    /// each id percent-encoded as a path segment.
    pub fn url_for(&self, msg: &QueueMessage) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend([
                "v1",
                "accounts",
                msg.account_id.as_str(),
                "chats",
                msg.recipient_id.as_str(),
                "messages",
            ]);
        }
        url
    }

    async fn call(&self, msg: &QueueMessage) -> CallResult {
        let started = Instant::now();
        let body = serde_json::json!({
            "text": msg.content.as_str(),
            "mediaUrls": msg.media_urls.as_slice(),
        });
        let token = self.token.read().await.expose().to_owned();
        let result = self
            .http
            .post(self.url_for(msg))
            .bearer_auth(token)
            .header("Idempotency-Key", msg.message_id.to_string())
            .json(&body)
            .send()
            .await;
        let outcome = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = resp.text().await.unwrap_or_default();
                classify(
                    status,
                    retry_after.as_deref(),
                    &text,
                    self.clock.now_system(),
                )
            }
            Err(e) if e.is_timeout() => Outcome::Transient {
                reason: "upstream timed out".into(),
            },
            Err(e) if e.is_connect() => Outcome::Transient {
                reason: "could not connect to the upstream".into(),
            },
            Err(_) => Outcome::Transient {
                reason: "upstream connection failed".into(),
            },
        };
        CallResult {
            outcome,
            latency: started.elapsed(),
        }
    }
}

impl Upstream for OnlyFansClient {
    async fn send(&self, msg: &QueueMessage) -> CallResult {
        self.call(msg).await
    }

    async fn refresh_token(&self) {
        let Some(source) = &self.token_source else {
            return;
        };
        match source.read().await {
            Ok(token) => self.set_token(token).await,
            Err(e) => tracing::error!(error = %e, "could not re-read the OnlyFans API token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `super::classify` at a fixed time (only a `Retry-After` date reads it).
    fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
        super::classify(status, retry_after, body, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn a_retry_after_date_is_read_against_the_given_clock() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            super::classify(429, Some("Wed, 21 Oct 2015 07:38:00 GMT"), "", now),
            Outcome::RateLimited {
                retry_after: Duration::from_secs(600)
            }
        );
    }

    #[test]
    fn success_keeps_the_upstream_id() {
        assert_eq!(
            classify(200, None, r#"{"id":"ofm_1"}"#),
            Outcome::Sent {
                upstream_id: Some("ofm_1".into())
            }
        );
        assert_eq!(
            classify(201, None, r#"{"id":42}"#),
            Outcome::Sent {
                upstream_id: Some("42".into())
            }
        );
        assert_eq!(classify(204, None, ""), Outcome::Sent { upstream_id: None });
    }

    #[test]
    fn rate_limit_honours_retry_after() {
        assert_eq!(
            classify(429, Some("7"), ""),
            Outcome::RateLimited {
                retry_after: Duration::from_secs(7)
            }
        );
        assert_eq!(
            classify(429, None, ""),
            Outcome::RateLimited {
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
        assert_eq!(
            classify(429, Some("soon"), ""),
            Outcome::RateLimited {
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:27:00 GMT"), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn transient_and_permanent() {
        for s in [408, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, None, ""), Outcome::Transient { .. }),
                "{s}"
            );
        }
        for s in [400, 403, 404, 409, 410, 422] {
            assert!(
                matches!(classify(s, None, ""), Outcome::Permanent { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            classify(401, None, ""),
            Outcome::Unauthorized { .. }
        ));
        assert!(matches!(classify(302, None, ""), Outcome::Transient { .. }));
    }

    #[test]
    fn permanent_reason_comes_from_the_body() {
        let Outcome::Permanent { reason, .. } = classify(
            403,
            None,
            r#"{"error":"blocked","message":"fan blocked you"}"#,
        ) else {
            panic!()
        };
        assert_eq!(reason, "upstream answered 403: fan blocked you");
        let Outcome::Permanent { reason, .. } = classify(404, None, &"x".repeat(2000)) else {
            panic!()
        };
        assert!(reason.chars().count() < 600);
    }
}
