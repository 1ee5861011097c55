//! `kiro-consumer trace <item>`: where one work item's trace can be seen.
//!
//! On the embedded default the spans every process stored under the state directory
//! (`kiro_telemetry::spans`) are printed as a tree per trace, with durations and events;
//! the traces are those whose spans name the item, plus the one its job record carries.
//! On AWS the spans live in X-Ray: the report names each trace id of the item's job
//! record (W3C and X-Ray forms) and the X-Ray console link.
//!
//! Invariant: read-only; an item with no trace is an error that says where it looked.

use crate::ops::{xray_link, xray_trace_id};
use kiro_protocol::JobRecord;
use kiro_telemetry::otel::keys;
use kiro_telemetry::spans::{self, SpanStoreError, StoredTrace};
use std::path::Path;

/// Why no trace could be shown.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no trace recorded for item {item}{} (looked in {where_})", project_note(.project))]
    NotFound {
        item: String,
        project: Option<String>,
        where_: String,
    },
    #[error(transparent)]
    Store(#[from] SpanStoreError),
}

fn project_note(p: &Option<String>) -> String {
    p.as_ref()
        .map_or(String::new(), |p| format!(" in project {p}"))
}

/// The job records of `item` (in `project`, when given).
fn records_of<'a>(
    jobs: &'a [JobRecord],
    item: &'a str,
    project: Option<&'a str>,
) -> impl Iterator<Item = &'a JobRecord> {
    jobs.iter()
        .filter(move |r| r.item.as_str() == item && project.is_none_or(|p| r.project.as_str() == p))
}

/// The stored traces of `item`, oldest first.
pub fn embedded_traces(
    span_dir: &Path,
    jobs: &[JobRecord],
    item: &str,
    project: Option<&str>,
) -> Result<Vec<StoredTrace>, TraceError> {
    let mut found = spans::traces_of_item(span_dir, item)?;
    // A job record may name a trace whose spans do not name the item (a stray store).
    for r in records_of(jobs, item, project) {
        if let Some(t) = r.trace.trace_id()
            && !found.iter().any(|f| f.trace_id == t)
        {
            found.push(StoredTrace {
                trace_id: t.to_owned(),
                spans: spans::read_trace(span_dir, t)?,
            });
        }
    }
    let out: Vec<StoredTrace> = found
        .into_iter()
        .filter(|t| {
            !t.spans.is_empty()
                && project.is_none_or(|p| {
                    t.spans
                        .iter()
                        .any(|s| s.attributes.get(keys::PROJECT).map(String::as_str) == Some(p))
                })
        })
        .collect();
    if out.is_empty() {
        return Err(TraceError::NotFound {
            item: item.to_owned(),
            project: project.map(str::to_owned),
            where_: span_dir.display().to_string(),
        });
    }
    Ok(out)
}

/// The trees of `traces`, one after the other.
pub fn render_embedded(traces: &[StoredTrace]) -> String {
    traces
        .iter()
        .map(|t| spans::render_tree(&t.spans))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Trace ids and X-Ray links of `item`'s job records (AWS).
pub fn aws_report(
    region: &str,
    jobs: &[JobRecord],
    item: &str,
    project: Option<&str>,
) -> Result<String, TraceError> {
    let mut out = String::new();
    for r in records_of(jobs, item, project) {
        let Some(xray) = xray_trace_id(&r.trace) else {
            continue;
        };
        out.push_str(&format!(
            "project {} item {} ({}, {} attempt(s))\n  trace id  {}\n  x-ray     {}\n  console   {}\n",
            r.project,
            r.item,
            r.state,
            r.attempts,
            r.trace.trace_id().unwrap_or("-"),
            xray,
            xray_link(region, &xray),
        ));
    }
    if out.is_empty() {
        return Err(TraceError::NotFound {
            item: item.to_owned(),
            project: project.map(str::to_owned),
            where_: "the job records".to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{Fence, ItemId, MessageId, ProjectKey, Timestamp, TraceContext};

    fn record(project: &str, item: &str, tp: Option<&str>) -> JobRecord {
        JobRecord::new(
            ProjectKey::parse(project).unwrap(),
            ItemId::parse(item).unwrap(),
            MessageId::new("m1"),
            Fence(1),
            tp.and_then(TraceContext::from_traceparent)
                .unwrap_or_default(),
            Timestamp(0),
        )
    }

    #[test]
    fn aws_names_the_trace_and_links_the_console() {
        let jobs = vec![
            record(
                "calc",
                "A-1",
                Some("00-6932a5f1c0ffee00112233445566778a-00f067aa0ba902b7-01"),
            ),
            record("other", "B-2", None),
        ];
        let out = aws_report("eu-west-1", &jobs, "A-1", None).unwrap();
        assert!(
            out.contains("trace id  6932a5f1c0ffee00112233445566778a"),
            "{out}"
        );
        assert!(
            out.contains("x-ray     1-6932a5f1-c0ffee00112233445566778a"),
            "{out}"
        );
        assert!(
            out.contains("region=eu-west-1#/traces/1-6932a5f1-c0ffee00112233445566778a"),
            "{out}"
        );
        let missing = aws_report("eu-west-1", &jobs, "B-2", None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no trace recorded for item B-2 (looked in the job records)"
        );
        assert!(aws_report("eu-west-1", &jobs, "A-1", Some("other")).is_err());
    }

    #[test]
    fn embedded_with_nothing_stored_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let err = embedded_traces(dir.path(), &[], "A-1", Some("calc")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no trace recorded for item A-1 in project calc (looked in "),
            "{err}"
        );
    }
}
