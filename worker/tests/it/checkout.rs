//! The checkout: only the item's branch, shallow over a network transport (a real
//! `git daemon` on 127.0.0.1 serves the remote over git://), and still a branch the worker
//! can commit on and push (issue 13.5); from a local remote the one branch, whole; a
//! missing branch stays a permanent-input failure.

use super::git;
use super::git_daemon::Daemon;
use kiro_protocol::{BranchName, FailureClass};
use kiro_worker::steps::git as checkout;
use std::path::Path;

/// A bare remote with `main` (three commits), `feature/a` (two more) and `other`.
fn remote(root: &Path) -> String {
    let bare = root.join("remote.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(
        &bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let work = root.join("seed");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    for (i, branch) in [(1, "main"), (2, "main"), (3, "main")] {
        std::fs::write(work.join("f.txt"), format!("{i}\n")).unwrap();
        git(&work, &["add", "-A"]);
        git(
            &work,
            &["commit", "--quiet", "-m", &format!("c{i} on {branch}")],
        );
    }
    git(&work, &["checkout", "--quiet", "-b", "feature/a"]);
    for i in 4..=5 {
        std::fs::write(work.join("f.txt"), format!("{i}\n")).unwrap();
        git(&work, &["commit", "--quiet", "-am", &format!("c{i}")]);
    }
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(
        &work,
        &[
            "push",
            "--quiet",
            "origin",
            "main",
            "feature/a",
            "main:refs/heads/other",
        ],
    );
    format!("file://{}", bare.display())
}

#[test]
fn the_checkout_fetches_one_branch_shallow_and_can_commit_and_push() {
    let root = tempfile::tempdir().unwrap();
    remote(root.path());
    let daemon = Daemon::serve(root.path());
    let url = daemon.url("remote.git");
    let bare = root.path().join("remote.git");
    let tip = git(&bare, &["rev-parse", "refs/heads/feature/a"]);
    let dir = root.path().join("checkout");
    let branch = BranchName::parse("feature/a").unwrap();

    let head = checkout::checkout(&url, &dir, &branch, None).unwrap();
    assert_eq!(head.to_string(), tip);
    let repo = git2::Repository::open(&dir).unwrap();
    assert!(repo.is_shallow(), "the checkout is shallow");
    let refs: Vec<String> = repo
        .references()
        .unwrap()
        .map(|r| r.unwrap().name().unwrap().to_owned())
        .collect();
    assert!(
        refs.iter().all(|r| r.ends_with("feature/a")),
        "only the item's branch is fetched: {refs:?}"
    );
    let commits = git(&dir, &["rev-list", "--count", "HEAD"]);
    assert_eq!(
        commits,
        checkout::CHECKOUT_DEPTH.to_string(),
        "history is cut"
    );
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "5\n");

    std::fs::write(dir.join("g.txt"), "new\n").unwrap();
    let oid = checkout::commit_all(
        &dir,
        "agent work",
        "kiro",
        "kiro@example.invalid",
        &checkout::Exclusions::default(),
    )
    .unwrap()
    .expect("a change to commit");
    checkout::push(&dir, &branch, None).unwrap();
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/feature/a"]),
        oid.to_string()
    );
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/feature/a^"]),
        tip,
        "the pushed commit sits on the old tip"
    );
    assert_eq!(
        git(&bare, &["fsck", "--no-progress"]),
        "",
        "the remote stays whole"
    );
}

#[test]
fn a_moved_remote_branch_is_a_push_conflict_from_a_shallow_checkout() {
    let root = tempfile::tempdir().unwrap();
    remote(root.path());
    let daemon = Daemon::serve(root.path());
    let url = daemon.url("remote.git");
    let dir = root.path().join("checkout");
    let branch = BranchName::parse("feature/a").unwrap();
    checkout::checkout(&url, &dir, &branch, None).unwrap();
    // Someone else pushes to the branch meanwhile.
    let seed = root.path().join("seed");
    git(&seed, &["checkout", "--quiet", "feature/a"]);
    std::fs::write(seed.join("f.txt"), "human\n").unwrap();
    git(&seed, &["commit", "--quiet", "-am", "human"]);
    git(&seed, &["push", "--quiet", "origin", "feature/a"]);

    std::fs::write(dir.join("g.txt"), "agent\n").unwrap();
    checkout::commit_all(
        &dir,
        "agent",
        "kiro",
        "kiro@example.invalid",
        &Default::default(),
    )
    .unwrap()
    .unwrap();
    let err = checkout::push(&dir, &branch, None).unwrap_err();
    assert_eq!(err.class, FailureClass::PushConflict, "{err:?}");
}

#[test]
fn from_a_local_remote_the_checkout_fetches_the_one_branch_whole() {
    let root = tempfile::tempdir().unwrap();
    let url = remote(root.path());
    let dir = root.path().join("checkout");
    let branch = BranchName::parse("feature/a").unwrap();
    checkout::checkout(&url, &dir, &branch, None).unwrap();
    let repo = git2::Repository::open(&dir).unwrap();
    assert!(!repo.is_shallow());
    assert_eq!(git(&dir, &["rev-list", "--count", "HEAD"]), "5");
    let remotes = git(&dir, &["branch", "-r"]);
    assert_eq!(remotes, "origin/feature/a", "only the item's branch");
}

#[test]
fn local_and_network_urls_are_told_apart() {
    for url in [
        "/srv/git/a.git",
        "file:///srv/git/a.git",
        "./a.git",
        "a.git",
    ] {
        assert!(checkout::is_local(url), "{url}");
    }
    for url in [
        "https://github.com/acme/calc.git",
        "ssh://git@github.com/acme/calc.git",
        "git@github.com:acme/calc.git",
        "git://127.0.0.1:9418/calc.git",
    ] {
        assert!(!checkout::is_local(url), "{url}");
    }
}

#[test]
fn a_missing_branch_is_permanent_input() {
    let root = tempfile::tempdir().unwrap();
    let url = remote(root.path());
    let branch = BranchName::parse("feature/none").unwrap();
    let err = checkout::checkout(&url, &root.path().join("c"), &branch, None).unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput, "{err:?}");
    assert!(err.reason.contains("feature/none"), "{err:?}");
}

/// The side branch of partial work over the shallow network transport: committed beside
/// HEAD, force-pushed, found again by a fresh shallow checkout (its parent the branch's
/// tip, though that parent's history was never fetched), its files taken, then deleted.
#[test]
fn a_side_branch_round_trips_over_a_shallow_checkout() {
    use kiro_worker::steps::{brief, partial};
    let root = tempfile::tempdir().unwrap();
    remote(root.path());
    let daemon = Daemon::serve(root.path());
    let url = daemon.url("remote.git");
    let bare = root.path().join("remote.git");
    let tip = git(&bare, &["rev-parse", "refs/heads/feature/a"]);
    let branch = BranchName::parse("feature/a").unwrap();
    let side = partial::side_branch(&branch).unwrap();
    let dir = root.path().join("checkout");

    checkout::checkout(&url, &dir, &branch, None).unwrap();
    let head = checkout::head(&dir).unwrap();
    assert_eq!(partial::look(&dir, &side, head, None).unwrap(), None);
    std::fs::write(dir.join("half.txt"), "half done\n").unwrap();
    let b = brief::FailureBrief {
        text: "The build's checks failed: tests-failed: tests failed (exit code 1)".into(),
    };
    let message = format!("wip: partial\n\n{}\n", brief::framed(&b));
    let oid = checkout::commit_beside(
        &dir,
        &side,
        &message,
        "kiro",
        "kiro@example.invalid",
        &checkout::Exclusions::default(),
    )
    .unwrap()
    .expect("work to keep");
    assert_eq!(checkout::head(&dir).unwrap(), head, "HEAD stays on the tip");
    checkout::force_push(&dir, &side, None).unwrap();
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/kiro/partial/feature/a"]),
        oid.to_string()
    );
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/feature/a"]),
        tip,
        "the branch did not move"
    );

    // The next attempt: a fresh shallow checkout finds it, on the tip, with its brief.
    let again = root.path().join("again");
    checkout::checkout(&url, &again, &branch, None).unwrap();
    let head = checkout::head(&again).unwrap();
    let found = partial::look(&again, &side, head, None)
        .unwrap()
        .expect("found");
    assert_eq!(found.tip, oid);
    assert!(found.usable, "it descends from the tip");
    assert_eq!(found.brief, Some(b));
    checkout::take_files_of(&again, found.tip).unwrap();
    assert_eq!(
        std::fs::read_to_string(again.join("half.txt")).unwrap(),
        "half done\n"
    );
    assert_eq!(checkout::head(&again).unwrap(), head);

    // The branch moved on since: the side branch no longer descends from its tip.
    let third = root.path().join("third");
    checkout::checkout(&url, &third, &branch, None).unwrap();
    std::fs::write(third.join("other.txt"), "x\n").unwrap();
    checkout::commit_all(
        &third,
        "moved on",
        "t",
        "t@example.invalid",
        &checkout::Exclusions::default(),
    )
    .unwrap()
    .unwrap();
    checkout::push(&third, &branch, None).unwrap();
    let fourth = root.path().join("fourth");
    checkout::checkout(&url, &fourth, &branch, None).unwrap();
    let head = checkout::head(&fourth).unwrap();
    let found = partial::look(&fourth, &side, head, None)
        .unwrap()
        .expect("found");
    assert!(!found.usable, "off the tip");

    checkout::delete_remote(&fourth, &side, None).unwrap();
    let left = std::process::Command::new("git")
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            "refs/heads/kiro/partial/feature/a",
        ])
        .current_dir(&bare)
        .output()
        .unwrap();
    assert!(!left.status.success(), "deleted");
}
