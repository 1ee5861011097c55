//! SQS's limits on one message, checked before a send: emulators (moto) accept what SQS
//! refuses, so a message that would only fail in production fails in every test too.
//!
//! - `MessageGroupId` and `MessageDeduplicationId`: 1–128 characters, alphanumerics and
//!   ASCII punctuation ([`kiro_protocol::ports::queue::check_fifo_id`]);
//! - at most 10 message attributes;
//! - the message size — the body plus each attribute's name, data type and value — at
//!   most [`MAX_MESSAGE_BYTES`].
//!
//! Invariant: a message refused here is never sent, and the error names the field, the
//! value (quoted and cut) and the limit, as `permanent-input`.

use kiro_protocol::PortError;
use kiro_protocol::ports::queue::check_fifo_id;
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
    use kiro_protocol::FailureClass;

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
