//! Steering sync against real git repositories: a central repository (cloned over
//! `file://`, at its default branch or a tag) and a checkout with its own steering files.

use crate::{CALC_1, World, git};
use kiro_protocol::{OutcomeStatus, PrNumber, RepoName};
use kiro_worker::steps::steering::{self, MANIFEST, Manifest, STEERING_DIR, SteeringSource};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const SECURITY: &str = "---\ninclusion: always\n---\n# Security\nNever log secrets.\n";
const STYLE_V1: &str =
    "---\ninclusion: fileMatch\nfileMatchPattern: \"src/**/*.js\"\n---\n# Style\nUse const.\n";
const STYLE_V2: &str = "---\ninclusion: fileMatch\nfileMatchPattern: \"src/**/*.js\"\n---\n# Style\nUse const and let.\n";

#[test]
fn add_update_remove_and_never_touch_the_repositorys_own_files() {
    let root = tempfile::tempdir().unwrap();
    let central = root.path().join("central");
    std::fs::create_dir_all(&central).unwrap();
    git(&central, &["init", "--quiet", "--initial-branch=main"]);
    write(&central, "security.md", SECURITY);
    write(&central, "style.md", STYLE_V1);
    write(&central, "team.md", "# Central team rules\n");
    write(&central, "README.md", "# The organisation's steering\n");
    write(&central, "notes.txt", "not steering\n");
    git(&central, &["add", "-A"]);
    git(&central, &["commit", "--quiet", "-m", "v1"]);
    git(&central, &["tag", "v1"]);
    let v1 = git(&central, &["rev-parse", "HEAD"]);

    let checkout = root.path().join("checkout");
    let steer = checkout.join(STEERING_DIR);
    write(&steer, "team.md", "# Our team rules\n");
    write(&steer, "product.md", "# Our product\n");
    // A hostile manifest entry must never make the sync delete outside the folder.
    write(&checkout, "outside.md", "keep me\n");

    let url = format!("file://{}", central.display());
    let source = SteeringSource::parse(&url).unwrap();
    let r = steering::sync(&source, &checkout).unwrap();
    assert_eq!(names(&r.added), ["security.md", "style.md"]);
    assert_eq!(names(&r.kept_local), ["team.md"]);
    assert!(r.updated.is_empty() && r.removed.is_empty());
    assert_eq!(r.revision.as_deref(), Some(v1.as_str()));
    assert_eq!(
        read(&steer, "security.md"),
        SECURITY,
        "copied byte for byte"
    );
    assert_eq!(read(&steer, "team.md"), "# Our team rules\n");
    assert!(!steer.join("README.md").exists() && !steer.join("notes.txt").exists());
    let manifest: Manifest = serde_json::from_str(&read(&steer, MANIFEST)).unwrap();
    assert_eq!(manifest.source, url);
    assert_eq!(manifest.revision.as_deref(), Some(v1.as_str()));
    let listed: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(listed, ["security.md", "style.md"]);
    let blob = git(
        &checkout.parent().unwrap().join("central"),
        &["hash-object", "style.md"],
    );
    assert_eq!(manifest.files[1].sha, blob);

    // A second sync with nothing new changes nothing.
    let r = steering::sync(&source, &checkout).unwrap();
    assert!(!r.changed(), "{r:?}");

    // v2: style changed, security removed, a new file.
    std::fs::write(central.join("style.md"), STYLE_V2).unwrap();
    std::fs::remove_file(central.join("security.md")).unwrap();
    write(&central, "review.md", "# Review\n");
    git(&central, &["add", "-A"]);
    git(&central, &["commit", "--quiet", "-m", "v2"]);
    let r = steering::sync(&source, &checkout).unwrap();
    assert_eq!(names(&r.added), ["review.md"]);
    assert_eq!(names(&r.updated), ["style.md"]);
    assert_eq!(names(&r.removed), ["security.md"]);
    assert_eq!(read(&steer, "style.md"), STYLE_V2);
    assert!(!steer.join("security.md").exists());
    assert_eq!(read(&steer, "team.md"), "# Our team rules\n");
    assert_eq!(read(&steer, "product.md"), "# Our product\n");

    // A pinned ref brings v1 back.
    let pinned = SteeringSource::parse(&format!("{url}#v1")).unwrap();
    let r = steering::sync(&pinned, &checkout).unwrap();
    assert_eq!(names(&r.added), ["security.md"]);
    assert_eq!(names(&r.updated), ["style.md"]);
    assert_eq!(names(&r.removed), ["review.md"]);
    assert_eq!(r.revision.as_deref(), Some(v1.as_str()));

    // A manifest edited to point outside the folder (or at the repository's own file)
    // removes nothing of the repository's.
    let mut m: Manifest = serde_json::from_str(&read(&steer, MANIFEST)).unwrap();
    m.files.push(steering::ManifestFile {
        name: "../../outside.md".into(),
        sha: "0".into(),
    });
    m.files.push(steering::ManifestFile {
        name: "product.md".into(),
        sha: "0".into(),
    });
    std::fs::write(steer.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
    let local = SteeringSource::Dir(root.path().join("empty"));
    std::fs::create_dir_all(root.path().join("empty")).unwrap();
    let r = steering::sync(&local, &checkout).unwrap();
    assert_eq!(names(&r.removed), ["security.md", "style.md"]);
    assert_eq!(names(&r.kept_local), ["product.md"]);
    assert_eq!(read(&steer, "product.md"), "# Our product\n");
    assert_eq!(read(&checkout, "outside.md"), "keep me\n");
    assert_eq!(read(&steer, "team.md"), "# Our team rules\n");
    assert!(
        !steer.join(MANIFEST).exists(),
        "no central files left: no manifest"
    );
}

#[test]
fn a_local_directory_source_and_bad_names() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    write(&src, ".kiro/steering/org.md", "# Org\n");
    write(&src, ".kiro/steering/bad name.md", "# Bad\n");
    write(&src, "ignored-top-level.md", "# Not in the nested folder\n");
    std::os::unix::fs::symlink("/etc/hostname", src.join(".kiro/steering/link.md")).unwrap();
    let checkout = root.path().join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let r = steering::sync(&SteeringSource::Dir(src.clone()), &checkout).unwrap();
    assert_eq!(names(&r.added), ["org.md"]);
    let mut skipped = r.skipped.clone();
    skipped.sort();
    assert_eq!(skipped, ["bad name.md", "link.md"]);
    assert!(r.revision.is_none());
    assert_eq!(read(&checkout.join(STEERING_DIR), "org.md"), "# Org\n");
    // A steering folder that is a symlink is refused.
    let other = root.path().join("other");
    std::fs::create_dir_all(other.join(".kiro")).unwrap();
    std::os::unix::fs::symlink(root.path(), other.join(".kiro/steering")).unwrap();
    let e = steering::sync(&SteeringSource::Dir(src), &other).unwrap_err();
    assert!(e.reason.contains("symlink"), "{}", e.reason);
}

#[tokio::test]
async fn synced_steering_is_committed_with_the_agents_changes() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let src = w.path("org-steering");
    write(
        &src,
        "org-testing.md",
        "---\ninclusion: always\n---\nAlways write tests.\n",
    );
    let mut cfg = w.config(CALC_1, fence);
    cfg.steering_source = Some(src.display().to_string());
    let o = kiro_worker::run(&cfg, &w.ports).await;
    assert_eq!(o.status, OutcomeStatus::Succeeded, "{o:?}");
    let tip = w.tip("calc", "feature/subtract");
    let files = git(&w.bare("calc"), &["show", "--name-only", "--format=", &tip]);
    assert!(files.contains(".kiro/steering/org-testing.md"), "{files}");
    assert!(
        files.contains(".kiro/steering/.kiro-central-manifest.json"),
        "{files}"
    );
    assert!(
        files.contains("src/calc.js"),
        "one commit with the agent's work: {files}"
    );
    let (report, _) = w
        .pulls
        .report(&RepoName::parse("acme/calc").unwrap(), PrNumber(1))
        .await
        .unwrap()
        .expect("a report");
    assert!(
        report
            .markdown
            .contains("- Steering: added `org-testing.md`"),
        "{}",
        report.markdown
    );
}

/// The repository controls `.kiro/steering/`: a FIFO as the manifest (it blocked the
/// sync forever), a steering file symlinked outside the checkout or to a device, an
/// oversize one — the sync neither hangs nor reads them, the prompt never sees them.
#[test]
fn hostile_steering_entries_are_neither_read_nor_hung_on() {
    let root = tempfile::tempdir().unwrap();
    let central = root.path().join("central");
    write(&central, "security.md", SECURITY);
    let checkout = root.path().join("checkout");
    let dir = checkout.join(STEERING_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join(MANIFEST);
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    write(&central, "new.md", "# New central rules\n");
    let e = steering::sync(&SteeringSource::Dir(central.clone()), &checkout).unwrap_err();
    assert_eq!(
        e.reason,
        ".kiro/steering/.kiro-central-manifest.json is a symlink or not a regular file; not syncing steering"
    );
    std::fs::remove_file(&fifo).unwrap();
    std::fs::remove_file(central.join("new.md")).unwrap();
    write(root.path(), "outside/secret.md", "SECRET FROM OUTSIDE\n");
    std::os::unix::fs::symlink(root.path().join("outside/secret.md"), dir.join("leak.md")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.md")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("security.md")).unwrap();
    write(&dir, "huge.md", &"x".repeat(300 * 1024));
    write(&dir, "own.md", "# Our own rules\n");

    let report = steering::sync(&SteeringSource::Dir(central.clone()), &checkout).unwrap();
    // The repository's symlinked `security.md` is kept, not followed nor replaced.
    assert_eq!(names(&report.kept_local), ["security.md"]);
    assert!(
        std::fs::symlink_metadata(dir.join("security.md"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let files = steering::read_all(&checkout);
    let seen: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(seen, ["own.md"]);
    assert!(files.iter().all(|f| !f.body.contains("SECRET")));
}
