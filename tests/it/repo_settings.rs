//! Per-repository settings end to end on the embedded default: the real producer,
//! consumer, local builds and worker over one board whose repositories each keep their
//! own `.kiro/codebuild-worker.toml`. Two repositories with different test commands,
//! report formats, thresholds and never-commit paths succeed in one run, each under its
//! own settings (neither would pass under the other's threshold, nor under the
//! deployment's test command); a repository with a bad file is dead-lettered with the
//! repository, the file and the key in the reason, and nothing is pushed.

use crate::support::*;
use kiro_backends::embedded::EmbeddedPulls;
use kiro_protocol::{FailureClass, JobState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILE: &str = ".kiro/codebuild-worker.toml";

/// A repository of the run: its name (= project) and its own files.
struct Repo {
    name: &'static str,
    files: Vec<(&'static str, &'static str)>,
}

/// alpha: lcov at `out/lcov.info`, 1 of 2 lines (50%), threshold 40.
fn alpha() -> Repo {
    Repo {
        name: "alpha",
        files: vec![
            (
                FILE,
                "test_command = \"sh ci.sh\"\ncoverage_threshold = 40\n\n[[coverage]]\n\
                 format = \"lcov\"\npath = \"out/lcov.info\"\n",
            ),
            (
                "ci.sh",
                "mkdir -p out\nprintf 'SF:src/a.js\\nDA:1,1\\nDA:2,0\\nend_of_record\\n' > out/lcov.info\n",
            ),
        ],
    }
}

/// beta: a Go coverage profile at `out/cover.out`, 9 of 10 statements (90%), threshold
/// 85, a JUnit report, and `scratch` never committed.
fn beta() -> Repo {
    Repo {
        name: "beta",
        files: vec![
            (
                FILE,
                "test_command = \"sh ci.sh\"\ncoverage_threshold = 85\njunit = [\"out/junit.xml\"]\n\
                 never_commit = [\"scratch\"]\n\n[[coverage]]\nformat = \"go\"\npath = \"out/cover.out\"\n",
            ),
            (
                "ci.sh",
                "mkdir -p out\n{ echo 'mode: set'; for i in 1 2 3 4 5 6 7 8 9; do echo \"example.com/beta/b.go:$i.1,$i.20 1 1\"; done; \
                 echo 'example.com/beta/b.go:10.1,10.20 1 0'; } > out/cover.out\n\
                 printf '<testsuites><testsuite name=\"b\"><testcase name=\"x\"/><testcase name=\"y\"/></testsuite></testsuites>' > out/junit.xml\n",
            ),
        ],
    }
}

/// gamma: a file with a value out of range.
fn gamma() -> Repo {
    Repo {
        name: "gamma",
        files: vec![(FILE, "test_command = \"true\"\nfix_rounds = 99\n")],
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "settings test")
        .env("GIT_AUTHOR_EMAIL", "settings@example.invalid")
        .env("GIT_COMMITTER_NAME", "settings test")
        .env("GIT_COMMITTER_EMAIL", "settings@example.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare remote `acme/<name>` with `main` and `feature/feat` (a spec with two tasks).
fn remote(state: &Path, repo: &Repo) {
    let bare = state.join(format!("forge/acme/{}.git", repo.name));
    std::fs::create_dir_all(&bare).unwrap();
    git(
        &bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let work = state.join(format!("seed-{}", repo.name));
    let mut files: BTreeMap<&str, &str> = BTreeMap::from([
        (
            ".kiro/specs/feat/requirements.md",
            "# Requirements\n\n1. It works.\n",
        ),
        (".kiro/specs/feat/design.md", "# Design\n\nOne file.\n"),
        (
            ".kiro/specs/feat/tasks.md",
            "# Tasks\n\n- [ ] 1. Write the file\n- [ ] 2. Check it\n",
        ),
        ("src/a.js", "module.exports = 1;\n"),
    ]);
    files.extend(repo.files.iter().copied());
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "initial import"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    git(
        &work,
        &["push", "--quiet", "origin", "main:refs/heads/feature/feat"],
    );
    std::fs::remove_dir_all(&work).unwrap();
}

/// The board: one item per repository, `<NAME>-1` on `feature/feat`, pull request 1.
fn board(tmp: &Path, repos: &[Repo]) -> PathBuf {
    let mut items = String::from("items:\n");
    let mut pulls = String::from("pull_requests:\n");
    for (n, r) in repos.iter().enumerate() {
        items.push_str(&format!(
            "  - id: {id}-1\n    project: {name}\n    title: Settings of {name}\n    \
             status: For Implementation\n    repo: acme/{name}\n    branch: feature/feat\n    \
             spec: .kiro/specs/feat\n    pr: 1\n    updated_at: \"2026-11-01T10:0{n}:00Z\"\n",
            id = r.name.to_uppercase(),
            name = r.name,
        ));
        pulls.push_str(&format!(
            "  - repo: acme/{name}\n    number: 1\n    head: feature/feat\n    title: Settings of {name}\n",
            name = r.name
        ));
    }
    let file = tmp.join("board.yaml");
    std::fs::write(&file, items + &pulls).unwrap();
    file
}

/// A cheap stand-in agent (not Kiro): writes its file and a scratch note, ticks the tasks.
fn agent(tmp: &Path) -> PathBuf {
    let file = tmp.join("stand-in-agent.sh");
    std::fs::write(
        &file,
        "#!/bin/sh\n# SETTINGS-TEST STAND-IN for kiro-cli (not Kiro)\nset -eu\n\
         spec=\"${KIRO_SPEC_PATH%/}\"\necho done > src/feat.txt\nmkdir -p scratch\n\
         echo note > scratch/notes.txt\nsed 's/^- \\[ \\]/- [x]/' \"$spec/tasks.md\" > \"$spec/tasks.md.new\"\n\
         mv \"$spec/tasks.md.new\" \"$spec/tasks.md\"\n",
    )
    .unwrap();
    file
}

/// Producer once, then the consumer until idle, over `repos`; the state directory and
/// the board file.
fn run(tmp: &Path, repos: &[Repo]) -> (PathBuf, PathBuf) {
    let bin = bin_dir();
    let state = tmp.join("state");
    for r in repos {
        remote(&state, r);
    }
    let board = board(tmp, repos);
    let env: Vec<(String, String)> = vec![
        ("KIRO_STATE_DIR".into(), state.display().to_string()),
        ("KIRO_BOARD_FILE".into(), board.display().to_string()),
        (
            "KIRO_GIT_BASE".into(),
            format!("file://{}", state.join("forge").display()),
        ),
        (
            "KIRO_AGENT_CMD".into(),
            format!("sh {}", agent(tmp).display()),
        ),
        // The deployment's test command fails: each repository must use its own.
        (
            "KIRO_TEST_CMD".into(),
            "echo the deployment's tests must not run; exit 7".into(),
        ),
        (
            "KIRO_BUILDSPEC".into(),
            repo_root().join("buildspec.yml").display().to_string(),
        ),
        (
            "KIRO_HEALTH_FILE".into(),
            state.join("consumer.health").display().to_string(),
        ),
    ];
    produce_once(&bin, &env);
    let out = Command::new(bin.join("kiro-consumer"))
        .args([
            "run",
            "--until-idle",
            "--max-jobs",
            "4",
            "--poll-every",
            "300ms",
            "--receive-wait",
            "300ms",
            "--retry-base",
            "1s",
            "--retry-max",
            "2s",
        ])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (state, board)
}

/// The report the worker wrote on pull request 1 of `repo`.
async fn report(s: &State, board: &Path, repo: &str) -> String {
    let pulls = EmbeddedPulls::open(board, s.db.clone()).unwrap();
    pulls
        .reports()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.repo.as_str() == repo && r.number.0 == 1)
        .map(|r| r.report.markdown)
        .unwrap_or_else(|| panic!("no report on {repo}#1"))
}

/// The tip of `feature/feat` in `acme/<name>`, and the files of its commit.
fn pushed(state: &Path, name: &str) -> (String, String, Vec<String>) {
    let bare = state.join(format!("forge/acme/{name}.git"));
    let tip = git(&bare, &["rev-parse", "refs/heads/feature/feat"]);
    let subject = git(&bare, &["log", "-1", "--format=%s", &tip]);
    let files = git(&bare, &["show", "--name-only", "--format=", &tip]);
    (tip, subject, files.lines().map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_repositories_succeed_in_one_run_each_under_its_own_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, board) = run(tmp.path(), &[alpha(), beta()]);
    let s = State::open(&state);
    for (item, coverage) in [("ALPHA-1", 50.0), ("BETA-1", 90.0)] {
        let job = s.job(item).await.unwrap_or_else(|| panic!("no job {item}"));
        assert_eq!(job.state, JobState::Succeeded, "{item}: {job:?}");
        assert_eq!(job.attempts, 1, "{item}");
        assert_eq!(job.coverage, Some(coverage), "{item}");
        assert_eq!(s.builds_of(item), ["SUCCEEDED"], "{item}");
    }
    // alpha's 50% is below beta's 85% and the deployment's 80%: alpha's own 40% applied.
    assert!(s.dead_letters().await.is_empty());

    for name in ["alpha", "beta"] {
        let (_, subject, files) = pushed(&state, name);
        assert!(subject.starts_with("feat(feat): "), "{name}: {subject}");
        assert!(
            files.iter().any(|f| f == "src/feat.txt"),
            "{name}: {files:?}"
        );
        assert!(
            !files.iter().any(|f| f.starts_with("out/")),
            "{name}: {files:?}"
        );
    }
    // Each repository's never-commit paths are its own: only beta leaves scratch/ out.
    let (_, _, alpha_files) = pushed(&state, "alpha");
    assert!(alpha_files.iter().any(|f| f == "scratch/notes.txt"));
    let (_, _, beta_files) = pushed(&state, "beta");
    assert!(!beta_files.iter().any(|f| f.starts_with("scratch")));

    let report = self::report(&s, &board, "acme/beta").await;
    assert!(report.contains("(threshold 85%)"), "{report}");
    assert!(report.contains("— 2 tests, 0 failures"), "{report}");
    let report = self::report(&s, &board, "acme/alpha").await;
    assert!(report.contains("50% (threshold 40%)"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_settings_file_dead_letters_naming_repository_file_and_key_and_pushes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, board) = run(tmp.path(), &[gamma()]);
    let s = State::open(&state);
    let job = s.job("GAMMA-1").await.expect("a job");
    assert_eq!(job.state, JobState::DeadLettered, "{job:?}");
    let reason = "acme/gamma: .kiro/codebuild-worker.toml: fix_rounds: is 99: must be \
                  between 0 and 10";
    let failure = job.last_failure.expect("a failure");
    assert_eq!(failure.class, FailureClass::PermanentInput);
    assert!(failure.reason.contains(reason), "{}", failure.reason);
    let dlq = s.dead_letters().await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].letter.class, FailureClass::PermanentInput);
    assert!(
        dlq[0].letter.reason.contains(reason),
        "{}",
        dlq[0].letter.reason
    );
    assert_eq!(s.builds_of("GAMMA-1").len(), 1, "not retried");
    // Nothing pushed: the branch is still the import.
    let (_, subject, _) = pushed(&state, "gamma");
    assert_eq!(subject, "initial import");
    // The failure is on the pull request.
    let report = self::report(&s, &board, "acme/gamma").await;
    assert!(report.contains("fix_rounds"), "{report}");
}
