//! The dead-letter console, end to end: the real `kiro-consumer dlq …` binary against an
//! embedded state directory filled through the `SqliteQueue` API (send, receive,
//! dead-letter). Checks outputs and effects of list / show / replay / dry-run / purge,
//! the refusal without `--yes` on a non-terminal stdin, per-project order on replay,
//! that an interrupted replay loses nothing and that no progress bar is drawn when
//! stdout is not a terminal; on SQS (moto), the X-Ray and CodeBuild console links.

use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteQueue};
use kiro_protocol::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct State {
    dir: tempfile::TempDir,
    queue: SqliteQueue,
}

impl State {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let queue = SqliteQueue::new(db, Arc::new(SystemClock), QueueConfig::default()).unwrap();
        State { dir, queue }
    }

    /// Send an item of `project`, receive it and dead-letter it with `class`.
    async fn dead_letter(&self, item: &str, project: &str, class: FailureClass) -> MessageId {
        let work = WorkItem {
            id: ItemId::parse(item).unwrap(),
            project: ProjectKey::parse(project).unwrap(),
            repo: RepoName::parse("acme/calc").unwrap(),
            branch: BranchName::parse("feature/x").unwrap(),
            spec: SpecPath::parse("x").unwrap(),
            pr: PrNumber(1),
            title: "t".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            assignees: Vec::new(),
        };
        let trace = TraceContext::from_traceparent(TRACEPARENT).unwrap();
        let env = Envelope::new(work.clone(), trace.clone(), SystemClock.now());
        self.queue
            .send(OutgoingMessage {
                body: env.encode(),
                group: work.project.clone(),
                dedup: work.dedup_id(),
                trace: trace.clone(),
                attributes: Default::default(),
            })
            .await
            .unwrap();
        let got = self.queue.receive(10, Duration::ZERO).await.unwrap();
        let d = got
            .into_iter()
            .find(|d| d.body.contains(item))
            .expect("the message just sent is delivered");
        let build = BuildId::new(format!("local:{item}"));
        let letter = DeadLetter {
            reason: format!("{item} failed"),
            class,
            attempts: vec![AttemptRecord {
                attempt: 1,
                fence: Fence(7),
                build_id: Some(build.clone()),
                started_at: SystemClock.now(),
                ended_at: Some(SystemClock.now()),
                failure: Some(Failure::new(class, "boom")),
            }],
            fence: Some(Fence(7)),
            build_id: Some(build),
            trace,
        };
        self.queue.dead_letter(&d, &letter).await.unwrap();
        let entries = self.queue.dlq_list(100).await.unwrap().entries;
        entries
            .iter()
            .find(|e| e.original_id == d.message_id)
            .unwrap()
            .id
            .clone()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiro-consumer"));
        c.arg("--state-dir")
            .arg(self.dir.path())
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    async fn dlq_len(&self) -> usize {
        self.queue.dlq_list(100).await.unwrap().entries.len()
    }

    /// Bodies' item ids received from the main queue, one group-round at a time.
    async fn drain_items(&self) -> Vec<String> {
        let mut items = Vec::new();
        loop {
            let got = self.queue.receive(10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                return items;
            }
            for d in got {
                items.push(Envelope::decode(&d.body).unwrap().item.id.to_string());
                self.queue.ack(&d.receipt).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn list_and_show_print_the_record() {
    let s = State::new();
    let id = s
        .dead_letter("ITEM1", "alpha", FailureClass::TestsFailed)
        .await;
    let table = s.ok(&["dlq", "list"]);
    assert!(table.starts_with("MESSAGE"), "{table}");
    assert!(
        table.contains(id.as_str()) && table.contains("ITEM1"),
        "{table}"
    );
    assert!(table.contains("tests-failed"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["dlq", "list", "--json"])).unwrap();
    assert_eq!(json["dead_letters"][0]["project"], "alpha");
    assert_eq!(json["dead_letters"][0]["item"], "ITEM1");
    assert_eq!(json["more"], 0, "the embedded queue lists every letter");
    assert!(json["partial"].is_null());

    let show = s.ok(&["dlq", "show", id.as_str()]);
    let log = s
        .dir
        .path()
        .join("builds/local_ITEM1/build.log")
        .display()
        .to_string();
    for want in [
        "local:ITEM1",
        log.as_str(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "1-4bf92f35-77b34da6a3ce929d0e0e4736",
        "#1 fence=7 build=local:ITEM1 failure=tests-failed: boom",
        "ITEM1 failed",
    ] {
        assert!(show.contains(want), "missing {want:?} in\n{show}");
    }
    assert!(
        !show.contains("console.aws.amazon.com"),
        "no X-Ray link on the embedded default"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["dlq", "show", id.as_str(), "--json"])).unwrap();
    assert_eq!(json["build_log"], log.as_str());
    assert_eq!(json["fence"], 7);
    let missing = s.run(&["dlq", "show", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter nope"));
}

#[tokio::test]
async fn dry_run_and_refusal_change_nothing() {
    let s = State::new();
    let id = s
        .dead_letter("ITEM1", "alpha", FailureClass::AgentFailed)
        .await;
    let dry = s.ok(&["dlq", "replay", "--all", "--dry-run"]);
    assert!(
        dry.contains(&format!("would replay {id} project=alpha item=ITEM1")),
        "{dry}"
    );
    assert!(dry.contains("would replay 1 message(s)"), "{dry}");
    assert_eq!(s.dlq_len().await, 1);

    for args in [
        &["dlq", "replay", "--all"][..],
        &["dlq", "purge"][..],
        &["dlq", "redrive"][..],
    ] {
        let out = s.run(args);
        assert!(!out.status.success(), "{args:?} must refuse");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("pass --yes"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s.dlq_len().await, 1, "{args:?} changed the DLQ");
    }
    assert!(s.drain_items().await.is_empty(), "nothing was replayed");
}

#[tokio::test]
async fn replay_audits_each_message_and_keeps_project_order() {
    let s = State::new();
    let a1 = s
        .dead_letter("A1", "alpha", FailureClass::TestsFailed)
        .await;
    let b1 = s.dead_letter("B1", "beta", FailureClass::AgentFailed).await;
    let a2 = s
        .dead_letter("A2", "alpha", FailureClass::TestsFailed)
        .await;
    let run = s.run(&[
        "dlq",
        "replay",
        "--project",
        "alpha",
        "--yes",
        "--rate",
        "1000",
    ]);
    assert!(run.status.success());
    assert_no_bar(&run);
    let out = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "replayed {a1} project=alpha item=A1 class=tests-failed new="
        )),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "replayed {a2} project=alpha item=A2 class=tests-failed new="
        )),
        "{out}"
    );
    assert_eq!(lines[2], "replayed 2 message(s)");
    let left = s.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(left.iter().map(|e| &e.id).collect::<Vec<_>>(), [&b1]);
    // One group delivers one message at a time, in order: A1 then A2.
    let first = s.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].body.contains("\"A1\""), "{}", first[0].body);
    s.queue.ack(&first[0].receipt).await.unwrap();
    assert_eq!(s.drain_items().await, ["A2"]);
}

#[tokio::test]
async fn interrupted_replay_loses_nothing() {
    let s = State::new();
    for item in ["A1", "A2", "A3"] {
        s.dead_letter(item, "alpha", FailureClass::TestsFailed)
            .await;
    }
    // A very slow rate: the binary replays one message, then waits ~1000 s; it is
    // killed as soon as its first audit line is out.
    let mut child = s
        .cmd(&["dlq", "replay", "--all", "--yes", "--rate", "0.001"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.starts_with("replayed ") && first.contains("item=A1"),
        "{first}"
    );
    let left = s.queue.dlq_list(10).await.unwrap().entries;
    assert_eq!(left.len(), 2, "the DLQ keeps M - N");
    assert_eq!(s.drain_items().await, ["A1"], "the queue holds N");
    // The rest replays later, in order.
    s.ok(&["dlq", "replay", "--all", "--yes", "--rate", "1000"]);
    assert_eq!(s.drain_items().await, ["A2", "A3"]);
    assert_eq!(s.dlq_len().await, 0);
}

/// Progress bars are drawn only when stdout is a terminal: through a pipe, stdout holds
/// exactly the audit and count lines and stderr no bar (no carriage return, no escape).
fn assert_no_bar(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "a progress bar was drawn off a terminal: {err:?}"
    );
}

#[tokio::test]
async fn purge_and_redrive_with_yes() {
    let s = State::new();
    s.dead_letter("A1", "alpha", FailureClass::TestsFailed)
        .await;
    s.dead_letter("B1", "beta", FailureClass::TestsFailed).await;
    let out = s.run(&["dlq", "redrive", "--yes"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "redrove 2 message(s)\n"
    );
    assert_no_bar(&out);
    assert_eq!(s.dlq_len().await, 0);
    let mut items = s.drain_items().await;
    items.sort();
    assert_eq!(items, ["A1", "B1"]);

    s.dead_letter("C1", "gamma", FailureClass::TestsFailed)
        .await;
    s.dead_letter("D1", "delta", FailureClass::TestsFailed)
        .await;
    let out = s.run(&["dlq", "purge", "--yes"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "purged 2 dead letter(s)\n"
    );
    assert_no_bar(&out);
    assert_eq!(s.dlq_len().await, 0);
    assert!(
        s.drain_items().await.is_empty(),
        "purge deletes, never requeues"
    );
    assert_eq!(s.ok(&["dlq", "list"]), "the dead-letter queue is empty\n");
}

/// The same console on SQS (moto): show gives the X-Ray console link, replay audits and
/// requeues, purge empties the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_sqs_shows_the_xray_link_replays_and_purges() {
    use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
    use kiro_backends::testing::moto;
    let aws = moto::provision("dlq-console").await;
    let q = SqsQueue::connect(
        &moto::settings(),
        SqsSettings::new(aws.queue_url.clone(), aws.dlq_url.clone()),
        Arc::new(SystemClock),
    )
    .await;
    let trace = TraceContext {
        traceparent: Some(TRACEPARENT.into()),
        tracestate: None,
        xray: Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        ),
    };
    let dead_letter = |body: &'static str| {
        let q = &q;
        let trace = trace.clone();
        async move {
            q.send(OutgoingMessage {
                body: body.into(),
                group: ProjectKey::parse("alpha").unwrap(),
                dedup: DedupId::new(format!("{body}-{}", moto::unique("d"))),
                trace: trace.clone(),
                attributes: Default::default(),
            })
            .await
            .unwrap();
            let d = q
                .receive(1, Duration::from_secs(1))
                .await
                .unwrap()
                .remove(0);
            let letter = DeadLetter {
                reason: "tests failed".into(),
                class: FailureClass::TestsFailed,
                attempts: vec![],
                fence: Some(Fence(3)),
                build_id: Some(BuildId::new("proj:1234")),
                trace,
            };
            q.dead_letter(&d, &letter).await.unwrap();
        }
    };
    dead_letter("first").await;
    let id = q.dlq_list(10).await.unwrap().entries[0].id.clone();

    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| on_moto(state.path(), &aws, args);
    let ok = |args: &[&str]| succeeded(args, run(args));
    let show = ok(&["dlq", "show", id.as_str()]);
    assert!(
        show.contains(
            "https://console.aws.amazon.com/xray/home?region=us-east-1#/traces/1-5759e988-bd862e3fe1be46a994272793"
        ),
        "{show}"
    );
    assert!(show.contains("proj:1234"), "{show}");
    let build_link = "https://us-east-1.console.aws.amazon.com/codesuite/codebuild/projects/proj\
                      /build/proj%3A1234/?region=us-east-1";
    assert!(
        show.lines()
            .any(|l| l.starts_with("build log") && l.ends_with(build_link)),
        "{show}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["dlq", "show", id.as_str(), "--json"])).unwrap();
    assert_eq!(json["build_log"], build_link);

    assert!(!run(&["dlq", "replay", "--all"]).status.success());
    assert_eq!(
        q.dlq_list(10).await.unwrap().entries.len(),
        1,
        "a refusal changes nothing"
    );
    let out = ok(&["dlq", "replay", "--all", "--yes", "--rate", "1000"]);
    assert!(
        out.starts_with(&format!(
            "replayed {id} project=alpha item=? class=tests-failed new="
        )),
        "{out}"
    );
    let back = q.receive(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "first");
    q.ack(&back[0].receipt).await.unwrap();

    dead_letter("second").await;
    assert_eq!(ok(&["dlq", "purge", "--yes"]), "purged 1 dead letter(s)\n");
    assert!(q.dlq_list(10).await.unwrap().entries.is_empty());
}

/// `kiro-consumer --backend aws <args>` against the queues and table of `aws` on moto.
fn on_moto(
    state: &std::path::Path,
    aws: &kiro_backends::testing::moto::Provisioned,
    args: &[&str],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiro-consumer"))
        .args(["--backend", "aws", "--log-format", "json", "--state-dir"])
        .arg(state)
        .args(args)
        .env("KIRO_AWS_REGION", "us-east-1")
        .env(
            "KIRO_AWS_ENDPOINT_URL",
            kiro_backends::testing::moto::moto().endpoint.clone(),
        )
        .env("KIRO_QUEUE_URL", &aws.queue_url)
        .env("KIRO_DLQ_URL", &aws.dlq_url)
        .env("KIRO_LEASE_TABLE", &aws.table)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The stdout of a run that must succeed.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// On an SQS FIFO DLQ a group's later letters wait behind its first batch: `dlq list`
/// says plainly that it is partial and how many more there are, and `dlq replay
/// --project` reaches every letter of the group, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqs_a_partial_listing_says_so_and_replay_reaches_every_letter() {
    use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
    use kiro_backends::testing::contract::queue::{letter, message};
    use kiro_backends::testing::moto;
    let aws = moto::provision("dlq-partial").await;
    let q = SqsQueue::connect(
        &moto::settings(),
        SqsSettings::new(aws.queue_url.clone(), aws.dlq_url.clone()),
        Arc::new(SystemClock),
    )
    .await;
    for i in 0..13 {
        let body = format!("alpha-{i}");
        q.send(message("alpha", &body, &body)).await.unwrap();
        let d = q
            .receive(1, Duration::from_secs(1))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(d.body, body);
        q.dead_letter(&d, &letter(FailureClass::TestsFailed, "red"))
            .await
            .unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| succeeded(args, on_moto(state.path(), &aws, args));

    let table = ok(&["dlq", "list"]);
    assert!(table.contains("partial listing: about 3 more"), "{table}");
    assert!(table.contains("alpha (10 listed)"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["dlq", "list", "--json"])).unwrap();
    assert_eq!(json["dead_letters"].as_array().unwrap().len(), 10, "{json}");
    assert_eq!(json["more"], 3, "{json}");

    let out = ok(&[
        "dlq",
        "replay",
        "--project",
        "alpha",
        "--yes",
        "--rate",
        "1000",
    ]);
    assert!(out.ends_with("replayed 13 message(s)\n"), "{out}");
    assert!(!out.contains("not examined"), "{out}");
    for i in 0..13 {
        let d = q
            .receive(1, Duration::from_secs(1))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(d.body, format!("alpha-{i}"), "replayed in order");
        q.ack(&d.receipt).await.unwrap();
    }
    let left = q.dlq_list(100).await.unwrap();
    assert!(left.entries.is_empty() && left.is_complete(), "{left:?}");
}
