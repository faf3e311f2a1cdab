//! The consumer's queue-body parser on arbitrary input.
//!
//! A queue can hold anything anyone sent to it, so `QueueMessage::parse` must
//! answer every UTF-8 string with `Ok` or a `PoisonReason`, never a panic.
//! What it accepts must survive the producer's side of the contract:
//! `to_body()` of a parsed message parses back to an equal message, and
//! writing that again gives the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::message::{PoisonReason, QueueMessage, SCHEMA_VERSION};

/// `FUZZ_TRACE=1` prints each outcome (to see what seeds reach).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fuzz_target!(|data: &[u8]| {
    // SQS bodies are strings; the consumer only ever sees UTF-8.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = QueueMessage::parse(body);
    if trace() {
        eprintln!("queue_message: {:?}", parsed.as_ref().map(|m| m.message_id));
    }
    match parsed {
        Ok(msg) => {
            let written = msg.to_body();
            let back = QueueMessage::parse(&written)
                .unwrap_or_else(|e| panic!("to_body() of an accepted message is poison: {e}"));
            assert_eq!(back, msg, "round trip changed the message");
            // Equality of OffsetDateTime is by instant; the offset must
            // survive too, or createdAt shown to users would shift.
            assert_eq!(back.created_at.offset(), msg.created_at.offset());
            assert_eq!(back.to_body(), written, "to_body() is not stable");
        }
        Err(PoisonReason::UnknownVersion(v)) => {
            assert_ne!(v, u64::from(SCHEMA_VERSION));
        }
        Err(PoisonReason::Malformed(_) | PoisonReason::InvalidField { .. }) => {}
    }
});
