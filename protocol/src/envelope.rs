//! The versioned message envelope and the work item it carries.
//!
//! The queue carries the envelope as JSON text. [`Envelope::decode`] never panics: a body
//! that is not JSON, names an unknown schema version, or holds an invalid field is an
//! [`EnvelopeError`], which is always a permanent input failure (dead-lettered with the
//! reason, never retried, never a crash).

use crate::clock::Timestamp;
use crate::failure::{Failure, FailureClass};
use crate::ids::FIFO_ID_MAX;
use crate::ids::{BranchName, DedupId, ItemId, Login, PrNumber, ProjectKey, RepoName, SpecPath};
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
    /// Who the item is assigned to on the board (without `@`), in the board's order, no
    /// login twice, at most [`ASSIGNEES_MAX`] (checked when decoded too): the people a
    /// final failure mentions. Messages written before the field existed decode with none.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "assignees"
    )]
    pub assignees: Vec<Login>,
}

/// The longest title a work item carries (characters).
pub const TITLE_MAX: usize = 200;
/// The longest last-update marker a work item carries (characters).
pub const UPDATED_AT_MAX: usize = 64;

/// The most assignees a work item carries (GitHub's limit per issue or pull request).
pub const ASSIGNEES_MAX: usize = 10;

/// The field name errors about assignees give.
pub const ASSIGNEES_FIELD: &str = "assignees";

/// Decoded assignees must be ones `BoardItem::validate` could have produced: valid
/// logins, at most [`ASSIGNEES_MAX`].
fn assignees<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Login>, D::Error> {
    let raw = Vec::<String>::deserialize(d)
        .map_err(|e| serde::de::Error::custom(format!("invalid {ASSIGNEES_FIELD}: {e}")))?;
    if raw.len() > ASSIGNEES_MAX {
        return Err(serde::de::Error::custom(format!(
            "invalid {ASSIGNEES_FIELD}: more than {ASSIGNEES_MAX} ({})",
            raw.len()
        )));
    }
    raw.iter()
        .map(|l| {
            Login::parse(l).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid {ASSIGNEES_FIELD} {}: {}",
                    e.value, e.reason
                ))
            })
        })
        .collect()
}

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
    /// The FIFO deduplication id: the item id plus a hash of its last update
    /// (`<item>.<hash>`). An item id too long for that (over 111 characters) keeps a
    /// readable prefix and adds a hash of the whole id (`<prefix>.<id hash>.<hash>`), so
    /// the id is always at most [`FIFO_ID_MAX`] characters of the set SQS accepts (item
    /// ids are letters, digits and `._:-`).
    pub fn dedup_id(&self) -> DedupId {
        let id = self.id.as_str();
        let marker = fnv1a(self.updated_at.as_bytes());
        let short = format!("{id}.{marker:016x}");
        if short.len() <= FIFO_ID_MAX {
            return DedupId::new(short);
        }
        // Item ids are ASCII: cutting at a byte index cuts at a character.
        let keep = FIFO_ID_MAX - 2 * 17;
        DedupId::new(format!(
            "{}.{:016x}.{marker:016x}",
            &id[..keep],
            fnv1a(id.as_bytes())
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
    /// `item` is the item's id as the body gives it (quoted for display), so the error
    /// names the item even when that id is itself the problem.
    #[error("invalid work item {item}: {reason}")]
    InvalidItem { item: String, reason: String },
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
        let item = match obj.get("item").and_then(|i| i.get("id")) {
            Some(serde_json::Value::String(id)) => crate::ids::quote_for_display(id),
            Some(other) => format!(
                "with id {}",
                crate::ids::quote_for_display(&other.to_string())
            ),
            None => "without an id".to_owned(),
        };
        serde_json::from_value(value).map_err(|e| EnvelopeError::InvalidItem {
            item,
            reason: e.to_string(),
        })
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
            assignees: vec![],
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
            (
                "assignees",
                serde_json::json!(["@octo"]),
                "invalid assignees",
            ),
            (
                "assignees",
                serde_json::json!(["ok", "x-"]),
                "invalid assignees",
            ),
            ("assignees", serde_json::json!("octo"), "invalid assignees"),
            ("assignees", serde_json::json!([7]), "invalid assignees"),
            (
                "assignees",
                serde_json::json!(vec!["a"; ASSIGNEES_MAX + 1]),
                "invalid assignees: more than 10",
            ),
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
                matches!(err, EnvelopeError::InvalidItem { .. }) && err.to_string().contains(want),
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
    fn assignees_travel_and_old_messages_decode_without_them() {
        let mut w = item("A-1", "calc");
        let plain = Envelope::new(w.clone(), TraceContext::default(), Timestamp(5)).encode();
        assert!(
            !plain.contains("assignees"),
            "no assignees, no field: {plain}"
        );
        assert!(Envelope::decode(&plain).unwrap().item.assignees.is_empty());
        w.assignees = vec![
            Login::parse("octo-cat").unwrap(),
            Login::parse("Copilot").unwrap(),
        ];
        let e = Envelope::new(w, TraceContext::default(), Timestamp(5));
        let body = e.encode();
        assert!(
            body.contains(r#""assignees":["octo-cat","Copilot"]"#),
            "{body}"
        );
        assert_eq!(Envelope::decode(&body).unwrap(), e);
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["item"]["assignees"] = serde_json::json!(vec!["a"; ASSIGNEES_MAX]);
        assert_eq!(
            Envelope::decode(&v.to_string())
                .unwrap()
                .item
                .assignees
                .len(),
            ASSIGNEES_MAX
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

    #[test]
    fn a_long_item_id_keeps_a_readable_prefix_and_stays_unique() {
        let long = "I".repeat(128);
        let mut a = item("A-1", "calc");
        a.id = ItemId::parse(&long).unwrap();
        let d = a.dedup_id();
        assert_eq!(d.as_str().len(), 128, "{d}");
        assert!(d.as_str().starts_with(&"I".repeat(94)), "{d}");
        let mut b = a.clone();
        b.id = ItemId::parse(&format!("{}J", "I".repeat(127))).unwrap();
        assert_ne!(a.dedup_id(), b.dedup_id(), "same prefix, other id");
        let mut c = a.clone();
        c.updated_at = "later".into();
        assert_ne!(a.dedup_id(), c.dedup_id(), "same id, other update");
        // The longest id that fits keeps the readable form.
        let mut e = a.clone();
        e.id = ItemId::parse(&"E".repeat(111)).unwrap();
        assert!(
            e.dedup_id()
                .as_str()
                .starts_with(&format!("{}.", "E".repeat(111)))
        );
    }

    proptest::proptest! {
        /// Every dedup id and group id the producer can make satisfies SQS's rule.
        #[test]
        fn every_dedup_and_group_id_is_valid_for_sqs(
            id in "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}",
            project in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
            updated in proptest::prelude::any::<String>(),
        ) {
            let mut w = item("A-1", "calc");
            w.id = ItemId::parse(&id).unwrap();
            w.project = ProjectKey::parse(&project).unwrap();
            w.updated_at = updated;
            let dedup = w.dedup_id();
            proptest::prop_assert!(
                crate::ids::check_fifo_id("dedup id", dedup.as_str()).is_ok(),
                "{}", dedup
            );
            proptest::prop_assert!(
                crate::ids::check_fifo_id("group id", w.project.as_str()).is_ok()
            );
        }
    }

    #[test]
    fn the_fifo_id_rule_names_the_field_and_the_problem() {
        use crate::ids::check_fifo_id;
        assert!(check_fifo_id("dedup id", "a.b-c_d:e!~{}").is_ok());
        let e = check_fifo_id("dedup id", &"x".repeat(129)).unwrap_err();
        assert_eq!(e.field, "dedup id");
        assert!(e.reason.contains("129 characters"), "{e}");
        assert!(check_fifo_id("group id", "").is_err());
        let e = check_fifo_id("group id", "a b").unwrap_err();
        assert!(e.reason.contains("' '"), "{e}");
        assert!(check_fifo_id("group id", "é").is_err());
    }
}
