//! The GraphQL fixtures are what GitHub would answer to the queries this crate sends:
//! every key of a fixture's `data` is selected by its query (inline fragments count for
//! every type), and a pull request listed under `closedByPullRequestsReferences(…,
//! includeClosedPrs: false)` is never closed. A fixture with a field the query never asks
//! for proves nothing about the parser (it may read a field GitHub will not send).
//!
//! Invariant: a test module only; the selection parser understands the subset of GraphQL
//! the queries use (aliases, arguments, inline fragments), nothing more.

use super::items::ITEMS_QUERY;
use super::meta::{FIELDS_QUERY, SET_STATUS, SET_STATUS_AND_NOTE};
use super::standing::STATUSES_QUERY;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A selection set: response key → its own selection (empty for a scalar).
#[derive(Debug, Default)]
struct Selection(BTreeMap<String, Selection>);

impl Selection {
    fn merge(&mut self, other: Selection) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().merge(v);
        }
    }
}

fn tokens(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = query.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
            continue;
        }
        if c == '.' && chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
            out.push("...".into());
            i += 3;
            continue;
        }
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
        } else if "{}():".contains(c) {
            out.push(c.to_string());
        }
        i += 1;
    }
    out
}

/// Skip a balanced `( … )` starting at `toks[*at]`.
fn skip_args(toks: &[String], at: &mut usize) {
    let mut depth = 0;
    while *at < toks.len() {
        match toks[*at].as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    *at += 1;
                    return;
                }
            }
            _ => {}
        }
        *at += 1;
    }
}

/// Parse the selection set opening at `toks[*at]` (a `{`).
fn parse_set(toks: &[String], at: &mut usize) -> Selection {
    assert_eq!(toks[*at], "{", "a selection set opens with {{");
    *at += 1;
    let mut sel = Selection::default();
    while toks[*at] != "}" {
        if toks[*at] == "..." {
            assert_eq!(toks[*at + 1], "on", "only inline fragments are used");
            *at += 3;
            let inner = parse_set(toks, at);
            sel.merge(inner);
            continue;
        }
        let mut key = toks[*at].clone();
        *at += 1;
        if toks[*at] == ":" {
            *at += 1; // `key: field`
            *at += 1;
        }
        if toks[*at] == "(" {
            skip_args(toks, at);
        }
        let child = if toks[*at] == "{" {
            parse_set(toks, at)
        } else {
            Selection::default()
        };
        sel.0
            .entry(std::mem::take(&mut key))
            .or_default()
            .merge(child);
    }
    *at += 1;
    sel
}

/// The selection of a whole operation (`query(…) { … }` or `mutation(…) { … }`).
fn selection(query: &str) -> Selection {
    let toks = tokens(query);
    let mut at = 1;
    if toks[at] == "(" {
        skip_args(&toks, &mut at);
    }
    parse_set(&toks, &mut at)
}

/// Every key of `v` that `sel` does not select, as paths.
fn unasked(v: &Value, sel: &Selection, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{path}.{k}");
                match sel.0.get(k) {
                    Some(s) => unasked(child, s, &p, out),
                    None => out.push(p),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unasked(item, sel, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Closed pull requests under `closedByPullRequestsReferences`, as paths.
fn closed_references(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{path}.{k}");
                if k == "closedByPullRequestsReferences" {
                    for (i, n) in child["nodes"].as_array().into_iter().flatten().enumerate() {
                        if n["state"] == "CLOSED" {
                            out.push(format!("{p}.nodes[{i}]"));
                        }
                    }
                }
                closed_references(child, &p, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                closed_references(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_graphql_fixture_holds_only_what_its_query_asks_for() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphql");
    let query_of = |name: &str| match name {
        "fields.json" => FIELDS_QUERY,
        "set-status.json" => SET_STATUS,
        "set-status-and-note.json" => SET_STATUS_AND_NOTE,
        n if n.starts_with("statuses") => STATUSES_QUERY,
        _ => ITEMS_QUERY,
    };
    let mut checked = 0;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let data = &v["data"];
        if data.is_null() {
            continue; // an error answer (owner not found, rate limited) selects nothing
        }
        checked += 1;
        let mut bad = Vec::new();
        unasked(data, &selection(query_of(&name)), "data", &mut bad);
        closed_references(data, "data", &mut bad);
        problems.extend(bad.into_iter().map(|p| format!("{name}: {p}")));
    }
    assert!(checked >= 7, "the fixtures were found ({checked})");
    assert!(
        problems.is_empty(),
        "fields no query asks for, or closed PRs: {problems:#?}"
    );
}

#[test]
fn the_checker_finds_an_unasked_field_and_a_closed_reference() {
    let sel = selection(ITEMS_QUERY);
    let items = &sel.0["owner"].0["projectV2"].0["items"];
    assert!(
        items.0["nodes"].0["content"]
            .0
            .contains_key("closedByPullRequestsReferences")
    );
    assert!(items.0["nodes"].0["content"].0.contains_key("headRefName"));
    let fixture = serde_json::json!({"owner": {"projectV2": {"items": {"nodes": [{
        "content": {"__typename": "Issue", "closedByPullRequestsReferences": {"nodes": [
            {"number": 1, "state": "CLOSED", "title": "x"}
        ]}}
    }]}}}});
    let mut bad = Vec::new();
    unasked(&fixture, &sel, "data", &mut bad);
    closed_references(&fixture, "data", &mut bad);
    assert_eq!(
        bad,
        [
            "data.owner.projectV2.items.nodes[0].content.closedByPullRequestsReferences.nodes[0].title",
            "data.owner.projectV2.items.nodes[0].content.closedByPullRequestsReferences.nodes[0]",
        ]
    );
}
