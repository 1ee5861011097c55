//! Secrets in the agent's and the tests' output never reach a file the worker writes:
//! a stand-in agent and test command print one value of every token family.

use crate::{CALC_1, World};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One value per family, and the part of it that must never be found in a file.
const TOKENS: &[(&str, &str)] = &[
    (
        "classic ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "ghp_abcdefghijklmnop",
    ),
    (
        "fine github_pat_11ABCDEFG0_abcdefXYZabcdef",
        "github_pat_11ABCDEFG0",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    (
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI",
    ),
    ("kiro ksk_live_abcdef0123456789", "ksk_live_abcdef"),
    ("gitlab glpat-abcdefghij0123456789", "glpat-abcdefghij"),
    ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890"),
    (
        "url https://u:urlpassword123@git.example/x.git",
        "urlpassword123",
    ),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payloadpayload.sig",
        "eyJhbGciOiJIUzI1NiJ9",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretpemline\n-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEAsecretpemline",
    ),
];

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            all_files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

#[tokio::test]
async fn no_file_the_worker_writes_holds_a_token() {
    let w = World::new();
    let fence = w.take_lease("calc").await;
    let printed: String = TOKENS.iter().map(|(line, _)| format!("{line}\n")).collect();
    let script = w.path("agent.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat <<'EOF'\n{printed}EOF\ncat <<'EOF' >&2\n{printed}EOF\n\
sed -i '0,/- \\[ \\]/s//- [x]/' \"$KIRO_SPEC_PATH/tasks.md\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tests = w.path("tests.sh");
    std::fs::write(
        &tests,
        format!("#!/bin/sh\ncat <<'EOF'\n{printed}EOF\nexit 1\n"),
    )
    .unwrap();
    std::fs::set_permissions(&tests, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = w.config(CALC_1, fence);
    cfg.agent_cmd = script.display().to_string();
    cfg.test_cmd = tests.display().to_string();
    let o = kiro_worker::run_and_write(&cfg, &w.ports).await.unwrap();
    let f = o.failure.as_ref().expect("the tests fail");
    assert_eq!(
        f.class,
        kiro_protocol::FailureClass::TestsFailed,
        "{}",
        f.reason
    );

    let mut files = Vec::new();
    all_files(&w.path("build"), &mut files);
    all_files(&w.path("state"), &mut files);
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "kiro-agent.log",
        "kiro-tests.log",
        "kiro-outcome.env",
        "kiro-report.md",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not written: {names:?}"
        );
    }
    let log = std::fs::read_to_string(w.path("build/kiro-agent.log")).unwrap();
    assert!(log.contains("[REDACTED]"), "{log}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (_, needle) in TOKENS {
            assert!(!text.contains(needle), "{} holds {needle}", file.display());
        }
    }
}
