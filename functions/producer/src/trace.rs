//! W3C Trace Context: the `traceparent` a message carries to the consumer.
//!
//! A caller's valid `traceparent` is forwarded as it came, so the consumer's
//! logs join the caller's trace; otherwise the request starts a new trace.

use uuid::Uuid;

/// The `traceparent` to put on the queued message.
pub fn traceparent(header: Option<&[u8]>) -> String {
    header
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(str::trim)
        .filter(|h| is_valid(h))
        .map_or_else(generate, str::to_owned)
}

/// A new sampled `traceparent`: `00-<32 hex trace id>-<16 hex span id>-01`.
/// UUID v4s supply the randomness (122 random bits each; never all zero).
pub fn generate() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let span = Uuid::new_v4().simple().to_string();
    format!("00-{trace}-{}-01", &span[..16])
}

/// Checks version-00 syntax: lowercase hex fields of the right length,
/// trace and parent ids not all zero. Future versions (not `ff`) may append
/// fields after the flags.
pub fn is_valid(h: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = h.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = match version {
        "00" => parts.next().is_none(),
        "ff" => false,
        v => hex(v, 2),
    };
    rest_ok
        && hex(version, 2)
        && hex(trace, 32)
        && nonzero(trace)
        && hex(parent, 16)
        && nonzero(parent)
        && hex(flags, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_headers_are_forwarded() {
        assert_eq!(traceparent(Some(GOOD.as_bytes())), GOOD);
    }

    #[test]
    fn invalid_headers_are_replaced() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let got = traceparent(Some(bad.as_bytes()));
            assert_ne!(got, bad);
            assert!(is_valid(&got), "{got}");
        }
        assert!(is_valid(&traceparent(None)));
        assert!(is_valid(&traceparent(Some(&[0xff, 0xfe]))));
    }
}
