//! Unit tests of the embedded queue (the shared contract suite runs in backends/tests).

use super::*;
use kiro_protocol::{DedupId, FailureClass, ManualClock, ProjectKey, TraceContext};
use std::collections::BTreeMap;

fn msg(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: body.into(),
        group: ProjectKey::parse(group).unwrap(),
        dedup: DedupId::new(dedup),
        trace: TraceContext::default(),
        attributes: BTreeMap::new(),
    }
}

fn open(dir: &tempfile::TempDir, clock: &ManualClock, config: QueueConfig) -> SqliteQueue {
    let db = EmbeddedDb::open_dir(dir.path()).unwrap();
    SqliteQueue::new(db, Arc::new(clock.clone()), config).unwrap()
}

#[tokio::test]
async fn exceeding_max_receive_count_dead_letters_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let q = open(
        &dir,
        &clock,
        QueueConfig {
            max_receive_count: 2,
            ..Default::default()
        },
    );
    q.send(msg("p", "a", "A")).await.unwrap();
    q.send(msg("p", "b", "B")).await.unwrap();
    for n in 1..=2 {
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].body.as_str(), got[0].receive_count), ("A", n));
        clock.advance(Duration::from_secs(31));
    }
    // The third receive moves A to the DLQ and delivers B in the same call.
    let got = q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "B");
    let dlq = q.dlq_list(10).await.unwrap().entries;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].body, "A");
    assert_eq!(dlq[0].letter.class, FailureClass::Internal);
    assert_eq!(dlq[0].letter.reason, "exceeded max receive count 2");
    assert_eq!(dlq[0].receive_count, 2);
}

#[tokio::test]
async fn visibility_is_capped_at_twelve_hours_after_the_receive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let q = open(&dir, &clock, QueueConfig::default());
    q.send(msg("p", "a", "A")).await.unwrap();
    let d = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
    clock.advance(Duration::from_secs(11 * 3600));
    let r = q
        .extend(
            std::slice::from_ref(&d.receipt),
            Duration::from_secs(5 * 3600),
        )
        .await
        .unwrap();
    assert!(r[0].is_ok());
    clock.advance(Duration::from_secs(3600) - Duration::from_millis(1));
    assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
    clock.advance(Duration::from_millis(1));
    let again = q.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "visible again exactly 12 h after the receive"
    );
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test(start_paused = true)]
async fn receive_waits_for_a_message_with_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let q = open(&dir, &clock, QueueConfig::default());
    let started = tokio::time::Instant::now();
    assert!(
        q.receive(1, Duration::from_secs(2))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    let q2 = q.clone();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q2.send(msg("p", "a", "A")).await.unwrap();
    });
    let got = q.receive(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got.len(), 1);
    sender.await.unwrap();
}

#[tokio::test]
async fn one_receive_serves_many_groups_but_one_message_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let q = open(&dir, &clock, QueueConfig::default());
    for g in ["a", "b", "c"] {
        for n in 0..3 {
            q.send(msg(g, &format!("{g}{n}"), &format!("{g}{n}")))
                .await
                .unwrap();
        }
    }
    let got = q.receive(10, Duration::ZERO).await.unwrap();
    let bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(bodies, ["a0", "b0", "c0"]);
    let depth = q.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (6, 3, 0));
}
