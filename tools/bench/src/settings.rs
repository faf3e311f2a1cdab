//! `stack-settings.json`: the settings the run's stacks were started with,
//! for the report. Each value is written as the number it was given (the
//! environment's text, checked to be a JSON number), so `600` stays `600`.

use anyhow::{Context, Result, ensure};
use serde_json::{Map, Value};

/// The report's keys, in the order they are written.
pub const KEYS: [&str; 11] = [
    "max_concurrency",
    "rate_per_minute",
    "burst",
    "spread_visibility_timeout",
    "spread_in_process_wait_ms",
    "naive_visibility_timeout",
    "naive_in_process_wait_ms",
    "stub_tolerance_ms",
    "lambda_port",
    "sqs_port",
    "stub_port",
];

/// Builds the object from `(key, text)` pairs; every key of [`KEYS`] once.
pub fn build(pairs: &[(&str, &str)]) -> Result<Value> {
    let mut obj = Map::new();
    for (key, text) in pairs {
        ensure!(KEYS.contains(key), "unknown setting {key}");
        obj.insert((*key).to_owned(), number(key, text)?);
    }
    for key in KEYS {
        ensure!(obj.contains_key(key), "setting {key} is missing");
    }
    Ok(Value::Object(obj))
}

fn number(key: &str, text: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text.trim())
        .with_context(|| format!("{key}: {text:?} is not a number"))?;
    ensure!(v.is_number(), "{key}: {text:?} is not a number");
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(value: &str) -> Vec<(&'static str, String)> {
        KEYS.iter().map(|k| (*k, value.to_owned())).collect()
    }

    #[test]
    fn numbers_keep_their_form() {
        let mut pairs = all("10");
        pairs[1].1 = "600".into();
        pairs[2].1 = "2.5".into();
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let v = build(&borrowed).unwrap();
        assert_eq!(v["rate_per_minute"].to_string(), "600");
        assert_eq!(v["burst"].to_string(), "2.5");
        assert_eq!(v.as_object().unwrap().len(), KEYS.len());
    }

    #[test]
    fn refuses_text_missing_and_unknown_keys() {
        assert!(build(&[("burst", "ten")]).is_err());
        assert!(build(&[("burst", "10")]).is_err());
        let mut pairs: Vec<(&str, &str)> = KEYS.iter().map(|k| (*k, "1")).collect();
        pairs.push(("colour", "1"));
        assert!(build(&pairs).is_err());
    }
}
