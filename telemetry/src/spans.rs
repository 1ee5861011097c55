//! The span store of the embedded default, and the tree `kiro-consumer trace` prints.
//!
//! Owns the on-disk form of finished spans: one JSON line per span ([`StoredSpan`]) in
//! `<dir>/<trace id>.jsonl`, appended by every process of the pipeline (producer,
//! consumer, worker) through [`FileSpanExporter`], and read back by [`read_trace`] /
//! [`traces_of_item`]; [`render_tree`] prints one trace as a tree with durations and
//! events.
//!
//! Invariants: each span is written with one `write` on a file opened for append, so
//! concurrent writers never interleave within a line; a line that does not parse (a
//! crash mid-write) is skipped by readers, never fatal; trace ids are checked to be 32
//! hex digits before they name a file.

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The span store's directory under a state directory.
pub fn span_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("traces")
}

/// One finished span as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSpan {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub service: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The error description when the span's status is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<StoredEvent>,
    #[serde(default)]
    pub links: Vec<StoredLink>,
}

/// An event of a stored span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub name: String,
    pub unix_nanos: u64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A link of a stored span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLink {
    pub trace_id: String,
    pub span_id: String,
}

impl StoredSpan {
    /// The span's duration.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }

    fn from_data(s: &SpanData, service: &str) -> Self {
        let parent = s.parent_span_id;
        StoredSpan {
            trace_id: s.span_context.trace_id().to_string(),
            span_id: s.span_context.span_id().to_string(),
            parent_span_id: (parent != opentelemetry::trace::SpanId::INVALID)
                .then(|| parent.to_string()),
            name: s.name.to_string(),
            kind: kind_name(&s.span_kind).to_owned(),
            service: service.to_owned(),
            start_unix_nanos: nanos(s.start_time),
            end_unix_nanos: nanos(s.end_time),
            error: match &s.status {
                Status::Error { description } => Some(description.to_string()),
                _ => None,
            },
            attributes: attr_map(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| StoredEvent {
                    name: e.name.to_string(),
                    unix_nanos: nanos(e.timestamp),
                    attributes: attr_map(&e.attributes),
                })
                .collect(),
            links: s
                .links
                .iter()
                .map(|l| StoredLink {
                    trace_id: l.span_context.trace_id().to_string(),
                    span_id: l.span_context.span_id().to_string(),
                })
                .collect(),
        }
    }
}

fn kind_name(k: &SpanKind) -> &'static str {
    match k {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attr_map(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let v = match &kv.value {
                Value::String(s) => s.as_str().to_owned(),
                other => other.to_string(),
            };
            (kv.key.as_str().to_owned(), v)
        })
        .collect()
}

/// Whether `id` is a trace id (32 lowercase or uppercase hex digits).
pub fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Appends finished spans to `<dir>/<trace id>.jsonl`.
#[derive(Debug)]
pub struct FileSpanExporter {
    dir: PathBuf,
    service: String,
}

impl FileSpanExporter {
    /// An exporter into `dir` (created if missing).
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(FileSpanExporter {
            dir: dir.to_owned(),
            service: "unknown_service".to_owned(),
        })
    }

    /// Write `batch` (synchronously).
    pub fn write(&self, batch: &[SpanData]) -> std::io::Result<()> {
        let mut by_trace: HashMap<String, String> = HashMap::new();
        for s in batch {
            let stored = StoredSpan::from_data(s, &self.service);
            let line = serde_json::to_string(&stored).map_err(std::io::Error::other)?;
            let buf = by_trace.entry(stored.trace_id.clone()).or_default();
            buf.push_str(&line);
            buf.push('\n');
        }
        for (trace, lines) in by_trace {
            let path = self.dir.join(format!("{trace}.jsonl"));
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(lines.as_bytes())?;
        }
        Ok(())
    }
}

impl SpanExporter for FileSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.write(&batch)
            .map_err(|e| OTelSdkError::InternalFailure(format!("span store: {e}")))
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(v) = resource.get(&opentelemetry::Key::from_static_str("service.name")) {
            self.service = v.to_string();
        }
    }
}

/// Errors reading the span store.
#[derive(Debug, thiserror::Error)]
pub enum SpanStoreError {
    #[error("`{0}` is not a trace id (32 hex digits)")]
    BadTraceId(String),
    #[error("cannot read the span store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpanStoreError + '_ {
    move |source| SpanStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn parse_lines(text: &str) -> Vec<StoredSpan> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<StoredSpan>(l).ok())
        .collect()
}

/// Every stored span of trace `trace_id` (empty when none was stored).
pub fn read_trace(dir: &Path, trace_id: &str) -> Result<Vec<StoredSpan>, SpanStoreError> {
    if !is_trace_id(trace_id) {
        return Err(SpanStoreError::BadTraceId(trace_id.to_owned()));
    }
    let path = dir.join(format!("{}.jsonl", trace_id.to_ascii_lowercase()));
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_lines(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// One stored trace: its id and its spans.
#[derive(Debug, Clone, Serialize)]
pub struct StoredTrace {
    pub trace_id: String,
    pub spans: Vec<StoredSpan>,
}

/// The traces in `dir` with a span whose `kiro.item` attribute is `item`, oldest first
/// (each file is read once).
pub fn traces_of_item(dir: &Path, item: &str) -> Result<Vec<StoredTrace>, SpanStoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let Some(trace) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .filter(|t| is_trace_id(t))
            .map(str::to_owned)
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let spans = parse_lines(&text);
        if spans
            .iter()
            .any(|s| s.attributes.get(crate::keys::ITEM).map(String::as_str) == Some(item))
        {
            let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
            found.push((
                start,
                StoredTrace {
                    trace_id: trace,
                    spans,
                },
            ));
        }
    }
    found.sort_by(|a, b| (a.0, &a.1.trace_id).cmp(&(b.0, &b.1.trace_id)));
    Ok(found.into_iter().map(|(_, t)| t).collect())
}

/// Attributes not worth a line in the tree (source locations, thread ids, tracing
/// internals).
fn shown(key: &str) -> bool {
    !(key.starts_with("code.")
        || key.starts_with("thread.")
        || key.starts_with("otel.")
        || matches!(key, "level" | "target" | "busy_ns" | "idle_ns" | "trace_id"))
}

fn attrs_text(attrs: &BTreeMap<String, String>) -> String {
    attrs
        .iter()
        .filter(|(k, _)| shown(k))
        .map(|(k, v)| format!(" {k}={v}"))
        .collect()
}

/// A duration as `1.234s` / `12ms` / `850µs`.
pub fn human(d: std::time::Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else if d.as_millis() >= 1000 {
        format!("{:.3}s", d.as_secs_f64())
    } else if d.as_micros() >= 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// One trace as a tree: each span with its service, duration and attributes, its events
/// (at their offset from the start of the trace) and its links, children in start order.
/// Spans whose parent was not stored (a remote parent) are roots.
pub fn render_tree(spans: &[StoredSpan]) -> String {
    let mut out = String::new();
    let Some(first) = spans.iter().map(|s| s.start_unix_nanos).min() else {
        return out;
    };
    let last = spans
        .iter()
        .map(|s| s.end_unix_nanos)
        .max()
        .unwrap_or(first);
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: BTreeMap<Option<&str>, Vec<&StoredSpan>> = BTreeMap::new();
    for s in spans {
        let parent = s.parent_span_id.as_deref().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(s);
    }
    for v in children.values_mut() {
        v.sort_by_key(|s| (s.start_unix_nanos, s.span_id.clone()));
    }
    let _ = writeln!(
        out,
        "trace {} · {} span(s) · {}",
        spans[0].trace_id,
        spans.len(),
        human(std::time::Duration::from_nanos(last.saturating_sub(first)))
    );
    fn walk(
        out: &mut String,
        children: &BTreeMap<Option<&str>, Vec<&StoredSpan>>,
        parent: Option<&str>,
        prefix: &str,
        first: u64,
    ) {
        let Some(kids) = children.get(&parent) else {
            return;
        };
        for (i, s) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let (branch, cont) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            let offset = std::time::Duration::from_nanos(s.start_unix_nanos.saturating_sub(first));
            let _ = writeln!(
                out,
                "{prefix}{branch}{} [{}] {} (+{}){}{}",
                s.name,
                s.service,
                human(s.duration()),
                human(offset),
                attrs_text(&s.attributes),
                s.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ERROR: {e}")),
            );
            let inner = format!("{prefix}{cont}");
            for l in &s.links {
                let _ = writeln!(out, "{inner}  ↪ link {}/{}", l.trace_id, l.span_id);
            }
            for e in &s.events {
                let at = std::time::Duration::from_nanos(e.unix_nanos.saturating_sub(first));
                let _ = writeln!(
                    out,
                    "{inner}  · +{} {}{}",
                    human(at),
                    e.name,
                    attrs_text(&e.attributes)
                );
            }
            walk(out, children, Some(s.span_id.as_str()), &inner, first);
        }
    }
    walk(&mut out, &children, None, "", first);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, name: &str, start: u64, end: u64) -> StoredSpan {
        StoredSpan {
            trace_id: "6932a5f1c0ffee00112233445566778a".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: name.into(),
            kind: "internal".into(),
            service: "kiro-test".into(),
            start_unix_nanos: start,
            end_unix_nanos: end,
            error: None,
            attributes: BTreeMap::new(),
            events: vec![],
            links: vec![],
        }
    }

    #[test]
    fn the_tree_nests_children_in_start_order_with_durations_and_events() {
        let mut root = span(
            "a000000000000001",
            Some("ffffffffffffffff"),
            "send",
            0,
            3_000_000,
        );
        root.attributes.insert("kiro.item".into(), "A-1".into());
        root.attributes.insert("code.lineno".into(), "12".into());
        let mut process = span(
            "a000000000000002",
            Some("a000000000000001"),
            "process",
            5_000_000,
            2_005_000_000,
        );
        process.events.push(StoredEvent {
            name: "heartbeat".into(),
            unix_nanos: 1_005_000_000,
            attributes: BTreeMap::from([("kiro.fence".into(), "3".into())]),
        });
        let late = span(
            "a000000000000004",
            Some("a000000000000002"),
            "settle",
            2_000_000_000,
            2_004_000_000,
        );
        let early = span(
            "a000000000000003",
            Some("a000000000000002"),
            "worker",
            10_000_000,
            1_900_000_000,
        );
        let tree = render_tree(&[late, root, early, process]);
        let lines: Vec<&str> = tree.lines().collect();
        assert!(
            lines[0].starts_with("trace 6932a5f1c0ffee00112233445566778a · 4 span(s) · 2.005s"),
            "{tree}"
        );
        assert!(
            lines[1].starts_with("└─ send [kiro-test] 3ms (+0µs) kiro.item=A-1"),
            "{tree}"
        );
        assert!(!tree.contains("code.lineno"), "{tree}");
        assert!(
            lines[2].contains("└─ process [kiro-test] 2.000s (+5ms)"),
            "{tree}"
        );
        assert!(
            lines[3].contains("· +1.005s heartbeat kiro.fence=3"),
            "{tree}"
        );
        assert!(lines[4].contains("├─ worker"), "{tree}");
        assert!(lines[5].contains("└─ settle"), "{tree}");
    }

    #[test]
    fn trace_ids_are_checked_and_bad_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_trace(dir.path(), "../../etc/passwd"),
            Err(SpanStoreError::BadTraceId(_))
        ));
        let t = "6932a5f1c0ffee00112233445566778a";
        let mut s = span("a000000000000001", None, "send", 1, 2);
        s.attributes.insert("kiro.item".into(), "A-1".into());
        let good = serde_json::to_string(&s).unwrap();
        std::fs::write(
            dir.path().join(format!("{t}.jsonl")),
            format!("{good}\n{{\"trace_id\":\"tru"),
        )
        .unwrap();
        assert_eq!(read_trace(dir.path(), t).unwrap(), vec![s.clone()]);
        let found = traces_of_item(dir.path(), "A-1").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trace_id, t);
        assert_eq!(found[0].spans, vec![s]);
        assert!(traces_of_item(dir.path(), "B-2").unwrap().is_empty());
        assert!(
            traces_of_item(&dir.path().join("none"), "A-1")
                .unwrap()
                .is_empty()
        );
    }
}
