//! Fixtures must be what GitHub would answer to the query actually sent: every key of a
//! fixture's `data` must be selected by that query at that place (aliases and inline
//! fragments included). A small reader of GraphQL selection sets, enough for the
//! documents this crate sends.

use crate::support::{fixture, settings};
use kiro_github::gh::{FieldConfig, GithubBoard, OwnerKind, ProjectRef};
use kiro_protocol::ManualClock;
use serde_json::Value;
use std::collections::BTreeMap;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The fields selected at one level: response key → what is selected below it.
#[derive(Debug, Default)]
struct Selection(BTreeMap<String, Selection>);

fn tokens(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = doc.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() || c == ',' => {}
            '{' | '}' | ':' | '(' | ')' => out.push(c.to_string()),
            '.' => {
                chars.next();
                chars.next();
                out.push("...".into());
            }
            '"' => {
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                }
                out.push("\"\"".into());
            }
            c => {
                let mut word = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '$' || n == '!' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(word);
            }
        }
    }
    out
}

fn skip_args(t: &[String], mut i: usize) -> usize {
    if t.get(i).map(String::as_str) != Some("(") {
        return i;
    }
    let mut depth = 0;
    while let Some(tok) = t.get(i) {
        match tok.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Parse a selection set starting after its `{`; returns it and the index after `}`.
fn selection(t: &[String], mut i: usize, into: &mut Selection) -> usize {
    while let Some(tok) = t.get(i) {
        match tok.as_str() {
            "}" => return i + 1,
            "..." => {
                // `... on Type { … }`: merged into this level.
                i += 4;
                assert_eq!(t[i - 1], "{", "inline fragment at token {i}");
                i = selection(t, i, into);
            }
            name => {
                let mut key = name.to_owned();
                i += 1;
                if t.get(i).map(String::as_str) == Some(":") {
                    i += 2; // alias: the response key is the alias
                }
                i = skip_args(t, i);
                let child = into.0.entry(key.split_off(0)).or_default();
                if t.get(i).map(String::as_str) == Some("{") {
                    i = selection(t, i + 1, child);
                }
            }
        }
    }
    i
}

fn parse(doc: &str) -> Selection {
    let t = tokens(doc);
    let open = t.iter().position(|x| x == "{").expect("a selection set");
    // Skip the operation's variable definitions: the first `{` after them.
    let mut root = Selection::default();
    selection(&t, open + 1, &mut root);
    root
}

fn check(value: &Value, sel: &Selection, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match sel.0.get(k) {
                    Some(child) => check(v, child, &format!("{at}.{k}"), problems),
                    None => problems.push(format!("{at}.{k} is not selected by the query")),
                }
            }
        }
        Value::Array(items) => {
            for (n, v) in items.iter().enumerate() {
                check(v, sel, &format!("{at}[{n}]"), problems);
            }
        }
        _ => {}
    }
}

/// The problems of `response` as an answer to `query` (empty when it fits).
fn mismatches(query: &str, response: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(data) = response.get("data") {
        check(data, &parse(query), "data", &mut problems);
    }
    problems
}

#[test]
fn the_reader_sees_aliases_fragments_and_nesting() {
    let q = "query($a: Int!) { owner: user(login: $a) { ... on User { name } items(first: 1) { nodes { id } } } }";
    let ok = serde_json::json!({"data": {"owner": {"name": "x", "items": {"nodes": [{"id": 1}]}}}});
    assert!(mismatches(q, &ok).is_empty(), "{:?}", mismatches(q, &ok));
    let extra =
        serde_json::json!({"data": {"owner": {"items": {"nodes": [{"id": 1, "title": "t"}]}}}});
    assert_eq!(
        mismatches(q, &extra),
        ["data.owner.items.nodes[0].title is not selected by the query"]
    );
}

/// Every items page fixture answers the items query the board sends.
#[tokio::test]
async fn item_fixtures_answer_the_query_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("graphql/items-page-3.json")),
        )
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let board = GithubBoard::new(
        settings(&server, &clock),
        ProjectRef {
            owner: "acme".into(),
            owner_kind: OwnerKind::Org,
            number: 7,
        },
        FieldConfig::default(),
    )
    .unwrap();
    board.ready_items_report().await.unwrap();
    let sent = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let query = body["query"].as_str().unwrap();
    for name in [
        "items-page-1.json",
        "items-page-2.json",
        "items-page-3.json",
        "items-partial-errors.json",
    ] {
        let answer = fixture(&format!("graphql/{name}"));
        let problems = mismatches(query, &answer);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        // `includeClosedPrs: false`: GitHub never lists a closed pull request there.
        if query.contains("includeClosedPrs: false") {
            let text = answer.to_string();
            for refs in text.split("closedByPullRequestsReferences").skip(1) {
                let nodes = &refs[..refs.find(']').unwrap_or(refs.len())];
                assert!(
                    !nodes.contains("\"CLOSED\""),
                    "{name}: a closed PR among {nodes}"
                );
            }
        }
    }
}
