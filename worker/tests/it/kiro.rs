//! The Kiro CLI executor against the fake `kiro-cli` (tests/fixtures/fake-kiro-cli),
//! through the whole pipeline: preflight, flags, fresh HOME, failure modes.

use crate::{CALC_1, World};
use kiro_protocol::Secret;
use kiro_protocol::{FailureClass, OutcomeStatus, WorkerOutcome};
use kiro_worker::Config;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: &str = "ksk_fake_key_0123456789";

/// A `kiro-cli` on a test-private path that runs the fake in `mode`, recording its calls.
fn fake_kiro(w: &World, mode: &str) -> (PathBuf, PathBuf) {
    let bin = w.path(&format!("bin-{mode}"));
    std::fs::create_dir_all(&bin).unwrap();
    let record = w.path(&format!("calls-{mode}.txt"));
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-kiro-cli");
    let program = bin.join("kiro-cli");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nFAKE_KIRO_MODE='{mode}' FAKE_KIRO_RECORD='{}' exec '{}' \"$@\"\n",
            record.display(),
            fake.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (program, record)
}

fn kiro_config(w: &World, fence: kiro_protocol::Fence, mode: &str) -> (Config, PathBuf) {
    let (program, record) = fake_kiro(w, mode);
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = format!("{} chat", program.display());
    cfg.kiro_api_key = Some(Secret::new(KEY));
    cfg.github.token = Some(Secret::new("ghp_never_for_the_agent"));
    cfg.agent_timeout = Duration::from_secs(60).into();
    cfg.agent_preflight_timeout = Duration::from_secs(20).into();
    (cfg, record)
}

fn failure(o: &WorkerOutcome) -> (FailureClass, String) {
    let f = o.failure.as_ref().expect("a failure");
    (f.class, f.reason.clone())
}

fn calls(record: &Path) -> String {
    std::fs::read_to_string(record).unwrap_or_default()
}

#[tokio::test]
async fn completes_a_task_with_the_headless_flags_in_a_fresh_home() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let (mut cfg, record) = kiro_config(&w, fence, "complete");
    cfg.agent_name = Some("builder".into());
    cfg.agent_model = Some("claude-sonnet-4".into());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    // The fake only ticks a box: progress is judged from tasks.md, whatever comes after.
    assert_eq!((o.tasks_done_before, o.tasks_done_after), (0, 1), "{o:?}");
    assert_ne!(
        o.failure.as_ref().map(|f| f.class),
        Some(FailureClass::AgentFailed),
        "{o:?}"
    );
    let text = calls(&record);
    let sections: Vec<&str> = text.split("@@call ").filter(|s| !s.is_empty()).collect();
    assert_eq!(sections.len(), 2, "{text}");
    assert!(
        sections[0].starts_with("whoami\n"),
        "preflight first: {text}"
    );
    assert!(sections[1].starts_with("chat\n"), "{text}");
    let args: Vec<&str> = sections[1]
        .lines()
        .filter_map(|l| l.strip_prefix("arg="))
        .collect();
    assert_eq!(
        &args[..10],
        [
            "chat",
            "--no-interactive",
            "--trust-all-tools",
            "--wrap",
            "never",
            "--v3",
            "--agent",
            "builder",
            "--model",
            "claude-sonnet-4"
        ],
        "{text}"
    );
    assert!(args[10].starts_with("You are running headlessly"), "{text}");
    let fact = |s: &str, k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    // One fresh, empty HOME for both calls, the key passed, the push token withheld.
    let home = fact(sections[0], "home");
    assert!(home.contains("kiro-agent-home-"), "{home}");
    assert_eq!(fact(sections[1], "home"), home);
    assert_eq!(fact(sections[0], "home_entries").trim(), "");
    assert_eq!(fact(sections[1], "key"), "set");
    assert_eq!(fact(sections[1], "github_token"), "");
    assert!(
        !Path::new(&home).exists(),
        "the HOME is removed after the run"
    );
    // The transcript has no ANSI codes.
    let log = std::fs::read_to_string(cfg.agent_log()).unwrap();
    assert!(
        log.contains("> fake kiro-cli (not Kiro), mode complete"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'));
}

#[tokio::test]
async fn agent_failure_modes_are_classified() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let cases: &[(&str, FailureClass, &str)] = &[
        ("noop", FailureClass::AgentFailed, "agent made no progress"),
        (
            "exit1",
            FailureClass::AgentFailed,
            "agent failed (exit code 1): error: something went wrong",
        ),
        (
            "exit3",
            FailureClass::AgentFailed,
            "MCP server failed to start (agent exit code 3)",
        ),
        (
            "exit4",
            FailureClass::PermanentInput,
            "agent not found (agent exit code 4)",
        ),
    ];
    for (mode, class, reason) in cases {
        let (cfg, _) = kiro_config(&w, fence, mode);
        let o = kiro_worker::run(&cfg, &w.ports).await;
        assert_eq!(o.status, OutcomeStatus::Failed, "{mode}");
        assert_eq!(failure(&o), (*class, (*reason).to_owned()), "{mode}");
        assert_eq!(o.commit, None, "{mode}");
    }
}

#[tokio::test]
async fn a_hanging_agent_is_killed_at_its_limit() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let (mut cfg, _) = kiro_config(&w, fence, "hang");
    cfg.agent_timeout = Duration::from_secs(1).into();
    let started = std::time::Instant::now();
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        failure(&o),
        (FailureClass::AgentFailed, "agent timed out after 1s".into())
    );
}

#[tokio::test]
async fn bad_credentials_fail_fast_with_auth() {
    let w = World::new();
    let fence = w.take_lease("calc").await;

    // whoami hangs (a device-auth flow): the preflight's limit, and no chat at all.
    let (mut cfg, record) = kiro_config(&w, fence, "whoami-hang");
    cfg.agent_preflight_timeout = Duration::from_secs(1).into();
    let o = kiro_worker::run(&cfg, &w.ports).await;
    let (class, reason) = failure(&o);
    assert_eq!(class, FailureClass::Auth);
    assert!(reason.contains("did not answer within 1s"), "{reason}");
    assert!(!calls(&record).contains("@@call chat"));

    // whoami refuses the key (and echoes it): auth, the key masked everywhere.
    let (cfg, record) = kiro_config(&w, fence, "bad-key");
    let o = kiro_worker::run(&cfg, &w.ports).await;
    let (class, reason) = failure(&o);
    assert_eq!(class, FailureClass::Auth);
    assert!(reason.contains("whoami failed (exit code 1)"), "{reason}");
    assert!(reason.contains("Invalid API key"), "{reason}");
    assert!(!reason.contains(KEY), "{reason}");
    let log = std::fs::read_to_string(cfg.preflight_log()).unwrap();
    assert!(log.contains("KIRO_API_KEY=***"), "{log}");
    assert!(!log.contains(KEY));
    assert!(!calls(&record).contains("@@call chat"));

    // Exit 0 with an auth error on stderr (kiro-cli's invalid key).
    let (cfg, _) = kiro_config(&w, fence, "bad-key-exit0");
    let o = kiro_worker::run(&cfg, &w.ports).await;
    let (class, reason) = failure(&o);
    assert_eq!(class, FailureClass::Auth);
    assert!(reason.contains("reports no login"), "{reason}");

    // The same at the chat, with the preflight off.
    let (mut cfg, _) = kiro_config(&w, fence, "bad-key-exit0");
    cfg.agent_preflight = kiro_worker::config::Toggle::Off;
    let o = kiro_worker::run(&cfg, &w.ports).await;
    let (class, reason) = failure(&o);
    assert_eq!(class, FailureClass::Auth, "{reason}");
    assert!(
        reason.contains("agent reports an authentication error"),
        "{reason}"
    );

    // No key at all: auth before anything runs.
    let (mut cfg, record) = kiro_config(&w, fence, "complete");
    cfg.kiro_api_key = None;
    let o = kiro_worker::run(&cfg, &w.ports).await;
    let (class, reason) = failure(&o);
    assert_eq!(class, FailureClass::Auth);
    assert!(reason.starts_with("KIRO_API_KEY is not set"), "{reason}");
    assert_eq!(calls(&record), "");
}
