//! The versioned message envelope and the work item it carries.
//!
//! The queue carries the envelope as JSON text. [`Envelope::decode`] never panics: a body
//! that is not JSON, names an unknown schema version, or holds an invalid field is an
//! [`EnvelopeError`], which is always a permanent input failure (dead-lettered with the
//! reason, never retried, never a crash).

use crate::clock::Timestamp;
use crate::failure::{Failure, FailureClass};
use crate::ids::{BranchName, DedupId, ItemId, PrNumber, ProjectKey, RepoName, SpecPath};
use crate::trace::TraceContext;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One unit of work: a board item, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    pub id: ItemId,
    pub project: ProjectKey,
    pub repo: RepoName,
    pub branch: BranchName,
    pub spec: SpecPath,
    pub pr: PrNumber,
    /// Free text for humans; never passed to a shell. At most [`TITLE_MAX`] characters,
    /// no control characters (checked when decoded too).
    #[serde(default, deserialize_with = "title")]
    pub title: String,
    /// The board's last-update marker for the item (opaque); part of the dedup id, so an
    /// item edited on the board can be enqueued again. At most [`UPDATED_AT_MAX`]
    /// characters, no control characters (checked when decoded too).
    #[serde(default, deserialize_with = "updated_at")]
    pub updated_at: String,
}

/// The longest title a work item carries (characters).
pub const TITLE_MAX: usize = 200;
/// The longest last-update marker a work item carries (characters).
pub const UPDATED_AT_MAX: usize = 64;

/// A decoded free-text field must be one `BoardItem::validate` could have produced.
fn free_text<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &str,
    max: usize,
) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.chars().any(char::is_control) {
        return Err(serde::de::Error::custom(format!(
            "invalid {field}: holds a control character"
        )));
    }
    if s.chars().count() > max {
        return Err(serde::de::Error::custom(format!(
            "invalid {field}: longer than {max} characters"
        )));
    }
    Ok(s)
}

fn title<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    free_text(d, "title", TITLE_MAX)
}

fn updated_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    free_text(d, "updated_at", UPDATED_AT_MAX)
}

impl WorkItem {
    /// The FIFO deduplication id: the item id plus a hash of its last update. At most
    /// 128 characters of the set SQS accepts.
    pub fn dedup_id(&self) -> DedupId {
        DedupId::new(format!(
            "{}.{:016x}",
            self.id.as_str(),
            fnv1a(self.updated_at.as_bytes())
        ))
    }
}

/// FNV-1a, 64 bit: a stable, dependency-free hash for ids (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What travels on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version of this envelope; see [`SCHEMA_VERSION`].
    pub schema: u32,
    pub item: WorkItem,
    #[serde(default)]
    pub trace: TraceContext,
    pub enqueued_at: Timestamp,
}

/// A message body that cannot be turned into an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("message body is not a JSON object: {0}")]
    Malformed(String),
    #[error("message has no schema version")]
    MissingVersion,
    #[error("unknown schema version {found} (this build reads version {SCHEMA_VERSION})")]
    UnknownVersion { found: u64 },
    #[error("invalid work item: {0}")]
    InvalidItem(String),
}

impl From<EnvelopeError> for Failure {
    fn from(e: EnvelopeError) -> Self {
        Failure::new(FailureClass::PermanentInput, e.to_string())
    }
}

impl Envelope {
    pub fn new(item: WorkItem, trace: TraceContext, enqueued_at: Timestamp) -> Self {
        Envelope {
            schema: SCHEMA_VERSION,
            item,
            trace,
            enqueued_at,
        }
    }

    pub fn encode(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decode a message body. Unknown versions and invalid items are errors, not panics.
    pub fn decode(body: &str) -> Result<Envelope, EnvelopeError> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| EnvelopeError::Malformed("not an object".into()))?;
        let version = obj.get("schema").ok_or(EnvelopeError::MissingVersion)?;
        let found = version.as_u64().ok_or(EnvelopeError::MissingVersion)?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(EnvelopeError::UnknownVersion { found });
        }
        serde_json::from_value(value).map_err(|e| EnvelopeError::InvalidItem(e.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn item(id: &str, project: &str) -> WorkItem {
        WorkItem {
            id: ItemId::parse(id).unwrap(),
            project: ProjectKey::parse(project).unwrap(),
            repo: RepoName::parse("acme/calc").unwrap(),
            branch: BranchName::parse("feature/x").unwrap(),
            spec: SpecPath::parse("x").unwrap(),
            pr: PrNumber(1),
            title: "t".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn round_trip() {
        let e = Envelope::new(item("A-1", "calc"), TraceContext::default(), Timestamp(5));
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn unknown_version_is_a_permanent_input_failure() {
        let mut v: serde_json::Value = serde_json::to_value(Envelope::new(
            item("A-1", "calc"),
            TraceContext::default(),
            Timestamp(5),
        ))
        .unwrap();
        v["schema"] = 99.into();
        let err = Envelope::decode(&v.to_string()).unwrap_err();
        assert_eq!(err, EnvelopeError::UnknownVersion { found: 99 });
        assert_eq!(Failure::from(err).class, FailureClass::PermanentInput);
    }

    #[test]
    fn garbage_and_invalid_fields_are_errors() {
        assert!(matches!(
            Envelope::decode("not json"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode("[1]"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert_eq!(Envelope::decode("{}"), Err(EnvelopeError::MissingVersion));
        let mut v = serde_json::to_value(Envelope::new(
            item("A-1", "calc"),
            TraceContext::default(),
            Timestamp(5),
        ))
        .unwrap();
        v["item"]["branch"] = "a..b".into();
        let err = Envelope::decode(&v.to_string()).unwrap_err();
        assert!(err.to_string().contains("invalid branch"), "{err}");
    }

    /// Hostile queue bodies: every field of the envelope decodes through its validation,
    /// so a message written by hand (or by an older, buggier producer) cannot start a
    /// build with a value the board validation refuses. Each error names the field.
    #[test]
    fn hostile_envelope_fields_are_refused_by_name() {
        let long = "x".repeat(TITLE_MAX + 1);
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("pr", 0.into(), "invalid pull request"),
            (
                "pr",
                1_000_000_000_000_000u64.into(),
                "invalid pull request",
            ),
            ("pr", (-1).into(), "invalid pull request"),
            ("pr", 1.5.into(), "invalid pull request"),
            ("pr", "0".into(), "invalid pull request"),
            ("pr", "$(id)".into(), "invalid pull request"),
            ("pr", serde_json::Value::Null, "invalid pull request"),
            ("id", "A 1".into(), "invalid item id"),
            ("project", "-calc".into(), "invalid project"),
            ("repo", "acme/calc/x".into(), "invalid repo"),
            ("branch", "feature/$(id)".into(), "invalid branch"),
            ("spec", "../../etc".into(), "invalid spec"),
            ("title", "a\u{1b}[31mred".into(), "invalid title"),
            ("title", long.as_str().into(), "invalid title"),
            ("updated_at", "x\ny".into(), "invalid updated_at"),
        ];
        for (field, value, want) in cases {
            let mut v = serde_json::to_value(Envelope::new(
                item("A-1", "calc"),
                TraceContext::default(),
                Timestamp(5),
            ))
            .unwrap();
            v["item"][field] = value.clone();
            let err = Envelope::decode(&v.to_string()).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::InvalidItem(_)) && err.to_string().contains(want),
                "{field} = {value}: {err}"
            );
        }
        // The string form the board uses is accepted as well as the number.
        let mut v = serde_json::to_value(Envelope::new(
            item("A-1", "calc"),
            TraceContext::default(),
            Timestamp(5),
        ))
        .unwrap();
        v["item"]["pr"] = "#42".into();
        assert_eq!(
            Envelope::decode(&v.to_string()).unwrap().item.pr,
            PrNumber(42)
        );
    }

    #[test]
    fn dedup_id_changes_with_the_update_marker() {
        let a = item("A-1", "calc");
        let mut b = a.clone();
        b.updated_at = "later".into();
        assert_ne!(a.dedup_id(), b.dedup_id());
        assert_eq!(a.dedup_id(), a.clone().dedup_id());
        assert!(a.dedup_id().as_str().len() <= 128);
    }
}
