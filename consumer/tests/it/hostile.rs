//! The hostile queue-body corpus: message bodies a hand-made send, a buggy producer or an
//! attacker with queue access could put on the queue. Each is dead-lettered alone as
//! permanent input, without a build, with a reason naming the item (when its id can be
//! read) and the field; the good item sent after it in the same group still runs.

use crate::support::Harness;
use kiro_protocol::{DedupId, FailureClass, WorkQueue};
use serde_json::{Value, json};
use std::time::Duration;

/// A valid envelope of item `HOST-1` in project `alpha`, as JSON to break.
fn envelope() -> Value {
    json!({
        "schema": 1,
        "item": {
            "id": "HOST-1",
            "project": "alpha",
            "repo": "acme/calc",
            "branch": "feature/x",
            "spec": "x",
            "pr": 1,
            "title": "t",
            "updated_at": "2026-01-01T00:00:00Z",
        },
        "trace": {},
        "enqueued_at": 0,
    })
}

/// The envelope with `item.<field>` set to `value`.
fn with_field(field: &str, value: Value) -> String {
    let mut e = envelope();
    e["item"][field] = value;
    e.to_string()
}

/// The envelope without `item.<field>`.
fn without_field(field: &str) -> String {
    let mut e = envelope();
    e["item"].as_object_mut().unwrap().remove(field);
    e.to_string()
}

/// (case, body, words the reason must contain).
fn corpus() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let item = "HOST-1";
    vec![
        (
            "pr zero",
            with_field("pr", json!(0)),
            vec![item, "pull request"],
        ),
        (
            "pr huge",
            with_field("pr", json!(1_000_000_000_000_000u64)),
            vec![item, "pull request"],
        ),
        (
            "pr negative",
            with_field("pr", json!(-3)),
            vec![item, "pull request"],
        ),
        (
            "pr a string",
            with_field("pr", json!("1; rm -rf /")),
            vec![item, "pull request"],
        ),
        (
            "branch with a shell",
            with_field("branch", json!("x;$(id)")),
            vec![item, "branch"],
        ),
        (
            "branch leaving",
            with_field("branch", json!("../../etc")),
            vec![item, "branch"],
        ),
        (
            "repo with a space",
            with_field("repo", json!("acme/ca lc")),
            vec![item, "repo"],
        ),
        (
            "spec absolute",
            with_field("spec", json!("/etc/passwd")),
            vec![item, "spec"],
        ),
        (
            "spec leaving",
            with_field("spec", json!("../../x")),
            vec![item, "spec"],
        ),
        (
            "project with a newline",
            with_field("project", json!("alpha\nINFO x")),
            vec![item, "project"],
        ),
        ("no branch", without_field("branch"), vec![item, "branch"]),
        ("no repo", without_field("repo"), vec![item, "repo"]),
        (
            "id with a shell",
            with_field("id", json!("$(id)")),
            vec!["item id"],
        ),
        ("id missing", without_field("id"), vec!["id"]),
        (
            "item not an object",
            {
                let mut e = envelope();
                e["item"] = json!([1, 2]);
                e.to_string()
            },
            vec!["item"],
        ),
        (
            "schema missing",
            {
                let mut e = envelope();
                e.as_object_mut().unwrap().remove("schema");
                e.to_string()
            },
            vec!["schema"],
        ),
        (
            "schema a string",
            {
                let mut e = envelope();
                e["schema"] = json!("1");
                e.to_string()
            },
            vec!["schema"],
        ),
        (
            "not json",
            "{\"schema\": 1, \"item\": ".to_owned(),
            vec!["JSON"],
        ),
        ("a JSON array", "[1, 2, 3]".to_owned(), vec!["object"]),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            vec!["JSON"],
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn every_hostile_body_is_dead_lettered_alone_naming_the_item_and_field() {
    for (case, body, words) in corpus() {
        let h = Harness::new();
        h.send_body(body, "alpha", DedupId::new("hostile")).await;
        h.send("GOOD-1", "alpha").await;
        let mut e = h.engine("c1");
        for _ in 0..3 {
            e.tick(Duration::ZERO).await;
            if !h.runner.builds_of("GOOD-1").is_empty() {
                h.runner.succeed("GOOD-1");
            }
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        let dlq = h.queue.dlq_list(10).await.unwrap().entries;
        assert_eq!(
            dlq.len(),
            1,
            "{case}: only the hostile body is dead-lettered: {dlq:?}"
        );
        let letter = &dlq[0].letter;
        assert_eq!(
            letter.class,
            FailureClass::PermanentInput,
            "{case}: {}",
            letter.reason
        );
        for w in &words {
            assert!(
                letter.reason.contains(w),
                "{case}: the reason names {w:?}: {}",
                letter.reason
            );
        }
        assert!(letter.attempts.is_empty(), "{case}: no attempt was spent");
        assert!(
            h.runner.builds_of("HOST-1").is_empty(),
            "{case}: a hostile body never builds"
        );
        assert_eq!(
            h.runner.starts(),
            1,
            "{case}: the good item after it still ran"
        );
    }
}
