//! The fault suite's world: bare git remotes for many small projects, the board that lists
//! one item per feature branch, a cheap scripted stand-in agent that logs every run, and a
//! test command that writes an lcov report (low on purpose for some items, failing once on
//! purpose for others).
//!
//! Invariant: everything lives under one temp dir and is fixed by the seed, so a failing
//! schedule is replayed exactly by `KIRO_FAULT_SEED=<seed>`.

use crate::support::repo_root;
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What an item is expected to end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Succeeds on its first attempt.
    Plain,
    /// Its tests fail once (tests-failed, retried), then it succeeds on attempt 2.
    Flaky,
    /// Coverage below the threshold: dead-lettered at once (coverage-below).
    LowCoverage,
}

/// One work item of the board.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub project: String,
    pub feature: String,
    pub pr: u64,
    pub kind: Kind,
    /// How long the stand-in agent works on it (seconds).
    pub agent_secs: f64,
}

impl Item {
    pub fn branch(&self) -> String {
        format!("feature/{}", self.feature)
    }
}

/// The world of one run.
#[derive(Debug)]
pub struct World {
    pub state: PathBuf,
    /// Lines `start|end <pid> <cwd>` appended by the stand-in agent.
    pub agent_log: PathBuf,
    pub items: Vec<Item>,
    /// The environment every consumer (and through it every build) gets.
    pub env: Vec<(String, String)>,
}

/// `projects` projects with `per_project` items each; a few items are flaky or have low
/// coverage, chosen by `rng`.
pub fn build(tmp: &Path, rng: &mut StdRng, projects: usize, per_project: usize) -> World {
    let state = tmp.join("state");
    let scratch = tmp.join("scratch");
    std::fs::create_dir_all(state.join("forge/acme")).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let mut items = Vec::new();
    for p in 0..projects {
        for i in 1..=per_project {
            items.push(Item {
                id: format!("P{p:02}-{i}"),
                project: format!("p{p:02}"),
                feature: format!("f{i}"),
                pr: i as u64,
                kind: Kind::Plain,
                agent_secs: f64::from(rng.random_range(3u32..=15)) / 10.0,
            });
        }
    }
    // Two flaky items and two with low coverage, in distinct projects.
    let mut picked = Vec::new();
    while picked.len() < 4 {
        let n = rng.random_range(0..items.len());
        if !picked
            .iter()
            .any(|&m: &usize| items[m].project == items[n].project)
        {
            picked.push(n);
        }
    }
    for (k, &n) in picked.iter().enumerate() {
        items[n].kind = if k < 2 {
            Kind::Flaky
        } else {
            Kind::LowCoverage
        };
    }
    for p in 0..projects {
        let project = format!("p{p:02}");
        let of: Vec<&Item> = items.iter().filter(|i| i.project == project).collect();
        remote(&state.join(format!("forge/acme/{project}.git")), &of);
    }
    let board = tmp.join("board.yaml");
    std::fs::write(&board, board_yaml(&items)).unwrap();
    let agent_log = tmp.join("agent-runs.log");
    let agent = tmp.join("stand-in-agent.sh");
    std::fs::write(&agent, agent_script(&agent_log)).unwrap();
    let env = vec![
        ("KIRO_STATE_DIR".into(), state.display().to_string()),
        ("KIRO_BOARD_FILE".into(), board.display().to_string()),
        (
            "KIRO_GIT_BASE".into(),
            format!("file://{}", state.join("forge").display()),
        ),
        ("KIRO_AGENT_CMD".into(), format!("sh {}", agent.display())),
        ("KIRO_TEST_CMD".into(), test_cmd(&scratch)),
        (
            "KIRO_BUILDSPEC".into(),
            repo_root().join("buildspec.yml").display().to_string(),
        ),
        // A handed-off build waits this long for adoption: far above the consumers' lease
        // TTL plus a restart, and short enough that a build nobody adopts shows up in the
        // run as a fence-lost failure instead of a hang.
        ("KIRO_FENCE_WAIT".into(), "30s".into()),
        // One agent run per attempt: the suite's flaky items fail their first attempt's
        // tests and must be retried by the consumer (a fix round inside the attempt would
        // turn them into one-attempt items and run the agent more than once per build).
        ("KIRO_FIX_ROUNDS".into(), "0".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    World {
        state,
        agent_log,
        items,
        env,
    }
}

/// The stand-in agent: logs its start (pid and checkout), works `AGENT_SECS` seconds,
/// writes a file, ticks every task of its spec, logs its end.
fn agent_script(log: &Path) -> String {
    format!(
        r#"#!/bin/sh
# FAULT-SUITE STAND-IN for kiro-cli (not Kiro): cheap, and it logs every run.
set -eu
log='{log}'
echo "start $$ $PWD" >> "$log"
sleep "$(cat AGENT_SECS)"
spec="${{KIRO_SPEC_PATH%/}}"
feature=$(basename "$spec")
echo "done by the stand-in for $feature" > "src/$feature.txt"
sed 's/^- \[ \]/- [x]/' "$spec/tasks.md" > "$spec/tasks.md.new"
mv "$spec/tasks.md.new" "$spec/tasks.md"
echo "end $$ $PWD" >> "$log"
"#,
        log = log.display()
    )
}

/// The test command (run with `sh -c` in the checkout): a `FLAKY` file fails the first
/// run of its item; a `LOWCOV` file gives 33% line coverage, anything else 100%.
fn test_cmd(scratch: &Path) -> String {
    format!(
        "if [ -f FLAKY ] && [ ! -e '{s}'/$(cat FLAKY) ]; then : > '{s}'/$(cat FLAKY); \
         echo 'flaky on purpose' >&2; exit 1; fi; mkdir -p coverage; \
         if [ -f LOWCOV ]; then printf 'SF:src/a.js\\nDA:1,1\\nDA:2,0\\nDA:3,0\\nLF:3\\nLH:1\\nend_of_record\\n'; \
         else printf 'SF:src/a.js\\nDA:1,1\\nLF:1\\nLH:1\\nend_of_record\\n'; fi > coverage/lcov.info",
        s = scratch.display()
    )
}

fn board_yaml(items: &[Item]) -> String {
    let mut y = String::from("items:\n");
    for (n, i) in items.iter().enumerate() {
        let _ = write!(
            y,
            "  - id: {}\n    project: {}\n    title: Fault suite item {}\n    \
             status: For Implementation\n    repo: acme/{}\n    branch: {}\n    \
             spec: .kiro/specs/{}\n    pr: {}\n    updated_at: \"2026-11-01T{:02}:{:02}:00Z\"\n",
            i.id,
            i.project,
            i.id,
            i.project,
            i.branch(),
            i.feature,
            i.pr,
            n / 60,
            n % 60
        );
    }
    y.push_str("pull_requests:\n");
    for i in items {
        let _ = write!(
            y,
            "  - repo: acme/{}\n    number: {}\n    head: {}\n    title: Fault suite item {}\n",
            i.project,
            i.pr,
            i.branch(),
            i.id
        );
    }
    y
}

/// A bare remote with `main` (every item's spec) and one branch per item (main plus the
/// item's own files: how long its agent works, and FLAKY / LOWCOV when it has a kind).
fn remote(dir: &Path, items: &[&Item]) {
    let repo = git2::Repository::init_bare(dir).unwrap();
    let mut files = BTreeMap::new();
    files.insert(".gitignore".to_owned(), "coverage/\n".to_owned());
    files.insert("src/a.js".to_owned(), "module.exports = 1;\n".to_owned());
    for i in items {
        let spec = format!(".kiro/specs/{}", i.feature);
        files.insert(
            format!("{spec}/requirements.md"),
            format!("# Requirements\n\n1. {} does its part.\n", i.id),
        );
        files.insert(
            format!("{spec}/design.md"),
            "# Design\n\nOne file.\n".to_owned(),
        );
        files.insert(
            format!("{spec}/tasks.md"),
            "# Tasks\n\n- [ ] 1. Write the file\n- [ ] 2. Check it\n".to_owned(),
        );
    }
    let sig = git2::Signature::now("fault suite", "fault@example.invalid").unwrap();
    let main_tree = tree(&repo, &files);
    let main = repo
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "initial import",
            &repo.find_tree(main_tree).unwrap(),
            &[],
        )
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let parent = repo.find_commit(main).unwrap();
    for i in items {
        let mut own = files.clone();
        own.insert("AGENT_SECS".into(), format!("{:.1}\n", i.agent_secs));
        match i.kind {
            Kind::Plain => {}
            Kind::Flaky => {
                own.insert("FLAKY".into(), format!("{}\n", i.id));
            }
            Kind::LowCoverage => {
                own.insert("LOWCOV".into(), "1\n".into());
            }
        }
        let t = repo.find_tree(tree(&repo, &own)).unwrap();
        repo.commit(
            Some(&format!("refs/heads/{}", i.branch())),
            &sig,
            &sig,
            &format!("open {}", i.branch()),
            &t,
            &[&parent],
        )
        .unwrap();
    }
}

/// The tree of `files` (path → content), built bottom-up.
fn tree(repo: &git2::Repository, files: &BTreeMap<String, String>) -> git2::Oid {
    let mut here = repo.treebuilder(None).unwrap();
    let mut dirs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (path, content) in files {
        match path.split_once('/') {
            Some((dir, rest)) => {
                dirs.entry(dir.to_owned())
                    .or_default()
                    .insert(rest.to_owned(), content.clone());
            }
            None => {
                let blob = repo.blob(content.as_bytes()).unwrap();
                here.insert(path, blob, 0o100644).unwrap();
            }
        }
    }
    for (dir, inner) in dirs {
        let oid = tree(repo, &inner);
        here.insert(&dir, oid, 0o040000).unwrap();
    }
    here.write().unwrap()
}
