//! The outcome file: the worker's [`WorkerOutcome`] as shell assignments that
//! `buildspec.yml` sources (`. ./kiro-outcome.env`), so the build exports them.
//!
//! Invariant: every value is single-quoted with `'` written as `'\''`, so sourcing the
//! file with `sh` reproduces each value byte for byte and runs nothing — whatever a
//! failure reason contains (quotes, `$()`, backticks, newlines). Names come only from
//! [`kiro_protocol::outcome::vars`]. Every value is redacted
//! ([`kiro_protocol::redact::redact`]) first: a failure reason never carries a token into
//! the build's exported variables. The file is written to a temporary name and renamed,
//! so a reader never sees half of it.

use kiro_protocol::WorkerOutcome;
use kiro_protocol::redact::redact;
use std::io::Write;
use std::path::Path;

/// Quote `value` for a POSIX shell: `'…'` with each `'` as `'\''`.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The file's text: one `export NAME='value'` line per variable.
pub fn render(outcome: &WorkerOutcome) -> String {
    let mut s = String::from("# Written by kiro-worker; sourced by buildspec.yml.\n");
    for (k, v) in outcome.to_vars() {
        s.push_str(&format!("export {k}={}\n", shell_quote(&redact(&v))));
    }
    s
}

/// Write the outcome file atomically.
pub fn write(path: &Path, outcome: &WorkerOutcome) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(render(outcome).as_bytes())?;
    tmp.flush()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::outcome::vars;
    use kiro_protocol::{Failure, FailureClass};
    use std::collections::BTreeMap;
    use std::process::Command;

    /// Source `file` in `sh` and print each variable NUL-separated.
    fn source(file: &Path) -> BTreeMap<String, String> {
        let mut script = format!(". {}\n", shell_quote(&file.display().to_string()));
        for name in vars::ALL {
            script.push_str(&format!(
                "if [ \"${{{name}+set}}\" = set ]; then printf '%s\\0%s\\0' {name} \"${name}\"; fi\n"
            ));
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env_clear()
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let parts: Vec<&str> = text.split('\0').collect();
        parts
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect()
    }

    #[test]
    fn sourcing_reproduces_values_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let hostile = format!(
            "it's $(touch {m}) `touch {m}` \"quoted\" \\ back\\'slash ${{HOME}} 'a'\nnew line; rm -rf / #",
            m = marker.display()
        );
        let mut o = WorkerOutcome::failure(Failure::new(FailureClass::TestsFailed, hostile));
        o.coverage = Some(62.5);
        o.tasks_done_before = 1;
        o.tasks_done_after = 2;
        o.tasks_total = 3;
        o.commit = Some("abc'def".into());
        o.agent_seconds = Some(421);
        let path = dir.path().join("kiro-outcome.env");
        write(&path, &o).unwrap();
        let got = source(&path);
        assert_eq!(got, o.to_vars());
        assert!(!marker.exists(), "sourcing ran a command");
        assert_eq!(got[vars::OUTCOME], "failed");
        assert!(got[vars::FAILURE_REASON].starts_with("it's $(touch"));
    }

    #[test]
    fn a_success_sources_back_to_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.env");
        let mut o = WorkerOutcome::success();
        o.commit = Some("0123abcd".into());
        write(&path, &o).unwrap();
        let back = WorkerOutcome::from_vars(&source(&path));
        assert_eq!(back, o);
    }

    #[test]
    fn a_token_in_a_reason_never_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.env");
        let o = WorkerOutcome::failure(Failure::new(
            FailureClass::AgentFailed,
            "agent failed (exit code 1): push to https://x:ghp_abcdefghijklmnop@github.com with AKIAIOSFODNN7EXAMPLE",
        ));
        write(&path, &o).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("ghp_abcdefghijklmnop") && !text.contains("AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(
            source(&path)[vars::FAILURE_REASON],
            "agent failed (exit code 1): push to https://***@github.com with [REDACTED]"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_reason_round_trips(reason in "\\PC{0,60}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("o.env");
            let o = WorkerOutcome::failure(Failure::new(FailureClass::AgentFailed, reason));
            write(&path, &o).unwrap();
            proptest::prop_assert_eq!(source(&path), o.to_vars());
        }
    }
}
