//! Stub configuration: the limit it enforces and the token it accepts.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::limit::RateLimit;

/// Default sustained rate, messages per minute per account (the contract's default).
pub const DEFAULT_RATE_PER_MINUTE: f64 = 10.0;
/// Default bucket capacity (the contract's default).
pub const DEFAULT_BURST: u32 = 10;
/// Default jitter tolerance in milliseconds.
pub const DEFAULT_TOLERANCE_MS: u64 = 100;
/// Default bearer token, the same local dummy the consumer uses.
pub const DEFAULT_API_TOKEN: &str = "local-dev-onlyfans-token";
/// Default listen address of the binary.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8787";
/// Largest accepted tolerance (one hour); more would make the check meaningless.
pub const MAX_TOLERANCE_MS: u64 = 3_600_000;

/// What the stub enforces. Every field can be changed at run time through
/// `PUT /__config` or `POST /__reset` except the token.
#[derive(Debug, Clone, PartialEq)]
pub struct StubConfig {
    /// Sustained messages per minute per account (`r * 60`); fractional allowed, never negative.
    pub rate_per_minute: f64,
    /// Bucket capacity: how many messages one account may send at the same instant.
    pub burst: u32,
    /// Jitter tolerance in milliseconds added to every interval before judging it.
    pub tolerance_ms: u64,
    /// The only bearer token accepted in `Authorization: Bearer <token>`. Never logged.
    pub api_token: String,
}

impl Default for StubConfig {
    fn default() -> Self {
        Self {
            rate_per_minute: DEFAULT_RATE_PER_MINUTE,
            burst: DEFAULT_BURST,
            tolerance_ms: DEFAULT_TOLERANCE_MS,
            api_token: DEFAULT_API_TOKEN.to_owned(),
        }
    }
}

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// An environment variable holds something that does not parse.
    #[error("environment variable {name} is not a valid {expected}: {value:?}")]
    Unparsable {
        /// The variable's name.
        name: String,
        /// What it should have been.
        expected: &'static str,
        /// What it was.
        value: String,
    },
    /// A value parses but is outside the allowed range.
    #[error("{0}")]
    OutOfRange(String),
}

impl StubConfig {
    /// Reads the configuration from the environment:
    ///
    /// | variable | fallback | default |
    /// | --- | --- | --- |
    /// | `STUB_RATE_LIMIT_PER_MINUTE` | `RATE_LIMIT_PER_MINUTE` | 10 |
    /// | `STUB_BURST` | `RATE_LIMIT_BURST` | 10 |
    /// | `STUB_TOLERANCE_MS` | | 100 |
    /// | `ONLYFANS_API_TOKEN` | | `local-dev-onlyfans-token` |
    ///
    /// Empty variables count as unset.
    ///
    /// # Errors
    /// When a variable is set but does not parse, or is out of range.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`StubConfig::from_env`] but with an arbitrary variable source (for tests).
    ///
    /// # Errors
    /// When a variable is set but does not parse, or is out of range.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let rate_per_minute = parse_first(
            &get,
            &["STUB_RATE_LIMIT_PER_MINUTE", "RATE_LIMIT_PER_MINUTE"],
            "number",
        )?
        .unwrap_or(DEFAULT_RATE_PER_MINUTE);
        let burst = parse_first(
            &get,
            &["STUB_BURST", "RATE_LIMIT_BURST"],
            "unsigned integer",
        )?
        .unwrap_or(DEFAULT_BURST);
        let tolerance_ms = parse_first(&get, &["STUB_TOLERANCE_MS"], "unsigned integer")?
            .unwrap_or(DEFAULT_TOLERANCE_MS);
        let api_token = get("ONLYFANS_API_TOKEN").unwrap_or_else(|| DEFAULT_API_TOKEN.to_owned());
        let config = Self {
            rate_per_minute,
            burst,
            tolerance_ms,
            api_token,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the ranges: a finite, non-negative rate and a tolerance of at most an hour.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] naming the bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_limit(self.rate_per_minute, self.tolerance_ms).map_err(ConfigError::OutOfRange)
    }

    /// The limit in the form the arithmetic in [`crate::limit`] uses.
    #[must_use]
    pub fn limit(&self) -> RateLimit {
        RateLimit {
            rate_per_minute: self.rate_per_minute,
            burst: self.burst,
            tolerance_us: i64::try_from(self.tolerance_ms.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// The public part of the configuration (no token), as `GET /__stats` shows it.
    #[must_use]
    pub fn view(&self) -> LimitView {
        LimitView {
            rate_per_minute: self.rate_per_minute,
            burst: self.burst,
            tolerance_ms: self.tolerance_ms,
        }
    }

    /// Applies a partial update from `PUT /__config` or `POST /__reset`.
    ///
    /// # Errors
    /// When the result would be out of range; `self` is then unchanged.
    pub fn apply(&mut self, update: &LimitUpdate) -> Result<(), ConfigError> {
        let mut next = self.clone();
        if let Some(rate) = update.rate_per_minute {
            next.rate_per_minute = rate;
        }
        if let Some(burst) = update.burst {
            next.burst = burst;
        }
        if let Some(tolerance) = update.tolerance_ms {
            next.tolerance_ms = tolerance;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

fn validate_limit(rate_per_minute: f64, tolerance_ms: u64) -> Result<(), String> {
    if !rate_per_minute.is_finite() || rate_per_minute < 0.0 {
        return Err(format!(
            "ratePerMinute must be a finite number >= 0, got {rate_per_minute}"
        ));
    }
    if tolerance_ms > MAX_TOLERANCE_MS {
        return Err(format!(
            "toleranceMs must be at most {MAX_TOLERANCE_MS}, got {tolerance_ms}"
        ));
    }
    Ok(())
}

fn parse_first<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    names: &[&str],
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    for name in names {
        if let Some(value) = get(name) {
            return value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::Unparsable {
                    name: (*name).to_owned(),
                    expected,
                    value,
                });
        }
    }
    Ok(None)
}

/// The limit as the control endpoints show it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitView {
    /// Sustained messages per minute per account.
    pub rate_per_minute: f64,
    /// Bucket capacity.
    pub burst: u32,
    /// Jitter tolerance in milliseconds.
    pub tolerance_ms: u64,
}

/// Body of `PUT /__config` and (optionally) `POST /__reset`; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitUpdate {
    /// New sustained rate per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<f64>,
    /// New bucket capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// New tolerance in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        assert_eq!(
            StubConfig::from_lookup(lookup(&[])),
            Ok(StubConfig::default())
        );
    }

    #[test]
    fn stub_variables_win_over_product_variables() {
        let c = StubConfig::from_lookup(lookup(&[
            ("RATE_LIMIT_PER_MINUTE", "30"),
            ("RATE_LIMIT_BURST", "5"),
            ("STUB_BURST", "7"),
            ("STUB_TOLERANCE_MS", "20"),
            ("ONLYFANS_API_TOKEN", "t0k"),
        ]));
        assert_eq!(
            c,
            Ok(StubConfig {
                rate_per_minute: 30.0,
                burst: 7,
                tolerance_ms: 20,
                api_token: "t0k".to_owned(),
            })
        );
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(matches!(
            StubConfig::from_lookup(lookup(&[("STUB_BURST", "-1")])),
            Err(ConfigError::Unparsable { .. })
        ));
        assert!(matches!(
            StubConfig::from_lookup(lookup(&[("STUB_RATE_LIMIT_PER_MINUTE", "-3")])),
            Err(ConfigError::OutOfRange(_))
        ));
        assert!(matches!(
            StubConfig::from_lookup(lookup(&[("STUB_RATE_LIMIT_PER_MINUTE", "NaN")])),
            Err(ConfigError::OutOfRange(_))
        ));
    }

    #[test]
    fn partial_update_keeps_other_fields_and_rejects_bad_ones() {
        let mut c = StubConfig::default();
        let update = LimitUpdate {
            burst: Some(2),
            ..LimitUpdate::default()
        };
        assert_eq!(c.apply(&update), Ok(()));
        assert_eq!(c.burst, 2);
        assert_eq!(c.rate_per_minute, DEFAULT_RATE_PER_MINUTE);
        let bad = LimitUpdate {
            rate_per_minute: Some(f64::INFINITY),
            burst: Some(9),
            ..LimitUpdate::default()
        };
        assert!(c.apply(&bad).is_err());
        assert_eq!(c.burst, 2);
    }
}
