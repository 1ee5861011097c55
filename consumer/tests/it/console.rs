//! The operator console's `board` command on the embedded default: what it prints for
//! board values that hold secrets (a token pasted into a title, a URL with a password).

use std::process::{Command, Stdio};

const TOKEN: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

/// Titles, notes and raw values a person pasted into the board are shown redacted, in
/// the table and in `--json`.
#[test]
fn board_output_never_shows_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let board = dir.path().join("board.yaml");
    std::fs::write(
        &board,
        format!(
            "items:\n  - id: CALC-1\n    project: calc\n    title: \"use {TOKEN} to log in\"\n    status: \"Ready {TOKEN}\"\n    repo: acme/calc\n    branch: feature/x\n    spec: x\n    pr: 1\n"
        ),
    )
    .unwrap();
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiro-consumer"));
        cmd.arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--log-format", "json", "board", "--board"])
            .arg(&board)
            .stdin(Stdio::null());
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("CALC-1"), "{stdout}");
        assert!(!stdout.contains(TOKEN), "json={json}: {stdout}");
        if json {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let title = v[0]["title"].as_str().unwrap();
            assert!(
                title.starts_with("use ") && title.ends_with(" to log in"),
                "{title}"
            );
        }
    }
}
