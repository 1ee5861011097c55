//! Fixtures must be what GitHub would answer to the query actually sent: every key of a
//! fixture's `data` must be selected by that query at that place (aliases and inline
//! fragments included), and an item's content holds every field its type's fragment
//! selects (GitHub answers each one, `null` or empty when there is nothing). A small
//! reader of GraphQL selection sets, enough for the documents this crate sends.

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

/// The items query exactly as the board sends it (read from the request it makes).
async fn sent_items_query() -> String {
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
    body["query"].as_str().unwrap().to_owned()
}

const ITEM_FIXTURES: [&str; 4] = [
    "items-page-1.json",
    "items-page-2.json",
    "items-page-3.json",
    "items-partial-errors.json",
];

/// Every items page fixture answers the items query the board sends.
#[tokio::test]
async fn item_fixtures_answer_the_query_sent() {
    let query = sent_items_query().await;
    for name in ITEM_FIXTURES {
        let answer = fixture(&format!("graphql/{name}"));
        let problems = mismatches(&query, &answer);
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

/// The selection of each inline fragment directly under the first `field { … }` of
/// `doc`, by type (fields outside a fragment are in every type's).
fn fragments_under(doc: &str, field: &str) -> BTreeMap<String, Selection> {
    let t = tokens(doc);
    let at = t
        .windows(2)
        .position(|w| w[0] == field && w[1] == "{")
        .unwrap_or_else(|| panic!("{field} {{ … }} in the query"));
    let mut i = at + 2;
    let mut common = Selection::default();
    let mut by_type: BTreeMap<String, Selection> = BTreeMap::new();
    while t[i] != "}" {
        if t[i] == "..." {
            assert_eq!(t[i + 1], "on");
            let ty = t[i + 2].clone();
            i = selection(&t, i + 4, by_type.entry(ty).or_default());
        } else {
            common.0.entry(t[i].clone()).or_default();
            i = skip_args(&t, i + 1);
        }
    }
    for sel in by_type.values_mut() {
        for k in common.0.keys() {
            sel.0.entry(k.clone()).or_default();
        }
    }
    by_type
}

/// Fields `sel` selects that `value` lacks (GitHub answers every selected field).
fn missing(value: &Value, sel: &Selection, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, child) in &sel.0 {
                match map.get(k) {
                    Some(v) => missing(v, child, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k} is selected but missing")),
                }
            }
        }
        Value::Array(items) => {
            for (n, v) in items.iter().enumerate() {
                missing(v, sel, &format!("{at}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Each item's content (an issue, a pull request or a draft) holds every field its type's
/// fragment selects — the assignees' logins included — and nothing else.
#[tokio::test]
async fn item_contents_hold_every_field_their_type_selects() {
    let query = sent_items_query().await;
    let by_type = fragments_under(&query, "content");
    for ty in ["Issue", "PullRequest", "DraftIssue"] {
        let assignees = by_type[ty].0.get("assignees").map(|a| &a.0["nodes"].0);
        assert!(
            assignees.is_some_and(|n| n.len() == 1 && n.contains_key("login")),
            "{ty} selects assignees {{ nodes {{ login }} }}"
        );
        assert!(query.contains("assignees(first: 10)"), "{query}");
    }
    let mut seen = BTreeMap::<String, usize>::new();
    let mut logins = 0;
    for name in ITEM_FIXTURES {
        let answer = fixture(&format!("graphql/{name}"));
        let nodes = answer["data"]["owner"]["projectV2"]["items"]["nodes"]
            .as_array()
            .unwrap();
        for (n, node) in nodes.iter().enumerate() {
            let content = &node["content"];
            let Some(ty) = content["__typename"].as_str() else {
                continue; // a null node or hidden content: nothing to answer
            };
            let sel = by_type
                .get(ty)
                .unwrap_or_else(|| panic!("{name}: no fragment on {ty}"));
            let at = format!("{name}: nodes[{n}].content");
            let mut problems = Vec::new();
            missing(content, sel, &at, &mut problems);
            check(content, sel, &at, &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
            *seen.entry(ty.to_owned()).or_default() += 1;
            logins += content["assignees"]["nodes"].as_array().unwrap().len();
        }
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["DraftIssue", "Issue", "PullRequest"],
        "the fixtures hold every content type"
    );
    assert!(logins > 0, "some fixture item is assigned");
}

#[test]
fn the_completeness_check_finds_a_missing_field() {
    let q = "query { x { content { __typename ... on Issue { title assignees(first: 10) { nodes { login } } } } } }";
    let by_type = fragments_under(q, "content");
    let issue = &by_type["Issue"];
    assert!(issue.0.contains_key("__typename") && issue.0.contains_key("title"));
    let mut out = Vec::new();
    missing(
        &serde_json::json!({"__typename": "Issue", "title": "t", "assignees": {"nodes": [{}]}}),
        issue,
        "c",
        &mut out,
    );
    assert_eq!(out, ["c.assignees.nodes[0].login is selected but missing"]);
}
