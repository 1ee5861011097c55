//! The FIFO queue's own identifiers: the SQS rule for group and deduplication ids, and
//! [`MessageGroup`], the group a message travels in.
//!
//! Invariant: a [`MessageGroup`] holds 1–128 letters, digits or ASCII punctuation (what
//! SQS accepts), so it can always be sent again; it is a project only when it parses as
//! one ([`MessageGroup::project`]), which the consumer checks against the item inside.

use super::error::IdError;
use super::keys::ProjectKey;
use super::newtype::string_newtype;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Longest SQS FIFO `MessageGroupId` and `MessageDeduplicationId`, in characters.
pub const FIFO_ID_MAX: usize = 128;

/// Whether `c` may appear in an SQS FIFO group or deduplication id: alphanumerics and
/// the ASCII punctuation `!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`.
pub fn is_fifo_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c.is_ascii_punctuation()
}

/// Check a `MessageGroupId` or `MessageDeduplicationId` (`field` names which) against
/// SQS's rule: 1–128 characters of [`is_fifo_id_char`]. Emulators such as moto do not
/// enforce it; SQS refuses the send.
pub fn check_fifo_id(field: &'static str, value: &str) -> Result<(), IdError> {
    let len = value.chars().count();
    if len == 0 {
        return Err(IdError::new(field, value, "must not be empty"));
    }
    if len > FIFO_ID_MAX {
        return Err(IdError::new(
            field,
            value,
            format!("is {len} characters; SQS allows at most {FIFO_ID_MAX}"),
        ));
    }
    if let Some(c) = value.chars().find(|c| !is_fifo_id_char(*c)) {
        return Err(IdError::new(
            field,
            value,
            format!("contains {c:?}; SQS allows letters, digits and ASCII punctuation"),
        ));
    }
    Ok(())
}

string_newtype!(
    /// The message group a delivery or dead letter travels in, as the queue reports it.
    /// Messages this system sends use the item's [`ProjectKey`]; a message sent by hand
    /// may carry any group SQS accepts, which is why this is not a `ProjectKey`.
    MessageGroup,
    "message group"
);

impl MessageGroup {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_fifo_id(Self::FIELD, raw)?;
        Ok(MessageGroup(raw.to_owned()))
    }

    /// The group of a stored message whose group is unreadable (a row edited by hand):
    /// replaying it puts it in this group, where the consumer dead-letters it again as
    /// not matching its item's project, and the reason names the stored value.
    pub fn unreadable() -> Self {
        MessageGroup("kiro.unreadable-group".to_owned())
    }

    /// The project this group names, if it is one.
    pub fn project(&self) -> Option<ProjectKey> {
        ProjectKey::parse(&self.0).ok()
    }

    /// Whether this is the group of `project`'s messages.
    pub fn is_project(&self, project: &ProjectKey) -> bool {
        self.0 == project.as_str()
    }
}

impl From<ProjectKey> for MessageGroup {
    /// Every project key is a valid group (its characters and length are a subset).
    fn from(p: ProjectKey) -> Self {
        MessageGroup(p.into_string())
    }
}

impl From<&ProjectKey> for MessageGroup {
    fn from(p: &ProjectKey) -> Self {
        MessageGroup(p.as_str().to_owned())
    }
}

impl PartialEq<str> for MessageGroup {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for MessageGroup {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_group_follows_the_sqs_rule() {
        assert!(MessageGroup::parse("a.b-c_d:e!~{}").is_ok());
        assert!(MessageGroup::parse("").is_err());
        assert!(MessageGroup::parse("a b").is_err());
        assert!(MessageGroup::parse(&"x".repeat(129)).is_err());
        let e = MessageGroup::parse("é").unwrap_err();
        assert!(e.to_string().contains("message group"), "{e}");
        assert!(MessageGroup::parse(MessageGroup::unreadable().as_str()).is_ok());
    }

    #[test]
    fn a_group_names_a_project_only_when_it_parses_as_one() {
        let g = MessageGroup::parse("alpha").unwrap();
        assert_eq!(g.project(), Some(ProjectKey::parse("alpha").unwrap()));
        assert!(g.is_project(&ProjectKey::parse("alpha").unwrap()));
        assert_eq!(MessageGroup::parse("a!b").unwrap().project(), None);
    }

    #[test]
    fn decoding_goes_through_parse() {
        assert!(serde_json::from_str::<MessageGroup>("\"a b\"").is_err());
        assert_eq!(
            serde_json::from_str::<MessageGroup>("\"alpha\"").unwrap(),
            "alpha"
        );
    }

    proptest! {
        #[test]
        fn every_project_key_is_a_group(raw in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}") {
            let p = ProjectKey::parse(&raw).unwrap();
            let g = MessageGroup::from(&p);
            prop_assert!(MessageGroup::parse(g.as_str()).is_ok());
            prop_assert_eq!(g.project(), Some(p));
        }
    }
}
