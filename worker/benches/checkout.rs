//! The checkout benchmark (issue 13.5; not a test): the worker's checkout of one branch
//! against `git clone --depth 1 --single-branch` of the same branch, on the same large
//! repository, served by a real `git daemon` on 127.0.0.1, in the same run.
//!
//! `cargo bench -p kiro-worker --bench checkout -- [RUNS] [COMMITS] [KIB_PER_COMMIT]`
//! (defaults 5 / 20,000 / 10: about 200 MB of incompressible history). The repository is
//! generated once with `git fast-import` under `target/bench-data/` and reused. One extra
//! run measures the old checkout (libgit2's full clone of every branch) for comparison.
//! Results and the machine go in docs/benchmarks.md.

#[path = "../tests/it/git_daemon.rs"]
mod git_daemon;

use git_daemon::Daemon;
use git2::build::RepoBuilder;
use kiro_protocol::BranchName;
use kiro_worker::steps::git as checkout;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BRANCH: &str = "feature/bench";
/// Branches besides `main` and the item's, as a busy repository has.
const OTHER_BRANCHES: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| {
            a.parse()
                .expect("arguments: [RUNS] [COMMITS] [KIB_PER_COMMIT]")
        })
        .collect();
    let runs = args.first().copied().unwrap_or(5) as usize;
    let commits = args.get(1).copied().unwrap_or(20_000);
    let kib = args.get(2).copied().unwrap_or(10);

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    let name = format!("big-{commits}x{kib}k.git");
    let bare = data.join(&name);
    if !bare.join("refs/heads/main").exists() && !packed_ref(&bare, "refs/heads/main") {
        generate(&bare, commits, kib);
    }
    println!(
        "machine: {} cores; repository: {commits} commits, {kib} KiB each, {} branches, {} on disk",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        OTHER_BRANCHES + 2,
        human(dir_size(&bare)),
    );
    let daemon = Daemon::serve(&data);
    let url = daemon.url(&name);
    let branch = BranchName::parse(BRANCH).unwrap();
    let scratch = tempfile::tempdir().unwrap();

    let mut worker = Vec::new();
    let mut cli = Vec::new();
    let mut worker_size = 0;
    let mut cli_size = 0;
    for i in 0..runs {
        let dest = scratch.path().join(format!("worker-{i}"));
        let t = Instant::now();
        checkout::checkout(&url, &dest, &branch, None).expect("worker checkout");
        worker.push(t.elapsed());
        worker_size = dir_size(&dest);
        std::fs::remove_dir_all(&dest).unwrap();

        let dest = scratch.path().join(format!("cli-{i}"));
        let t = Instant::now();
        let status = Command::new("git")
            .args([
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--single-branch",
                "--branch",
                BRANCH,
            ])
            .arg(&url)
            .arg(&dest)
            .status()
            .unwrap();
        cli.push(t.elapsed());
        assert!(status.success(), "git clone failed");
        cli_size = dir_size(&dest);
        std::fs::remove_dir_all(&dest).unwrap();
    }
    let dest = scratch.path().join("full");
    let t = Instant::now();
    RepoBuilder::new().clone(&url, &dest).expect("full clone");
    let full = t.elapsed();
    let full_size = dir_size(&dest);

    println!("| checkout | runs | min | median | max | on disk |");
    println!("|---|---|---|---|---|---|");
    row(
        "worker (one branch, depth 1, libgit2)",
        &mut worker,
        worker_size,
    );
    row("`git clone --depth 1 --single-branch`", &mut cli, cli_size);
    row(
        "before: libgit2 full clone, every branch",
        &mut [full],
        full_size,
    );
    println!(
        "median ratio worker / git clone: {:.2}",
        median(&mut worker).as_secs_f64() / median(&mut cli).as_secs_f64()
    );
}

fn row(what: &str, times: &mut [Duration], size: u64) {
    times.sort();
    println!(
        "| {what} | {} | {} | {} | {} | {} |",
        times.len(),
        ms(times[0]),
        ms(median(times)),
        ms(times[times.len() - 1]),
        human(size)
    );
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn human(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| dir_size(&e.unwrap().path()))
        .sum()
}

fn packed_ref(bare: &Path, name: &str) -> bool {
    std::fs::read_to_string(bare.join("packed-refs")).is_ok_and(|s| s.contains(name))
}

/// A bare repository of `commits` commits on `main`, each rewriting one of 200 files with
/// `kib` KiB of random bytes (so history does not compress away), `BRANCH` one commit
/// past `main`'s tip, and `OTHER_BRANCHES` branches spread over the history.
fn generate(bare: &Path, commits: u64, kib: u64) {
    eprintln!("generating {} ({commits} commits) …", bare.display());
    let _ = std::fs::remove_dir_all(bare);
    std::fs::create_dir_all(bare).unwrap();
    git(
        bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufWriter::new(child.stdin.take().unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut blob = vec![0u8; (kib * 1024) as usize];
    let every = (commits / OTHER_BRANCHES as u64).max(1);
    for i in 1..=commits {
        for chunk in blob.chunks_mut(8) {
            // xorshift64: fast, and incompressible enough for zlib.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        writeln!(out, "commit refs/heads/main").unwrap();
        writeln!(out, "mark :{i}").unwrap();
        writeln!(
            out,
            "committer Bench <bench@example.invalid> {} +0000",
            1_600_000_000 + i
        )
        .unwrap();
        let msg = format!("commit {i}");
        writeln!(out, "data {}\n{msg}", msg.len()).unwrap();
        if i > 1 {
            writeln!(out, "from :{}", i - 1).unwrap();
        }
        writeln!(out, "M 644 inline data/{:03}.bin", i % 200).unwrap();
        writeln!(out, "data {}", blob.len()).unwrap();
        out.write_all(&blob).unwrap();
        writeln!(out).unwrap();
        if i % every == 0 && i / every <= OTHER_BRANCHES as u64 {
            writeln!(out, "reset refs/heads/topic-{}\nfrom :{i}\n", i / every).unwrap();
        }
    }
    writeln!(out, "commit refs/heads/{BRANCH}").unwrap();
    writeln!(
        out,
        "committer Bench <bench@example.invalid> 1700000000 +0000"
    )
    .unwrap();
    writeln!(out, "data 6\nbranch\nfrom :{commits}").unwrap();
    writeln!(out, "M 644 inline README.md\ndata 7\nbranch\n").unwrap();
    drop(out);
    assert!(child.wait().unwrap().success(), "git fast-import failed");
    git(bare, &["repack", "-a", "-d", "-q"]);
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} failed");
}
