//! The fault suite's verdict, read after the run from what the system recorded (job
//! records, the `builds` table, the dead-letter queue, the bare remotes), what the
//! stand-in agent logged, the consumers' logs and `/proc`.
//!
//! Invariant: every check is of an invariant (DESIGN.md §4: nothing lost, no duplicate
//! build, no handed-off build thrown away, nothing left running), never of a timing; each
//! violation is one line naming the item, attempt or build.

use super::world::{Item, Kind, World};
use crate::support::State;
use kiro_protocol::{FailureClass, JobState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One row of the local runner's `builds` table.
#[derive(Debug, Clone)]
pub struct BuildRow {
    pub id: String,
    pub item: String,
    pub state: String,
    pub attempt: String,
    /// The build's directory (the stand-in agent runs in a checkout below it).
    pub dir: String,
}

pub fn builds(s: &State) -> Vec<BuildRow> {
    s.db.call_sync(|c| {
        let mut st = c
            .prepare("SELECT id, item, state, env_json, build_dir FROM builds ORDER BY seq")
            .unwrap();
        let rows = st
            .query_map([], |r| {
                let env: String = r.get(3)?;
                let env: BTreeMap<String, String> = serde_json::from_str(&env).unwrap_or_default();
                Ok(BuildRow {
                    id: r.get(0)?,
                    item: r.get(1)?,
                    state: r.get(2)?,
                    attempt: env.get("KIRO_ATTEMPT").cloned().unwrap_or_default(),
                    dir: r.get(4)?,
                })
            })
            .unwrap();
        Ok(rows.map(|r| r.unwrap()).collect())
    })
    .unwrap()
}

/// What the run did, for the failure message and the invariants' preconditions.
#[derive(Debug, Default)]
pub struct Summary {
    pub builds: usize,
    pub agent_runs: usize,
    pub handed_off: BTreeSet<String>,
    pub re_attached: BTreeSet<String>,
}

/// Check every invariant; the violations, one line each.
pub async fn check(w: &World, s: &State, logs: &[(String, String)]) -> (Summary, Vec<String>) {
    let mut bad = Vec::new();
    let mut sum = Summary::default();
    let rows = builds(s);
    sum.builds = rows.len();
    let jobs = s.jobs().await;
    let dlq = s.dead_letters().await;

    // No build left unfinished; exactly one build per item attempt.
    let mut per_attempt: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for b in &rows {
        if matches!(b.state.as_str(), "QUEUED" | "IN_PROGRESS") {
            bad.push(format!("build {} of {} is still {}", b.id, b.item, b.state));
        }
        per_attempt
            .entry((b.item.clone(), b.attempt.clone()))
            .or_default()
            .push(b.id.clone());
    }
    for ((item, attempt), ids) in &per_attempt {
        if ids.len() != 1 {
            bad.push(format!(
                "duplicate builds: {item} attempt {attempt} has {} builds {ids:?}",
                ids.len()
            ));
        }
    }

    // Nothing lost: every item final, as its kind says; the dead letters have reasons.
    for item in &w.items {
        check_item(item, &jobs, &rows, &dlq, &mut bad);
        // Pushed once: one worker commit on each succeeded branch, none on the others.
        let pushed = worker_commits(&w.state, &item.project, &item.branch());
        let expected = usize::from(item.kind != Kind::LowCoverage);
        if pushed != expected {
            bad.push(format!(
                "{} has {pushed} kiro-worker commits on {}, expected {expected}",
                item.id,
                item.branch()
            ));
        }
    }
    if dlq.len()
        != w.items
            .iter()
            .filter(|i| i.kind == Kind::LowCoverage)
            .count()
    {
        bad.push(format!(
            "the DLQ holds {} letters, expected only the low-coverage items: {:?}",
            dlq.len(),
            dlq.iter()
                .map(|e| (&e.group, &e.letter.reason))
                .collect::<Vec<_>>()
        ));
    }
    let depth = s.depth().await;
    if !depth.is_idle() {
        bad.push(format!("the queue is not idle: {depth:?}"));
    }

    // The agent ran exactly once per build, so once per item attempt.
    let runs = agent_runs(&w.agent_log, &rows);
    sum.agent_runs = runs.values().map(|r| r.0).sum();
    for b in &rows {
        match runs.get(&b.id) {
            Some((1, 1)) => {}
            Some((starts, ends)) => bad.push(format!(
                "the agent of {} attempt {} (build {}) started {starts} and ended {ends} times",
                b.item, b.attempt, b.id
            )),
            None => bad.push(format!(
                "the agent never ran in build {} ({} attempt {})",
                b.id, b.item, b.attempt
            )),
        }
    }
    for id in runs.keys() {
        if !rows.iter().any(|b| &b.id == id) {
            bad.push(format!("the agent ran in {id}, which is no recorded build"));
        }
    }

    // Handed-off builds are kept: each is the only build of its item attempt, ran its
    // agent once (above) and its attempt did not end in a lost fence or a stop (below,
    // per item history).
    for (name, log) in logs {
        for (message, build) in events(log) {
            match message.as_str() {
                "handed off" => {
                    sum.handed_off.insert(build);
                }
                "re-attached to a running build" => {
                    sum.re_attached.insert(build);
                }
                _ => {}
            }
        }
        if log.contains("panicked") {
            bad.push(format!("consumer {name} panicked"));
        }
    }
    for id in &sum.handed_off {
        match rows.iter().find(|b| &b.id == id) {
            None => bad.push(format!("handed-off build {id} is no recorded build")),
            Some(b) if per_attempt[&(b.item.clone(), b.attempt.clone())].len() != 1 => {
                bad.push(format!(
                    "handed-off build {id} ({} attempt {}) was restarted, not re-attached",
                    b.item, b.attempt
                ))
            }
            Some(_) => {}
        }
    }
    (sum, bad)
}

fn check_item(
    item: &Item,
    jobs: &[kiro_protocol::JobRecord],
    rows: &[BuildRow],
    dlq: &[kiro_protocol::DeadLetterEntry],
    bad: &mut Vec<String>,
) {
    let id = &item.id;
    let Some(job) = jobs.iter().find(|j| j.item.as_str() == id) else {
        bad.push(format!("lost: {id} has no job record"));
        return;
    };
    let (state, attempts) = match item.kind {
        Kind::Plain => (JobState::Succeeded, 1),
        Kind::Flaky => (JobState::Succeeded, 2),
        Kind::LowCoverage => (JobState::DeadLettered, 1),
    };
    if job.state != state || job.attempts != attempts {
        bad.push(format!(
            "{id} ({:?}) ended {} after {} attempts, expected {state} after {attempts}; history {:?}",
            item.kind, job.state, job.attempts, job.history
        ));
    }
    // Wasted work: an attempt given back because its build lost the fence or was stopped.
    for a in &job.history {
        if let Some(f) = &a.failure
            && matches!(f.class, FailureClass::FenceLost | FailureClass::Stopped)
        {
            bad.push(format!(
                "{id} attempt {} (build {:?}) was wasted: {}: {}",
                a.attempt, a.build_id, f.class, f.reason
            ));
        }
    }
    let mine: Vec<&BuildRow> = rows.iter().filter(|b| &b.item == id).collect();
    if mine.len() != job.attempts as usize {
        bad.push(format!(
            "{id}: {} builds for {} attempts: {:?}",
            mine.len(),
            job.attempts,
            mine.iter().map(|b| (&b.id, &b.attempt)).collect::<Vec<_>>()
        ));
    }
    if job.state == JobState::DeadLettered {
        let letter = dlq.iter().find(|e| e.body.contains(&format!("\"{id}\"")));
        match letter {
            None => bad.push(format!("lost: {id} is dead-lettered but not in the DLQ")),
            Some(e) if e.letter.reason.trim().is_empty() => {
                bad.push(format!("{id}'s dead letter has no reason"))
            }
            Some(e) if e.letter.class != FailureClass::CoverageBelow => bad.push(format!(
                "{id} dead-lettered as {}: {}",
                e.letter.class, e.letter.reason
            )),
            Some(_) => {}
        }
    }
}

/// Per build id: (agent starts, agent ends), from the stand-in agent's log (a run in no
/// build's directory is listed under its working directory).
fn agent_runs(log: &Path, rows: &[BuildRow]) -> BTreeMap<String, (usize, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ' ');
        let (Some(what), Some(_pid), Some(cwd)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let build = rows
            .iter()
            .find(|b| Path::new(cwd).starts_with(&b.dir))
            .map_or_else(|| cwd.to_owned(), |b| b.id.clone());
        let e = runs.entry(build).or_default();
        match what {
            "start" => e.0 += 1,
            "end" => e.1 += 1,
            _ => {}
        }
    }
    runs
}

/// (message, build) of each JSON log line that names a build.
fn events(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let f = v.get("fields").unwrap_or(&v);
            let message = f.get("message")?.as_str()?.to_owned();
            let build = f.get("build")?.as_str()?.to_owned();
            Some((message, build))
        })
        .collect()
}

/// Commits by kiro-worker on `branch` of `repo` in the state's forge.
pub fn worker_commits(state: &Path, project: &str, branch: &str) -> usize {
    let repo =
        git2::Repository::open_bare(state.join(format!("forge/acme/{project}.git"))).unwrap();
    let tip = repo
        .find_branch(branch, git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_commit()
        .unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip.id()).unwrap();
    walk.flatten()
        .filter(|oid| {
            repo.find_commit(*oid)
                .is_ok_and(|c| c.author().name() == Ok("kiro-worker"))
        })
        .count()
}

/// Every live process of the run (its environment names the state dir, or it runs
/// inside it), as `pid cmdline (cwd)`.
pub fn processes_of(state: &Path) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let marker = format!("KIRO_STATE_DIR={}", state.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X");
        if stat.is_empty() || zombie {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let in_env = env.split(|b| *b == 0).any(|v| v == marker.as_bytes());
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if in_env || cwd.starts_with(state) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push((pid, format!("{pid} {} ({})", cmd.trim(), cwd.display())));
        }
    }
    out
}
