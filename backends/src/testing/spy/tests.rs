//! A spy forwards every method — the defaulted ones included — and counts each call.
//! The fakes below answer every method with something its trait's default would not,
//! and record which of their methods ran, so a method the spy left to the default shows
//! up twice: as a wrong answer, and as a call the fake never saw.

use super::*;
use crate::embedded::{EmbeddedDb, QueueConfig, SqliteLeaseStore, SqliteQueue};
use crate::testing::contract::queue::{letter, message};
use kiro_protocol::{DeadLetterEntry, FailureClass, ManualClock, MessageId};

/// Records which of its methods ran.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<&'static str>>);

impl Seen {
    fn saw(&self, method: &'static str) {
        self.0.lock().unwrap().push(method);
    }
    fn all(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug, Default)]
struct FakeQueue(Seen);

fn fake_destination() -> Destination {
    Destination {
        system: "fake",
        name: "spied".into(),
    }
}

#[async_trait]
impl WorkQueue for FakeQueue {
    fn destination(&self) -> Destination {
        self.0.saw("destination");
        fake_destination()
    }
    async fn send(&self, _: OutgoingMessage) -> Result<SendOutcome, PortError> {
        self.0.saw("send");
        Ok(SendOutcome {
            message_id: MessageId::new("m-1"),
            duplicate: true,
        })
    }
    async fn receive(&self, _: usize, _: Duration) -> Result<Vec<Delivery>, PortError> {
        self.0.saw("receive");
        Ok(Vec::new())
    }
    async fn extend(
        &self,
        r: &[Receipt],
        _: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.0.saw("extend");
        Ok(r.iter().map(|_| Ok(())).collect())
    }
    async fn ack(&self, _: &Receipt) -> Result<(), PortError> {
        self.0.saw("ack");
        Err(PortError::input("one by one"))
    }
    async fn ack_batch(&self, r: &[Receipt]) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.0.saw("ack_batch");
        Ok(r.iter().map(|_| Ok(())).collect())
    }
    async fn release(&self, _: &Receipt, _: Duration) -> Result<(), PortError> {
        self.0.saw("release");
        Ok(())
    }
    async fn dead_letter(&self, _: &Delivery, _: &DeadLetter) -> Result<(), PortError> {
        self.0.saw("dead_letter");
        Ok(())
    }
    async fn dlq_list(&self, _: usize) -> Result<DlqListing, PortError> {
        self.0.saw("dlq_list");
        Ok(DlqListing::default())
    }
    async fn dlq_replay(&self, _: &DlqSelection, dry: bool) -> Result<ReplayReport, PortError> {
        self.0.saw("dlq_replay");
        Ok(ReplayReport {
            dry_run: dry,
            ..ReplayReport::default()
        })
    }
    async fn dlq_replay_with(
        &self,
        _: &DlqSelection,
        dry: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        self.0.saw("dlq_replay_with");
        let entry = DeadLetterEntry {
            id: MessageId::new("dl-1"),
            original_id: MessageId::new("m-1"),
            group: ProjectKey::parse("alpha").unwrap().into(),
            body: String::new(),
            letter: letter(FailureClass::TestsFailed, "red"),
            dead_lettered_at: Timestamp::ZERO,
            receive_count: 1,
        };
        progress.before(&entry).await;
        progress.replayed(&entry, &MessageId::new("m-2"));
        Ok(ReplayReport {
            dry_run: dry,
            replayed: vec![MessageId::new("m-2")],
            ..ReplayReport::default()
        })
    }
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.0.saw("dlq_redrive");
        Ok(7)
    }
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.0.saw("dlq_purge");
        Ok(42)
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.0.saw("depth");
        Ok(QueueDepth {
            visible: 3,
            ..QueueDepth::default()
        })
    }
}

/// Replay progress written down as words.
#[derive(Default)]
struct Told(Vec<String>);

#[async_trait]
impl ReplayProgress for Told {
    async fn before(&mut self, e: &DeadLetterEntry) {
        self.0.push(format!("before {}", e.id));
    }
    fn replayed(&mut self, e: &DeadLetterEntry, new_id: &MessageId) {
        self.0.push(format!("replayed {} as {new_id}", e.id));
    }
}

/// A real delivery and its receipt, from an embedded queue.
async fn a_delivery(dir: &tempfile::TempDir) -> Delivery {
    let db = EmbeddedDb::open_dir(dir.path()).unwrap();
    let q = SqliteQueue::new(db, Arc::new(ManualClock::default()), QueueConfig::default()).unwrap();
    q.send(message("alpha", "d-1", "body")).await.unwrap();
    q.receive(1, Duration::ZERO).await.unwrap().remove(0)
}

#[tokio::test]
async fn a_queue_spy_forwards_every_method_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = a_delivery(&dir).await;
    let fake = Arc::new(FakeQueue::default());
    let observed = Arc::new(Mutex::new(Vec::new()));
    let seen = observed.clone();
    let spy = Spy::new(fake.clone()).with_observer(move |c| seen.lock().unwrap().push(*c));
    let two = [d.receipt.clone(), d.receipt.clone()];

    // The methods with a default body answer as the fake does, not as the default would.
    assert_eq!(spy.destination(), fake_destination());
    assert_eq!(spy.dlq_purge().await.unwrap(), 42);
    assert!(spy.ack_batch(&two).await.unwrap().iter().all(Result::is_ok));
    // And every other method.
    assert!(
        spy.send(message("alpha", "d-2", "b"))
            .await
            .unwrap()
            .duplicate
    );
    assert!(spy.receive(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(
        spy.extend(&two, Duration::from_secs(9))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(spy.ack(&d.receipt).await.is_err());
    spy.release(&d.receipt, Duration::ZERO).await.unwrap();
    let red = letter(FailureClass::TestsFailed, "red");
    spy.dead_letter(&d, &red).await.unwrap();
    assert!(spy.dlq_list(5).await.unwrap().entries.is_empty());
    assert!(
        spy.dlq_replay(&DlqSelection::default(), true)
            .await
            .unwrap()
            .dry_run
    );
    let mut told = Told::default();
    let rep = spy
        .dlq_replay_with(&DlqSelection::default(), false, &mut told)
        .await
        .unwrap();
    assert_eq!(rep.replayed, [MessageId::new("m-2")]);
    assert_eq!(
        told.0,
        ["before dl-1", "replayed dl-1 as m-2"],
        "progress passed on"
    );
    assert_eq!(spy.dlq_redrive().await.unwrap(), 7);
    assert_eq!(spy.depth().await.unwrap().visible, 3);

    let every = [
        "destination",
        "dlq_purge",
        "ack_batch",
        "send",
        "receive",
        "extend",
        "ack",
        "release",
        "dead_letter",
        "dlq_list",
        "dlq_replay",
        "dlq_replay_with",
        "dlq_redrive",
        "depth",
    ];
    assert_eq!(fake.0.all(), every, "the adapter saw each call, once");
    for method in every {
        assert_eq!(spy.calls(method), 1, "{method}");
    }
    assert_eq!((spy.items("ack_batch"), spy.items("extend")), (2, 2));
    assert_eq!(spy.tally().len(), every.len());
    let methods: Vec<&str> = observed.lock().unwrap().iter().map(|c| c.method).collect();
    assert_eq!(methods, every, "the observer saw each call");
}

#[tokio::test]
async fn a_lease_spy_forwards_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = EmbeddedDb::open_dir(dir.path()).unwrap();
    let store = SqliteLeaseStore::new(db, Arc::new(ManualClock::default()), Duration::ZERO);
    let spy = Spy::new(Arc::new(store.unwrap()));
    let p = ProjectKey::parse("alpha").unwrap();
    let session = spy
        .open_session("me", Duration::from_secs(30))
        .await
        .unwrap();
    let lease = spy.acquire(&p, &session).await.unwrap();
    let session = spy
        .renew_session(&session, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!spy.session("me").await.unwrap().unwrap().ended);
    assert_eq!(spy.get(&p).await.unwrap().unwrap().fence, lease.fence);
    assert!(spy.jobs().await.unwrap().is_empty());
    assert!(
        spy.job(&p, &ItemId::parse("A-1").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    spy.release(&lease).await.unwrap();
    spy.end_session(&session).await.unwrap();
    for method in [
        "open_session",
        "acquire",
        "renew_session",
        "session",
        "get",
        "jobs",
        "job",
        "release",
        "end_session",
    ] {
        assert_eq!(spy.calls(method), 1, "{method}");
    }
}

#[derive(Debug, Default)]
struct FakeRunner(Seen);

#[async_trait]
impl BuildRunner for FakeRunner {
    async fn start(&self, _: &BuildRequest) -> Result<BuildId, PortError> {
        self.0.saw("start");
        Ok(BuildId::new("b-1"))
    }
    async fn find(&self, _: &str, _: Timestamp) -> Result<Option<BuildId>, PortError> {
        self.0.saw("find");
        Ok(Some(BuildId::new("found")))
    }
    async fn status(&self, _: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        self.0.saw("status");
        Ok(Vec::new())
    }
    async fn stop(&self, _: &BuildId) -> Result<(), PortError> {
        self.0.saw("stop");
        Ok(())
    }
}

#[tokio::test]
async fn a_build_spy_forwards_find() {
    let fake = Arc::new(FakeRunner::default());
    let spy = Spy::new(fake.clone());
    assert_eq!(
        spy.find("k", Timestamp(0)).await.unwrap(),
        Some(BuildId::new("found"))
    );
    let ids = [BuildId::new("a"), BuildId::new("b")];
    assert!(spy.status(&ids).await.unwrap().is_empty());
    spy.stop(&ids[0]).await.unwrap();
    assert_eq!(fake.0.all(), ["find", "status", "stop"]);
    assert_eq!((spy.calls("status"), spy.items("status")), (1, 2));
}

#[derive(Debug, Default)]
struct FakeProtection(Seen);

#[async_trait]
impl TaskProtection for FakeProtection {
    async fn set(&self, _: bool) -> Result<(), PortError> {
        self.0.saw("set");
        Ok(())
    }
    fn refresh_every(&self) -> Option<Duration> {
        self.0.saw("refresh_every");
        Some(Duration::from_secs(7))
    }
}

#[tokio::test]
async fn a_protection_spy_forwards_refresh_every() {
    let fake = Arc::new(FakeProtection::default());
    let spy = Spy::new(fake.clone());
    assert_eq!(spy.refresh_every(), Some(Duration::from_secs(7)));
    spy.set(true).await.unwrap();
    assert_eq!(fake.0.all(), ["refresh_every", "set"]);
    assert_eq!(spy.calls("set"), 1);
}

#[derive(Debug, Default)]
struct FakeForge(Seen);

#[async_trait]
impl PullRequests for FakeForge {
    async fn get(&self, _: &RepoName, _: PrNumber) -> Result<Option<PullRequest>, PortError> {
        self.0.saw("get");
        Ok(None)
    }
    async fn upsert_report(&self, _: &RepoName, _: PrNumber, _: &Report) -> Result<(), PortError> {
        self.0.saw("upsert_report");
        Ok(())
    }
    async fn comment(&self, _: &RepoName, _: PrNumber, _: &Report) -> Result<(), PortError> {
        self.0.saw("comment");
        Ok(())
    }
    async fn publish_check(
        &self,
        _: &RepoName,
        _: PrNumber,
        _: &CheckReport,
    ) -> Result<(), PortError> {
        self.0.saw("publish_check");
        Err(PortError::transient("checks are down"))
    }
}

#[async_trait]
impl Board for FakeForge {
    async fn ready_items(&self) -> Result<Vec<BoardItem>, PortError> {
        self.0.saw("ready_items");
        Ok(Vec::new())
    }
    async fn set_status(&self, _: &str, _: ItemStatus, _: Option<&str>) -> Result<(), PortError> {
        self.0.saw("set_status");
        Ok(())
    }
    async fn statuses(
        &self,
        _: &[String],
    ) -> Result<std::collections::HashMap<String, kiro_protocol::BoardStanding>, PortError> {
        self.0.saw("statuses");
        Ok(Default::default())
    }
    async fn set_status_from(
        &self,
        _: &str,
        _: &[ItemStatus],
        _: ItemStatus,
        _: Option<&str>,
    ) -> Result<kiro_protocol::StatusChange, PortError> {
        self.0.saw("set_status_from");
        Ok(kiro_protocol::StatusChange::Moved)
    }
}

#[tokio::test]
async fn board_and_pull_request_spies_forward_every_method() {
    let fake = Arc::new(FakeForge::default());
    let spy = Spy::new(fake.clone());
    let repo = RepoName::parse("acme/calc").unwrap();
    let pr = PrNumber::parse("1").unwrap();
    let check = CheckReport {
        item: ItemId::parse("A-1").unwrap(),
        success: false,
        title: "0 of 1 tasks done".into(),
        summary: "red".into(),
    };
    assert!(spy.publish_check(&repo, pr, &check).await.is_err());
    assert!(PullRequests::get(&spy, &repo, pr).await.unwrap().is_none());
    let report = Report {
        item: ItemId::parse("A-1").unwrap(),
        markdown: "done".into(),
    };
    spy.upsert_report(&repo, pr, &report).await.unwrap();
    spy.comment(&repo, pr, &report).await.unwrap();
    assert!(spy.ready_items().await.unwrap().is_empty());
    spy.set_status("A-1", ItemStatus::Done, None).await.unwrap();
    assert!(spy.statuses(&["A-1".into()]).await.unwrap().is_empty());
    spy.set_status_from("A-1", &[ItemStatus::InProgress], ItemStatus::Done, None)
        .await
        .unwrap();
    assert_eq!(
        fake.0.all(),
        [
            "publish_check",
            "get",
            "upsert_report",
            "comment",
            "ready_items",
            "set_status",
            "statuses",
            "set_status_from"
        ]
    );
    assert_eq!(spy.tally().len(), 8);
}
