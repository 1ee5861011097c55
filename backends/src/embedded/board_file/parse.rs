//! Board-file text → [`BoardFile`]: every field read leniently as text (a [`Raw`]), then
//! the checks that reject single entries instead of the whole file (an item id used
//! twice, a pull request listed twice).
//!
//! Invariant: only YAML that does not parse or an unknown top-level key fails here; any
//! other problem is left on the entry it concerns, for validation to name.

use super::model::{BoardFile, BoardFileError, FileItem, FilePull};
use kiro_protocol::ids::quote_for_display;
use kiro_protocol::{BoardItem, PortError};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Parse board-file text; `path` is only used in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<BoardFile, BoardFileError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Ok(BoardFile::default());
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        let message = e
            .without_snippet()
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        BoardFileError::Syntax {
            path: path.to_owned(),
            line,
            message,
        }
    })?;

    let mut file = BoardFile::default();
    for spanned in raw.items.unwrap_or_default() {
        let line = spanned.referenced.line();
        let r = spanned.value;
        let item = BoardItem {
            id: r.id.0,
            project: r.project.0,
            title: r.title.0,
            repo: r.repo.0,
            branch: r.branch.0,
            spec: r.spec.0,
            pr: r.pr.0,
            updated_at: r.updated_at.0,
            assignees: r.assignees.0,
            conflict: None,
        };
        file.items.push(FileItem {
            item,
            status: r.status.0,
            line,
        });
    }
    // An id used by several items names none of them unambiguously: each is rejected
    // by name with the lines, and the other items go on.
    let mut lines_by_id: HashMap<String, Vec<u64>> = HashMap::new();
    for fi in &file.items {
        lines_by_id
            .entry(fi.item.id.clone())
            .or_default()
            .push(fi.line);
    }
    for fi in &mut file.items {
        let lines = &lines_by_id[&fi.item.id];
        if lines.len() > 1 {
            fi.item.conflict = Some(format!(
                "used by {} items of board file {} (lines {}); ids must be unique",
                lines.len(),
                path.display(),
                join_lines(lines)
            ));
        }
    }

    for spanned in raw.pull_requests.unwrap_or_default() {
        let line = spanned.referenced.line();
        let r = spanned.value;
        let number = r.number.0.trim_start_matches('#').to_owned();
        let open = !matches!(
            r.open.0.trim().to_ascii_lowercase().as_str(),
            "false" | "no" | "closed"
        );
        file.pull_requests.push(FilePull {
            repo: r.repo.0,
            number,
            head: r.head.0,
            title: r.title.0,
            url: r.url.0,
            open,
            line,
            listed_on: Vec::new(),
        });
    }
    let mut lines_by_pull: HashMap<(String, String), Vec<u64>> = HashMap::new();
    for p in &file.pull_requests {
        lines_by_pull
            .entry((p.repo.clone(), p.number.clone()))
            .or_default()
            .push(p.line);
    }
    for p in &mut file.pull_requests {
        let lines = &lines_by_pull[&(p.repo.clone(), p.number.clone())];
        if lines.len() > 1 {
            p.listed_on = lines.clone();
        }
    }
    Ok(file)
}

fn join_lines(lines: &[u64]) -> String {
    lines
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FilePull {
    /// `Err` naming the lines when this pull request is listed more than once (which
    /// entry is meant cannot be told).
    pub fn unambiguous(&self, path: &Path) -> Result<(), PortError> {
        if self.listed_on.is_empty() {
            return Ok(());
        }
        Err(PortError::input(format!(
            "board file {}: pull request {} #{} is listed {} times (lines {}); list it once",
            path.display(),
            quote_for_display(&self.repo),
            quote_for_display(&self.number),
            self.listed_on.len(),
            join_lines(&self.listed_on)
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    items: Option<Vec<Spanned<RawItem>>>,
    #[serde(default)]
    pull_requests: Option<Vec<Spanned<RawPull>>>,
}

/// Unknown keys inside an item are ignored (one typo must not fail the file); the field
/// they were meant to be is then missing, and validation names it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawItem {
    id: Raw,
    project: Raw,
    title: Raw,
    status: Raw,
    repo: Raw,
    branch: Raw,
    spec: Raw,
    pr: Raw,
    updated_at: Raw,
    assignees: RawList,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPull {
    repo: Raw,
    number: Raw,
    head: Raw,
    title: Raw,
    url: Raw,
    open: Raw,
}

/// Any YAML value, read leniently as text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Raw(String);

/// A list of YAML values, each read leniently as text ([`Raw`]); a single value is a list
/// of one, a missing or null field an empty list, a mapping a list holding a marker that
/// no validator accepts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct RawList(Vec<String>);

impl<'de> Deserialize<'de> for RawList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawListVisitor)
    }
}

struct RawListVisitor;

impl<'de> Visitor<'de> for RawListVisitor {
    type Value = RawList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawList, A::Error> {
        let mut out = Vec::new();
        while let Some(Raw(v)) = seq.next_element::<Raw>()? {
            out.push(v);
        }
        Ok(RawList(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawList, A::Error> {
        RawVisitor.visit_map(map).map(|Raw(v)| RawList(vec![v]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawList, E> {
        Ok(RawList::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<RawList, E> {
        Ok(RawList::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawList, D::Error> {
        RawList::deserialize(d)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawList, E> {
        Ok(RawList(vec![v.to_owned()]))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawList, E> {
        Ok(RawList(vec![v]))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawList, E> {
        Ok(RawList(vec![v.to_string()]))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawList, E> {
        Ok(RawList(vec![v.to_string()]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawList, E> {
        Ok(RawList(vec![v.to_string()]))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawList, E> {
        Ok(RawList(vec![v.to_string()]))
    }
}

/// What a list or a mapping in a scalar field becomes: text no validator accepts.
pub(super) const LIST_MARKER: &str = "<a list>";
pub(super) const MAP_MARKER: &str = "<a mapping>";

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Raw, E> {
        Ok(Raw(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw(LIST_MARKER.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw(MAP_MARKER.to_owned()))
    }
}
