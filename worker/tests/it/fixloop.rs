//! The fix loop and the side branch of partial work, end to end, with the quick start's
//! scripted STAND-IN agent (not Kiro): it fixes the multiply item's failing test only
//! when the failure brief naming that test is in its prompt, and can never fix the
//! farewell item's coverage.

use crate::{CALC_1, CALC_2, GREET_2, World, git, quickstart};
use kiro_protocol::{FailureClass, ItemStatus, OutcomeStatus, PrNumber, RepoName};
use kiro_worker::Config;
use kiro_worker::steps::brief;
use std::path::{Path, PathBuf};

const SIDE_FAREWELL: &str = "kiro/partial/feature/farewell";

/// The stand-in agent behind a recorder: each prompt is kept as `prompt-<n>.txt` in
/// `dir`, with a `had-farewell-<n>` marker when the checkout already held
/// `src/farewell.js` before the agent ran.
fn recording(cfg: &mut Config, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let agent = quickstart().join("agent/scripted-agent.mjs");
    let d = dir.display();
    cfg.agent_cmd = format!(
        "sh -c 'n=$(ls {d} | grep -c prompt-); printf %s \"$0\" > {d}/prompt-$n.txt; \
         if [ -f src/farewell.js ]; then touch {d}/had-farewell-$n; fi; \
         exec node {} \"$0\"'",
        agent.display()
    );
}

fn prompts(dir: &Path) -> Vec<String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("prompt-")
        })
        .collect();
    v.sort();
    v.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

async fn report(w: &World, repo: &str, pr: u64) -> String {
    w.pulls
        .report(&RepoName::parse(repo).unwrap(), PrNumber(pr))
        .await
        .unwrap()
        .expect("a report")
        .0
        .markdown
}

fn branch_exists(w: &World, repo: &str, branch: &str) -> bool {
    std::process::Command::new("git")
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .current_dir(w.bare(repo))
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn a_failing_test_is_fixed_in_round_two_from_the_failure_brief() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let before = w.tip("calc", "feature/multiply");
    let mut cfg = w.config(CALC_2, fence);
    let rec = w.path("prompts");
    recording(&mut cfg, &rec);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");

    let p = prompts(&rec);
    assert_eq!(p.len(), 2, "two rounds");
    assert!(!p[0].contains(brief::BEGIN), "round 1 has no brief");
    assert!(p[1].starts_with("This is fix round 2."), "{}", &p[1][..200]);
    let framed = &p[1][p[1].find(brief::BEGIN).unwrap()..p[1].find(brief::END).unwrap()];
    assert!(
        framed.contains("The build's checks failed: tests-failed: tests failed (exit code 1)"),
        "{framed}"
    );
    assert!(framed.contains("multiply returns the product"), "{framed}");
    assert!(framed.contains("12 !== -12"), "{framed}");

    // Only the fixed code reached the branch, in one commit on the old tip.
    let tip = w.tip("calc", "feature/multiply");
    assert_eq!(o.commit.as_deref(), Some(tip.as_str()));
    let bare = w.bare("calc");
    assert_eq!(git(&bare, &["rev-parse", &format!("{tip}^")]), before);
    let code = git(&bare, &["show", &format!("{tip}:src/calc.js")]);
    assert!(
        code.contains("return a * b;") && !code.contains("Math.abs"),
        "{code}"
    );
    assert!(!branch_exists(&w, "calc", "kiro/partial/feature/multiply"));

    let md = report(&w, "acme/calc", 2).await;
    assert!(md.contains("#### Rounds"), "{md}");
    assert!(
        md.contains(
            "| 1 | the spec's 4 open required tasks | ❌ tests-failed: tests failed (exit code 1) |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| 2 | the failure brief: The build's checks failed: tests-failed: tests failed (exit code 1) | ✅ checks passed |"),
        "{md}"
    );
    assert!(md.contains("in 2 rounds."), "{md}");
    assert!(
        md.contains("fixed the failing test \"multiply returns the product\" named in the brief"),
        "the agent's own summary: {md}"
    );
    assert_eq!(
        w.board.status_of("CALC-2").await.unwrap(),
        Some(ItemStatus::Done)
    );
}

/// Without fix rounds the stand-in never sees a brief, never fixes the test: the item
/// fails, and its work goes to the side branch, not the pull request's branch.
#[tokio::test]
async fn without_fix_rounds_the_failing_test_stays_and_the_work_goes_aside() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let before = w.tip("calc", "feature/multiply");
    let mut cfg = w.config(CALC_2, fence);
    cfg.fix_rounds = 0;
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(
        o.failure.as_ref().map(|f| f.class),
        Some(FailureClass::TestsFailed),
        "{o:?}"
    );
    assert_eq!(
        w.tip("calc", "feature/multiply"),
        before,
        "PR branch untouched"
    );
    let side = w.tip("calc", "kiro/partial/feature/multiply");
    let bare = w.bare("calc");
    assert_eq!(git(&bare, &["rev-parse", &format!("{side}^")]), before);
    let code = git(&bare, &["show", &format!("{side}:src/calc.js")]);
    assert!(
        code.contains("Math.abs"),
        "the work as the agent left it: {code}"
    );
}

/// Every round fails the coverage gate: the work is kept on the side branch (one
/// commit on the branch's tip whose message carries the brief), the pull request's
/// branch is untouched, and the report names the side branch. The next attempt starts
/// from it with the previous brief in its first prompt; one that passes the gates
/// pushes the work to the branch and deletes the side branch.
#[tokio::test]
async fn failed_work_is_kept_aside_and_the_next_attempt_starts_from_it() {
    let w = World::new();
    let fence = w.take_lease("greeter").await;
    let before = w.tip("greeter", "feature/farewell");
    let mut cfg = w.config(GREET_2, fence);
    let rec1 = w.path("prompts-1");
    recording(&mut cfg, &rec1);
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    assert_eq!(
        o.failure.as_ref().map(|f| f.class),
        Some(FailureClass::CoverageBelow),
        "{o:?}"
    );
    assert_eq!(prompts(&rec1).len(), 3, "1 + 2 fix rounds");
    assert_eq!(o.commit, None);
    assert_eq!(
        w.tip("greeter", "feature/farewell"),
        before,
        "PR branch untouched"
    );

    let side = w.tip("greeter", SIDE_FAREWELL);
    let bare = w.bare("greeter");
    assert_eq!(git(&bare, &["rev-parse", &format!("{side}^")]), before);
    let files = git(&bare, &["show", "--name-only", "--format=", &side]);
    assert!(files.contains("src/farewell.js"), "{files}");
    assert!(!files.contains("coverage/"), "{files}");
    let msg = git(&bare, &["log", "-1", "--format=%B", &side]);
    let kept = brief::find_in(&msg).expect("the side commit carries the brief");
    assert!(
        kept.headline()
            .starts_with("The build's checks failed: coverage-below: line coverage"),
        "{msg}"
    );
    assert!(kept.text.contains("- src/farewell.js ("), "{msg}");
    let md = report(&w, "acme/greeter", 2).await;
    assert!(
        md.contains(&format!(
            "- Side branch: the work of this attempt is kept on `{SIDE_FAREWELL}` (commit `{side}`)"
        )),
        "{md}"
    );
    assert!(
        md.contains("| 3 | the failure brief: The build's checks failed: coverage-below"),
        "{md}"
    );

    // The next attempt: the checkout starts with the side branch's work, and the first
    // prompt carries the previous brief.
    let mut cfg = w.config(GREET_2, fence);
    cfg.attempt = Some("2".into());
    cfg.build_dir = w.path("build-2");
    cfg.fix_rounds = 0;
    let rec2 = w.path("prompts-2");
    recording(&mut cfg, &rec2);
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(
        o.failure.as_ref().map(|f| f.class),
        Some(FailureClass::CoverageBelow),
        "{o:?}"
    );
    let p = prompts(&rec2);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with(&format!(
            "A previous attempt's work is in this checkout (kept on the branch {SIDE_FAREWELL})"
        )),
        "{}",
        &p[0][..300]
    );
    assert!(p[0].contains(&kept.text), "the previous brief, whole");
    assert!(
        rec2.join("had-farewell-0").exists(),
        "started from the side work"
    );
    let md = report(&w, "acme/greeter", 2).await;
    assert!(
        md.contains(&format!(
            "- Side branch: started from `{SIDE_FAREWELL}` (at `{side}`)"
        )),
        "{md}"
    );
    assert!(
        md.contains("the previous attempt's failure brief: The build's checks failed"),
        "{md}"
    );
    let side2 = w.tip("greeter", SIDE_FAREWELL);
    assert_eq!(
        git(&bare, &["rev-parse", &format!("{side2}^")]),
        before,
        "again one commit on the tip"
    );

    // An attempt that passes (a threshold the work meets) pushes it and drops the side.
    let mut cfg = w.config(GREET_2, fence);
    cfg.attempt = Some("3".into());
    cfg.build_dir = w.path("build-3");
    cfg.coverage_threshold = 10.0;
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    let tip = w.tip("greeter", "feature/farewell");
    assert_eq!(git(&bare, &["rev-parse", &format!("{tip}^")]), before);
    let files = git(&bare, &["show", "--name-only", "--format=", &tip]);
    assert!(files.contains("src/farewell.js"), "{files}");
    assert!(
        !branch_exists(&w, "greeter", SIDE_FAREWELL),
        "side branch deleted"
    );
    let md = report(&w, "acme/greeter", 2).await;
    assert!(
        md.contains(&format!(
            "- Side branch: `{SIDE_FAREWELL}` was deleted: its work is in this commit"
        )),
        "{md}"
    );
}

/// A side branch that does not descend from the branch's tip is left alone, and the
/// report says so.
#[tokio::test]
async fn a_side_branch_off_the_tip_is_ignored_and_kept() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let other = w.path("other");
    git(
        w.root.path(),
        &[
            "clone",
            "--quiet",
            w.bare("calc").to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    git(&other, &["checkout", "--quiet", "--orphan", "stray"]);
    std::fs::write(other.join("STRAY.md"), "unrelated\n").unwrap();
    git(&other, &["add", "-A"]);
    git(&other, &["commit", "--quiet", "-m", "unrelated"]);
    git(
        &other,
        &[
            "push",
            "--quiet",
            "origin",
            "stray:refs/heads/kiro/partial/feature/subtract",
        ],
    );
    let stray = w.tip("calc", "kiro/partial/feature/subtract");
    let cfg = w.config(CALC_1, fence);
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    let tip = w.tip("calc", "feature/subtract");
    let files = git(&w.bare("calc"), &["show", "--name-only", "--format=", &tip]);
    assert!(!files.contains("STRAY.md"), "{files}");
    assert_eq!(
        w.tip("calc", "kiro/partial/feature/subtract"),
        stray,
        "left alone"
    );
    let md = report(&w, "acme/calc", 1).await;
    assert!(
        md.contains(&format!(
            "- Side branch: `kiro/partial/feature/subtract` (at `{stray}`) was ignored: it is not work on top of the tip of `feature/subtract` (work this attempt keeps aside replaces it)"
        )),
        "{md}"
    );
}

/// An agent stopped at its time limit after it changed files: the work goes to the side
/// branch, never to the pull request's branch.
#[tokio::test]
async fn an_agent_out_of_time_with_work_done_keeps_it_aside() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let before = w.tip("calc", "feature/subtract");
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = "sh -c 'echo half done > WORK.md; sleep 30'".into();
    cfg.agent_timeout = std::time::Duration::from_secs(1).into();
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(
        o.failure.as_ref().map(|f| (f.class, f.reason.as_str())),
        Some((FailureClass::AgentFailed, "agent timed out after 1s")),
        "{o:?}"
    );
    assert_eq!(
        w.tip("calc", "feature/subtract"),
        before,
        "PR branch untouched"
    );
    let side = w.tip("calc", "kiro/partial/feature/subtract");
    let bare = w.bare("calc");
    assert_eq!(git(&bare, &["rev-parse", &format!("{side}^")]), before);
    assert_eq!(
        git(&bare, &["show", &format!("{side}:WORK.md")]),
        "half done"
    );
    let msg = git(&bare, &["log", "-1", "--format=%s", &side]);
    assert_eq!(
        msg,
        "wip(subtract): partial work on .kiro/specs/subtract (attempt 1, agent-failed)"
    );
    let md = report(&w, "acme/calc", 1).await;
    assert!(
        md.contains(
            "| 1 | the spec's 4 open required tasks | ❌ agent-failed: agent timed out after 1s |"
        ),
        "{md}"
    );
    assert!(
        md.contains("kept on `kiro/partial/feature/subtract`"),
        "{md}"
    );
}
