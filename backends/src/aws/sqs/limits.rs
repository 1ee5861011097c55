//! SQS's limits on one message, checked before a send: emulators (moto) accept what SQS
//! refuses, so a message that would only fail in production fails in every test too.
//!
//! - `MessageGroupId` and `MessageDeduplicationId`: 1–128 characters, alphanumerics and
//!   ASCII punctuation ([`kiro_protocol::ports::queue::check_fifo_id`]);
//! - at most 10 message attributes;
//! - the message size — the body plus each attribute's name, data type and value — at
//!   most [`MAX_MESSAGE_BYTES`].
//!
//! A dead letter adds its record (reason, attempts) as an attribute to a body that may
//! already be close to the limit: [`letter_that_fits`] shortens the record (reasons cut,
//! the oldest attempts left out; the job record keeps the full history) so that moving
//! a message to the DLQ never fails for its size.
//!
//! Invariant: a message refused here is never sent, and the error names the field, the
//! value (quoted and cut) and the limit, as `permanent-input`.

use kiro_protocol::ports::queue::check_fifo_id;
use kiro_protocol::{DeadLetter, PortError};
use std::collections::BTreeMap;

/// The largest message the adapter sends: 256 KiB, what every SQS queue accepts unless
/// configured lower (queues may allow up to 1 MiB; the stack keeps the default).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Most message attributes SQS takes on one message.
pub const MAX_ATTRIBUTES: usize = 10;

/// The data type every attribute of this adapter is sent with.
const DATA_TYPE: &str = "String";

/// The size SQS counts for a message: the body plus each attribute's name, data type
/// and value, in bytes.
pub fn message_bytes(body: &str, attributes: &BTreeMap<String, String>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(k, v)| k.len() + DATA_TYPE.len() + v.len())
            .sum::<usize>()
}

/// The dead letter's JSON for attribute `name`, shortened as little as needed for the
/// message (`body`, the other `attributes` and this one) to fit [`MAX_MESSAGE_BYTES`]:
/// first whole; then with reasons cut to 2,048 (letter) and 256 (attempts) characters and
/// the last 10 attempts; then the class, a 512-character reason and no attempts.
pub fn letter_that_fits(
    body: &str,
    attributes: &BTreeMap<String, String>,
    name: &str,
    letter: &DeadLetter,
) -> Result<String, PortError> {
    let json = |l: &DeadLetter| {
        serde_json::to_string(l).map_err(|e| PortError::internal(format!("dead letter: {e}")))
    };
    let room = MAX_MESSAGE_BYTES
        .saturating_sub(message_bytes(body, attributes))
        .saturating_sub(name.len() + DATA_TYPE.len());
    let whole = json(letter)?;
    if whole.len() <= room {
        return Ok(whole);
    }
    let mut short = letter.clone();
    short.reason = cut(&letter.reason, 2048);
    let skip = short.attempts.len().saturating_sub(10);
    short.attempts.drain(..skip);
    for a in &mut short.attempts {
        if let Some(f) = &mut a.failure {
            f.reason = cut(&f.reason, 256);
        }
    }
    let shortened = json(&short)?;
    if shortened.len() <= room {
        return Ok(shortened);
    }
    short.reason = cut(&letter.reason, 512);
    short.attempts.clear();
    json(&short)
}

/// At most `max` characters of `s`, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push_str(" … (cut)");
    out
}

/// Check one message against SQS's limits.
pub fn check_send(
    body: &str,
    group: &str,
    dedup: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<(), PortError> {
    check_fifo_id("message group id", group).map_err(|e| PortError::input(e.to_string()))?;
    check_fifo_id("message deduplication id", dedup)
        .map_err(|e| PortError::input(e.to_string()))?;
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(PortError::input(format!(
            "message of group {group} has {} attributes; SQS allows at most {MAX_ATTRIBUTES}",
            attributes.len()
        )));
    }
    let size = message_bytes(body, attributes);
    if size > MAX_MESSAGE_BYTES {
        return Err(PortError::input(format!(
            "message of group {group} (dedup id {dedup}) is {size} bytes with its attributes; \
             SQS allows at most {MAX_MESSAGE_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{AttemptRecord, Failure, FailureClass, Fence, Timestamp};

    fn letter(reason: &str, attempts: u32) -> DeadLetter {
        DeadLetter {
            reason: reason.to_owned(),
            class: FailureClass::TestsFailed,
            attempts: (1..=attempts)
                .map(|n| AttemptRecord {
                    attempt: n,
                    fence: Fence(u64::from(n)),
                    build_id: None,
                    started_at: Timestamp(0),
                    ended_at: None,
                    failure: Some(Failure::new(FailureClass::TestsFailed, reason)),
                })
                .collect(),
            fence: Some(Fence(3)),
            build_id: None,
            trace: Default::default(),
        }
    }

    #[test]
    fn a_small_letter_is_whole_and_a_large_one_is_shortened_to_fit() {
        let attrs = BTreeMap::from([("kiro.schema".to_owned(), "1".to_owned())]);
        let small = letter("3 tests failed", 2);
        let json = letter_that_fits("body", &attrs, "kiro.dead-letter", &small).unwrap();
        assert_eq!(serde_json::from_str::<DeadLetter>(&json).unwrap(), small);

        // A body close to the limit and a long reason: shortened, still parseable, and
        // the message fits.
        let body = "b".repeat(MAX_MESSAGE_BYTES - 20_000);
        let big = letter(&"r".repeat(5_000), 30);
        let json = letter_that_fits(&body, &attrs, "kiro.dead-letter", &big).unwrap();
        let got: DeadLetter = serde_json::from_str(&json).unwrap();
        assert_eq!(got.class, FailureClass::TestsFailed);
        assert_eq!(got.attempts.len(), 10);
        assert_eq!(got.attempts[0].attempt, 21, "the latest attempts are kept");
        assert!(got.reason.ends_with("(cut)"));
        let mut all = attrs.clone();
        all.insert("kiro.dead-letter".to_owned(), json);
        assert!(check_send(&body, "g", "d", &all).is_ok());

        // Hardly any room: the class and a short reason.
        let body = "b".repeat(MAX_MESSAGE_BYTES - 1_000);
        let json = letter_that_fits(&body, &attrs, "kiro.dead-letter", &big).unwrap();
        let got: DeadLetter = serde_json::from_str(&json).unwrap();
        assert!(got.attempts.is_empty());
        assert_eq!(got.class, FailureClass::TestsFailed);
    }

    #[test]
    fn ids_attributes_and_size_are_checked_with_the_field_named() {
        let none = BTreeMap::new();
        assert!(check_send("b", "calc", "CALC-1.00ff", &none).is_ok());
        let e = check_send("b", "calc", &"d".repeat(145), &none).unwrap_err();
        assert_eq!(e.class, FailureClass::PermanentInput);
        assert!(e.message.contains("message deduplication id"), "{e}");
        assert!(e.message.contains("145 characters"), "{e}");
        let e = check_send("b", "a b", "d", &none).unwrap_err();
        assert!(e.message.contains("message group id"), "{e}");
        let many: BTreeMap<String, String> =
            (0..11).map(|i| (format!("a{i}"), "v".to_owned())).collect();
        assert!(
            check_send("b", "g", "d", &many)
                .unwrap_err()
                .message
                .contains("11 attributes")
        );
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        assert!(check_send(&big, "g", "d", &none).is_ok());
        let one = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let e = check_send(&big, "g", "d", &one).unwrap_err();
        assert!(
            e.message
                .contains(&format!("{} bytes", MAX_MESSAGE_BYTES + 8)),
            "{e}"
        );
    }
}
