//! The happy path: enqueue, mark Queued, never twice; deduplication on re-marking.

use crate::{Item, board_yaml, env};
use kiro_protocol::{Board, Clock, Envelope, ItemStatus, WorkQueue};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn two_projects() -> String {
    board_yaml(&[
        Item::good("CALC-1", "calc"),
        Item::good("CALC-2", "calc"),
        Item::good("GREET-1", "greeter"),
    ])
}

#[tokio::test]
async fn good_items_are_enqueued_by_project_and_marked_queued() {
    let env = env(&two_projects());
    let report = env.producer.tick().await.unwrap();
    let ids: Vec<_> = report.enqueued.iter().map(|i| i.as_str()).collect();
    assert_eq!(ids, ["CALC-1", "CALC-2", "GREET-1"]);
    assert!(report.duplicates.is_empty() && report.rejected.is_empty());
    assert_eq!(report.to_string(), "enqueued 3, duplicates 0, rejected 0");
    assert_eq!(env.visible().await, 3);

    for id in ["CALC-1", "CALC-2", "GREET-1"] {
        assert_eq!(
            env.board.status_of(id).await.unwrap(),
            Some(ItemStatus::Queued),
            "{id}"
        );
    }

    // One project is strictly ordered: only the head of each group is delivered.
    let got = env.queue.receive(10, Duration::ZERO).await.unwrap();
    let mut seen: Vec<(String, String, String)> = got
        .iter()
        .map(|d| {
            let e = Envelope::decode(&d.body).unwrap();
            assert_eq!(d.dedup, e.item.dedup_id());
            assert_eq!(
                d.attributes.get("kiro.schema").map(String::as_str),
                Some("1")
            );
            assert_eq!(e.enqueued_at, env.clock.now());
            (
                d.group.to_string(),
                e.item.id.to_string(),
                e.item.branch.to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "calc".to_owned(),
                "CALC-1".to_owned(),
                "feature/calc-1".to_owned()
            ),
            (
                "greeter".to_owned(),
                "GREET-1".to_owned(),
                "feature/greet-1".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn a_second_tick_enqueues_nothing() {
    let env = env(&two_projects());
    env.producer.tick().await.unwrap();
    env.clock.advance(Duration::from_secs(60));
    let second = env.producer.tick().await.unwrap();
    assert!(second.enqueued.is_empty(), "{second:?}");
    assert!(second.duplicates.is_empty(), "{second:?}");
    assert_eq!(env.visible().await, 3);
}

#[tokio::test]
async fn re_marking_ready_within_the_dedup_window_is_deduplicated() {
    let env = env(&two_projects());
    env.producer.tick().await.unwrap();
    env.board
        .set_status("CALC-1", ItemStatus::Ready, None)
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(4 * 60));

    let report = env.producer.tick().await.unwrap();
    assert!(report.enqueued.is_empty(), "{report:?}");
    let dups: Vec<_> = report.duplicates.iter().map(|i| i.as_str()).collect();
    assert_eq!(dups, ["CALC-1"]);
    assert_eq!(env.visible().await, 3);
    assert_eq!(
        env.board.status_of("CALC-1").await.unwrap(),
        Some(ItemStatus::Queued)
    );

    // Past the window the same item is a new message.
    env.board
        .set_status("CALC-1", ItemStatus::Ready, None)
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(2 * 60));
    let later = env.producer.tick().await.unwrap();
    let ids: Vec<_> = later.enqueued.iter().map(|i| i.as_str()).collect();
    assert_eq!(ids, ["CALC-1"]);
    assert_eq!(env.visible().await, 4);
}

#[tokio::test]
async fn an_item_edited_in_the_file_is_enqueued_again_with_a_new_dedup_id() {
    let env = env(&two_projects());
    env.producer.tick().await.unwrap();
    let mut edited = Item::good("CALC-1", "calc");
    edited.updated_at = "2026-11-02T08:00:00Z".into();
    std::fs::write(
        &env.board_file,
        board_yaml(&[
            edited,
            Item::good("CALC-2", "calc"),
            Item::good("GREET-1", "greeter"),
        ]),
    )
    .unwrap();
    let report = env.producer.tick().await.unwrap();
    let ids: Vec<_> = report.enqueued.iter().map(|i| i.as_str()).collect();
    assert_eq!(ids, ["CALC-1"]);
    assert_eq!(env.visible().await, 4);
}

#[tokio::test]
async fn a_broken_board_file_is_a_tick_error_not_a_panic() {
    let env = env(&two_projects());
    std::fs::write(&env.board_file, "items:\n  - id: [unclosed\n").unwrap();
    let err = env.producer.tick().await.unwrap_err();
    assert!(err.to_string().contains("board.yaml, line"), "{err}");
    assert_eq!(env.visible().await, 0);
}

#[tokio::test]
async fn run_ticks_at_once_and_stops_when_cancelled() {
    let env = env(&two_projects());
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let producer = env.producer.clone();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        producer
            .run(Duration::from_secs(300), stop, move |r| {
                let _ = tx.send(
                    r.as_ref()
                        .map(|r| r.enqueued.len())
                        .map_err(|e| e.to_string()),
                );
            })
            .await;
    });
    let first = rx.recv().await.unwrap();
    assert_eq!(first, Ok(3));
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run stops when cancelled")
        .unwrap();
    assert!(rx.recv().await.is_none(), "no tick after cancel");
}

#[tokio::test]
async fn a_run_stopped_before_it_began_enqueues_nothing() {
    // The binary installs its signal handlers before wiring: a stop during start-up
    // cancels the token before the loop's first tick.
    let env = env(&two_projects());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let mut ticks = 0;
    tokio::time::timeout(
        Duration::from_secs(10),
        env.producer
            .run(Duration::from_secs(300), cancel, |_| ticks += 1),
    )
    .await
    .expect("ends at once");
    assert_eq!(ticks, 0);
    assert_eq!(env.visible().await, 0, "nothing enqueued");
}
