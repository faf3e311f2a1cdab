//! Injected faults: rules added through `POST /__faults` that make the stub
//! answer like a misbehaving upstream.

use serde::{Deserialize, Serialize};

/// Longest accepted `delayMs` for a `slow` rule (one minute).
pub const MAX_DELAY_MS: u64 = 60_000;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Answer the rule's `status` with an error body (and `Retry-After` when set).
    Status,
    /// Sleep `delayMs`, then answer normally.
    Slow,
    /// Drop the connection without any answer.
    Reset,
}

impl FaultKind {
    /// The name recorded in the `fault` field of a request record.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Slow => "slow",
            Self::Reset => "reset",
        }
    }
}

/// Body of `POST /__faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// Only calls for this account match; absent means every account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// What the rule does.
    pub kind: FaultKind,
    /// HTTP status to answer (kind `status` only; 400–599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` seconds to send (kind `status` only; a 429 gets 1 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// How long to sleep before answering (kind `slow` only; at most [`MAX_DELAY_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// The rule applies to the next `count` matching calls, then is spent; absent: until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Reason put in the error body's `message` (kind `status` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl FaultSpec {
    /// Checks that the fields fit the kind.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.count == Some(0) {
            return Err("count must be at least 1 (omit it for a rule that never expires)".into());
        }
        match self.kind {
            FaultKind::Status => {
                match self.status {
                    None => return Err("kind \"status\" needs a status".into()),
                    Some(s) if !(400..=599).contains(&s) => {
                        return Err(format!("status must be 400-599, got {s}"));
                    }
                    Some(_) => {}
                }
                if self.delay_ms.is_some() {
                    return Err("delayMs is only for kind \"slow\"".into());
                }
            }
            FaultKind::Slow => {
                match self.delay_ms {
                    None => return Err("kind \"slow\" needs delayMs".into()),
                    Some(d) if d > MAX_DELAY_MS => {
                        return Err(format!("delayMs must be at most {MAX_DELAY_MS}, got {d}"));
                    }
                    Some(_) => {}
                }
                self.only_for_status()?;
            }
            FaultKind::Reset => {
                if self.delay_ms.is_some() {
                    return Err("delayMs is only for kind \"slow\"".into());
                }
                self.only_for_status()?;
            }
        }
        Ok(())
    }

    fn only_for_status(&self) -> Result<(), String> {
        if self.status.is_some() || self.retry_after.is_some() || self.message.is_some() {
            return Err("status, retryAfter and message are only for kind \"status\"".into());
        }
        Ok(())
    }
}

/// A stored rule, as `GET /__faults` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Identifier, unique since the stub started.
    pub id: u64,
    /// Only calls for this account match; `null` means every account.
    pub account: Option<String>,
    /// What the rule does.
    pub kind: FaultKind,
    /// HTTP status answered (kind `status`).
    pub status: Option<u16>,
    /// `Retry-After` seconds sent (kind `status`).
    pub retry_after: Option<u64>,
    /// Sleep before answering (kind `slow`).
    pub delay_ms: Option<u64>,
    /// Matching calls left before the rule is spent; `null` means unlimited.
    pub remaining: Option<u32>,
    /// Reason put in the error body (kind `status`).
    pub message: Option<String>,
}

impl FaultRule {
    /// A rule from a validated spec.
    #[must_use]
    pub fn new(id: u64, spec: FaultSpec) -> Self {
        let retry_after = match (spec.kind, spec.status, spec.retry_after) {
            (FaultKind::Status, Some(429), None) => Some(1),
            (_, _, given) => given,
        };
        Self {
            id,
            account: spec.account,
            kind: spec.kind,
            status: spec.status,
            retry_after,
            delay_ms: spec.delay_ms,
            remaining: spec.count,
            message: spec.message,
        }
    }

    fn matches(&self, account: &str) -> bool {
        self.account.as_deref().is_none_or(|a| a == account)
    }
}

/// Takes the first rule (in insertion order) that matches `account`, using up
/// one of its calls and removing it once spent. Returns a copy as it was applied.
pub fn take_matching(rules: &mut Vec<FaultRule>, account: &str) -> Option<FaultRule> {
    let index = rules.iter().position(|r| r.matches(account))?;
    let applied = rules[index].clone();
    let spent = match rules[index].remaining.as_mut() {
        Some(left) => {
            *left = left.saturating_sub(1);
            *left == 0
        }
        None => false,
    };
    if spent {
        rules.remove(index);
    }
    Some(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            account: None,
            kind,
            status: None,
            retry_after: None,
            delay_ms: None,
            count: None,
            message: None,
        }
    }

    #[test]
    fn validation_matches_fields_to_kinds() {
        assert!(spec(FaultKind::Status).validate().is_err());
        assert!(
            FaultSpec {
                status: Some(503),
                ..spec(FaultKind::Status)
            }
            .validate()
            .is_ok()
        );
        assert!(
            FaultSpec {
                status: Some(200),
                ..spec(FaultKind::Status)
            }
            .validate()
            .is_err()
        );
        assert!(spec(FaultKind::Slow).validate().is_err());
        assert!(spec(FaultKind::Reset).validate().is_ok());
        assert!(
            FaultSpec {
                status: Some(500),
                ..spec(FaultKind::Reset)
            }
            .validate()
            .is_err()
        );
        assert!(
            FaultSpec {
                count: Some(0),
                ..spec(FaultKind::Reset)
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn first_matching_rule_wins_and_counts_expire() {
        let mut rules = vec![
            FaultRule::new(
                1,
                FaultSpec {
                    account: Some("a".into()),
                    count: Some(2),
                    ..spec(FaultKind::Reset)
                },
            ),
            FaultRule::new(
                2,
                FaultSpec {
                    status: Some(429),
                    ..spec(FaultKind::Status)
                },
            ),
        ];
        assert_eq!(rules[1].retry_after, Some(1));
        assert_eq!(take_matching(&mut rules, "b").map(|r| r.id), Some(2));
        assert_eq!(take_matching(&mut rules, "a").map(|r| r.id), Some(1));
        assert_eq!(rules[0].remaining, Some(1));
        assert_eq!(take_matching(&mut rules, "a").map(|r| r.id), Some(1));
        assert_eq!(rules.len(), 1);
        assert_eq!(take_matching(&mut rules, "a").map(|r| r.id), Some(2));
        rules.clear();
        assert_eq!(take_matching(&mut rules, "a"), None);
    }
}
