//! The failure brief: what the agent is told when its work fails the gates — the failing
//! test cases with their messages, the tail of the test output, the files and lines the
//! tests never ran — and how a brief travels into the next round's prompt, or into the
//! commit message of a side branch for the next attempt ([`crate::steps::partial`]).
//!
//! Invariants:
//! - a brief is built only from the gates' findings (the failure, the test result whose
//!   tail was already masked, the JUnit cases, the coverage gaps), never from the
//!   environment; every secret value given is masked and the whole text passes through
//!   [`kiro_protocol::redact::redact`], so no secret reaches a prompt, a commit or a report;
//! - a brief is bounded: at most [`MAX_CASES`] cases of [`MESSAGE_CHARS`] characters,
//!   [`TAIL_LINES`] output lines, [`MAX_FILES`] files of [`MAX_RANGES`] line ranges, and
//!   [`MAX_BRIEF_BYTES`] bytes in all; whatever is cut is said, in the brief itself.

use crate::steps::coverage::{Uncovered, pct};
use crate::steps::junit::FailedCase;
use crate::steps::test_run::TestResult;
use kiro_protocol::Failure;

/// The most bytes of a brief.
pub const MAX_BRIEF_BYTES: usize = 12 * 1024;
/// The most failing cases listed.
pub const MAX_CASES: usize = 20;
/// The most characters of one case's message.
pub const MESSAGE_CHARS: usize = 400;
/// The most lines of test output.
pub const TAIL_LINES: usize = 40;
/// The most files with uncovered lines listed.
pub const MAX_FILES: usize = 20;
/// The most line ranges listed for one file.
pub const MAX_RANGES: usize = 24;

/// The line that opens a brief inside a prompt or a commit message.
pub const BEGIN: &str = "----- failure brief -----";
/// The line that closes it.
pub const END: &str = "----- end of failure brief -----";

/// A bounded, redacted account of why the gates failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureBrief {
    /// The whole brief (its first line is [`FailureBrief::headline`]).
    pub text: String,
}

impl FailureBrief {
    /// The brief's first line: the failure in one line.
    pub fn headline(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }
}

/// What the gates found.
#[derive(Debug, Clone, Copy)]
pub struct Findings<'a> {
    pub failure: &'a Failure,
    pub tests: Option<&'a TestResult>,
    /// The test command (named with the output).
    pub test_cmd: &'a str,
    /// Total coverage, when measured, and the threshold.
    pub coverage: Option<f64>,
    pub threshold: f64,
    /// The files with lines never run, the most missed first.
    pub uncovered: &'a [Uncovered],
}

fn one_line(s: &str, chars: usize) -> String {
    let flat: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(chars)
        .collect();
    if s.split_whitespace()
        .map(|w| w.chars().count() + 1)
        .sum::<usize>()
        > chars + 1
    {
        format!("{flat}…")
    } else {
        flat
    }
}

/// `3-7, 12, 20-25` for sorted line numbers, at most `max` ranges (the rest counted).
fn ranges(lines: &[u64], max: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.len() > max {
        let more = out.len() - max;
        out.truncate(max);
        out.push(format!("and {more} more ranges"));
    }
    out.join(", ")
}

fn case_line(c: &FailedCase) -> String {
    let name = if c.classname.is_empty() {
        one_line(&c.name, 200)
    } else {
        format!(
            "{} › {}",
            one_line(&c.classname, 120),
            one_line(&c.name, 200)
        )
    };
    let message = one_line(&c.message, MESSAGE_CHARS);
    if message.is_empty() {
        format!("- {name} ({})", c.kind)
    } else {
        format!("- {name} ({}): {message}", c.kind)
    }
}

/// Mask each secret value, then the credential-looking rest.
fn redacted(text: &str, secrets: &[&str]) -> String {
    let mut t = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        t = t.replace(s, "***");
    }
    kiro_protocol::redact::redact(&t)
}

/// `text` cut at a line to at most `max` bytes, with a note saying so.
fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(
        "\n(brief cut at {max} of {} bytes; the full test output is in the build's log)",
        text.len()
    );
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let head = head.rfind('\n').map_or(head, |i| &head[..i]);
    format!("{head}{note}")
}

/// The brief for `f`, with `secrets` masked.
pub fn build(f: &Findings<'_>, secrets: &[&str]) -> FailureBrief {
    let mut t = String::new();
    let reason = one_line(&f.failure.reason, 300);
    t.push_str(&format!(
        "The build's checks failed: {}: {reason}\n",
        f.failure.class
    ));
    if let Some(tests) = f.tests {
        let cases = &tests.failed_cases;
        if !cases.is_empty() {
            t.push_str(&format!("\nFailing tests ({}):\n", cases.len()));
            for c in cases.iter().take(MAX_CASES) {
                t.push_str(&case_line(c));
                t.push('\n');
            }
            if cases.len() > MAX_CASES {
                t.push_str(&format!(
                    "({} more failing tests not shown)\n",
                    cases.len() - MAX_CASES
                ));
            }
        }
        if !tests.passed && !tests.tail.is_empty() {
            let skip = tests.tail.len().saturating_sub(TAIL_LINES);
            t.push_str(&format!(
                "\nLast {} lines of the output of `{}` ({}):\n",
                tests.tail.len() - skip,
                one_line(f.test_cmd, 200),
                tests.summary
            ));
            for l in &tests.tail[skip..] {
                let l: String = l.chars().take(500).collect();
                t.push_str(&format!("    {l}\n"));
            }
        }
    }
    if !f.uncovered.is_empty() {
        let total = f.coverage.map(|c| format!("line coverage {}%, ", pct(c)));
        t.push_str(&format!(
            "\nLines the tests never ran ({}threshold {}%), the most missed first:\n",
            total.unwrap_or_default(),
            pct(f.threshold)
        ));
        for u in f.uncovered.iter().take(MAX_FILES) {
            let missed = u.found - u.hit;
            let lines = if u.missed_lines.is_empty() {
                String::new()
            } else {
                format!(": lines {}", ranges(&u.missed_lines, MAX_RANGES))
            };
            t.push_str(&format!(
                "- {} ({missed} of {} lines not run){lines}\n",
                one_line(&u.path, 200),
                u.found
            ));
        }
        if f.uncovered.len() > MAX_FILES {
            t.push_str(&format!(
                "({} more files with uncovered lines not shown)\n",
                f.uncovered.len() - MAX_FILES
            ));
        }
    }
    FailureBrief {
        text: bounded(redacted(t.trim_end(), secrets), MAX_BRIEF_BYTES),
    }
}

/// `brief` framed by [`BEGIN`] and [`END`].
pub fn framed(brief: &FailureBrief) -> String {
    format!("{BEGIN}\n{}\n{END}", brief.text.trim_end())
}

/// The brief framed in `text` (a commit message), bounded and redacted again: the text
/// comes from a branch anyone with push access may have written.
pub fn find_in(text: &str) -> Option<FailureBrief> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let rest = &text[start..];
    let body = rest.find(END).map_or(rest, |end| &rest[..end]);
    let body = body.trim_matches('\n');
    (!body.trim().is_empty()).then(|| FailureBrief {
        text: bounded(redacted(body, &[]), MAX_BRIEF_BYTES),
    })
}

/// The prompt of fix round `round` (2, 3, …): what failed first, then the spec's prompt.
pub fn fix_prompt(base: &str, brief: &FailureBrief, round: u32) -> String {
    format!(
        "This is fix round {round}. The work in this checkout (yours, from the previous \
round) fails the build's checks; the failure brief below says how. Fix it first: make the \
failing tests pass (fix the code, or a test that is wrong) and write tests for the lines \
never run. Keep the tasks already marked done; finish any open one.\n\n{}\n\n\
The instructions of the first round follow.\n\n{base}",
        framed(brief)
    )
}

/// The first prompt of an attempt that starts from a previous attempt's side branch.
pub fn resume_prompt(base: &str, brief: &FailureBrief, side: &str) -> String {
    format!(
        "A previous attempt's work is in this checkout (kept on the branch {side}); it \
failed the build's checks as the failure brief below says. Fix that first, then complete \
any open task.\n\n{}\n\n{base}",
        framed(brief)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::FailureClass;

    fn case(name: &str, message: &str) -> FailedCase {
        FailedCase {
            classname: "test/multiply.test.js".into(),
            name: name.into(),
            kind: "failure",
            message: message.into(),
        }
    }

    fn tests(cases: Vec<FailedCase>, tail: Vec<String>) -> TestResult {
        TestResult {
            passed: false,
            summary: "exit code 1".into(),
            tail,
            counts: None,
            failed_cases: cases,
        }
    }

    #[test]
    fn names_failing_tests_the_tail_and_uncovered_lines() {
        let failure = Failure::new(FailureClass::TestsFailed, "tests failed (exit code 1)");
        let t = tests(
            vec![case(
                "multiply handles negatives",
                "Expected values to be strictly equal:\n\n-6 !== 6",
            )],
            vec!["not ok 2 - multiply handles negatives".into()],
        );
        let uncovered = [Uncovered {
            path: "src/calc.js".into(),
            found: 20,
            hit: 12,
            missed_lines: vec![3, 4, 5, 9, 14, 15],
        }];
        let b = build(
            &Findings {
                failure: &failure,
                tests: Some(&t),
                test_cmd: "npm test",
                coverage: Some(60.0),
                threshold: 80.0,
                uncovered: &uncovered,
            },
            &[],
        );
        assert_eq!(
            b.headline(),
            "The build's checks failed: tests-failed: tests failed (exit code 1)"
        );
        assert!(
            b.text.contains(
                "- test/multiply.test.js › multiply handles negatives (failure): Expected \
                 values to be strictly equal: -6 !== 6\n"
            ),
            "{}",
            b.text
        );
        assert!(
            b.text
                .contains("Last 1 lines of the output of `npm test` (exit code 1):\n    not ok 2"),
            "{}",
            b.text
        );
        assert!(
            b.text
                .ends_with("- src/calc.js (8 of 20 lines not run): lines 3-5, 9, 14-15"),
            "{}",
            b.text
        );
        assert!(b.text.contains("line coverage 60%, threshold 80%"));
        // Framed in a commit message, it is found again.
        let msg = format!("wip: x\n\nbody\n\n{}\n\nKiro-Item: A-1\n", framed(&b));
        assert_eq!(find_in(&msg), Some(b.clone()));
        assert_eq!(find_in("wip: x\n\nno brief\n"), None);
        let p = fix_prompt("BASE", &b, 2);
        assert!(p.starts_with("This is fix round 2."));
        assert!(p.contains(BEGIN) && p.contains("multiply handles negatives"));
        assert!(p.ends_with("BASE"));
    }

    #[test]
    fn secrets_never_appear() {
        let failure = Failure::new(
            FailureClass::TestsFailed,
            "tests failed: token=abcdefgh12345678",
        );
        let t = tests(
            vec![case(
                "leaks",
                "got ghp_abcdefghijklmnopqrstuvwx and s3cr3t-value",
            )],
            vec![
                "printing ksk_0123456789abcdef".into(),
                "s3cr3t-value".into(),
            ],
        );
        let b = build(
            &Findings {
                failure: &failure,
                tests: Some(&t),
                test_cmd: "npm test",
                coverage: None,
                threshold: 80.0,
                uncovered: &[],
            },
            &["s3cr3t-value"],
        );
        for secret in [
            "abcdefgh12345678",
            "ghp_abcdefghijklmnopqrstuvwx",
            "ksk_0123456789abcdef",
            "s3cr3t-value",
        ] {
            assert!(!b.text.contains(secret), "{secret} in {}", b.text);
        }
        // A brief read back from a branch is redacted again.
        let found = find_in(&format!(
            "{BEGIN}\nkey: ghp_abcdefghijklmnopqrstuvwx\n{END}"
        ));
        assert!(!found.unwrap().text.contains("ghp_abc"));
    }

    #[test]
    fn the_brief_is_bounded_and_says_what_was_cut() {
        let failure = Failure::new(FailureClass::CoverageBelow, "x".repeat(10_000));
        let cases: Vec<FailedCase> = (0..100)
            .map(|i| case(&format!("case {i}"), &"m".repeat(5_000)))
            .collect();
        let tail: Vec<String> = (0..200)
            .map(|i| format!("{i} {}", "o".repeat(900)))
            .collect();
        let uncovered: Vec<Uncovered> = (0..50)
            .map(|i| Uncovered {
                path: format!("src/f{i}.js"),
                found: 1000,
                hit: 0,
                missed_lines: (1..1000).step_by(2).collect(),
            })
            .collect();
        let t = tests(cases, tail);
        let b = build(
            &Findings {
                failure: &failure,
                tests: Some(&t),
                test_cmd: "npm test",
                coverage: Some(0.0),
                threshold: 80.0,
                uncovered: &uncovered,
            },
            &[],
        );
        assert!(b.text.len() <= MAX_BRIEF_BYTES, "{}", b.text.len());
        assert!(b.headline().chars().count() < 400, "{}", b.headline());
        assert!(b.text.contains("Failing tests (100):"));
        assert!(b.text.contains("(80 more failing tests not shown)"));
        assert!(b.text.contains("case 19 (failure)"));
        assert!(!b.text.contains("case 20 (failure)"));
        assert!(
            b.text
                .ends_with("the full test output is in the build's log)"),
            "{}",
            &b.text[b.text.len() - 200..]
        );
        // Each part is bounded on its own, too.
        assert_eq!(
            ranges(&(1..100).step_by(2).collect::<Vec<_>>(), 3),
            "1, 3, 5, and 47 more ranges"
        );
        assert_eq!(ranges(&[1, 2, 3, 7], 5), "1-3, 7");
    }
}
