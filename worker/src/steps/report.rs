//! The pull-request report: one Markdown document rendered from typed data.
//!
//! Invariant: the report is built only from the parsed item, the task lists, the test
//! result (whose tail was already masked), the coverage figures and the commit id —
//! never from the environment — so it cannot leak a secret. Repository-controlled text
//! (task titles, test output) is escaped so it cannot break the table or the code block.

use crate::config::Inputs;
use crate::steps::coverage::pct;
use crate::steps::test_run::TestResult;
use crate::tasks::{Task, TaskState};
use kiro_protocol::Failure;

/// Everything a report shows.
#[derive(Debug, Clone, Copy)]
pub struct ReportData<'a> {
    pub inputs: &'a Inputs,
    pub before: &'a [Task],
    pub after: &'a [Task],
    pub tests: Option<&'a TestResult>,
    pub coverage: Option<f64>,
    pub threshold: f64,
    pub commit: Option<&'a str>,
    pub pushed: bool,
    pub failure: Option<&'a Failure>,
}

fn cell(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
}

fn state(t: Option<&Task>) -> String {
    match t.map(|t| t.state) {
        None => "—".into(),
        Some(TaskState::Done) => "✅ done".into(),
        Some(s) => s.to_string(),
    }
}

/// Render the report.
pub fn render(d: &ReportData<'_>) -> String {
    let i = d.inputs;
    let mut md = String::new();
    let verdict = match d.failure {
        None => "✅ succeeded".to_owned(),
        Some(f) => format!("❌ failed: `{}`", f.class),
    };
    md.push_str(&format!("### kiro-worker report — {verdict}\n\n"));
    md.push_str(&format!(
        "| | |\n|---|---|\n| Item | `{}` |\n| Spec | `{}` |\n| Branch | `{}` |\n| Attempt | {} |\n| Fence | {} |\n",
        i.item, i.spec, i.branch, i.attempt, i.fence
    ));
    if let Some(f) = d.failure {
        md.push_str(&format!("| Failure | {} |\n", cell(&f.reason)));
    }
    md.push_str("\n#### Tasks\n\n| Task | Title | Before | After |\n|---|---|---|---|\n");
    let mut ids: Vec<&Task> = d.after.iter().collect();
    for b in d.before {
        if !d.after.iter().any(|a| a.id == b.id) {
            ids.push(b);
        }
    }
    for t in ids {
        let before = d.before.iter().find(|b| b.id == t.id);
        let after = d.after.iter().find(|a| a.id == t.id);
        md.push_str(&format!(
            "| {}{} | {} | {} | {} |\n",
            cell(&t.id),
            if t.optional { " (optional)" } else { "" },
            cell(&t.title),
            state(before),
            state(after)
        ));
    }
    let done = |ts: &[Task]| ts.iter().filter(|t| t.state.is_done()).count();
    md.push_str(&format!(
        "\nDone: {} → {} of {}\n",
        done(d.before),
        done(d.after),
        d.after.len().max(d.before.len())
    ));
    md.push_str("\n#### Checks\n\n");
    match d.tests {
        None => md.push_str("- Tests: not run\n"),
        Some(t) if t.passed => md.push_str("- Tests: ✅ passed\n"),
        Some(t) => md.push_str(&format!("- Tests: ❌ failed ({})\n", cell(&t.summary))),
    }
    match d.coverage {
        None => md.push_str(&format!(
            "- Line coverage: unknown (threshold {}%)\n",
            pct(d.threshold)
        )),
        Some(c) => md.push_str(&format!(
            "- Line coverage: {} {}% (threshold {}%)\n",
            if c + 1e-9 >= d.threshold {
                "✅"
            } else {
                "❌"
            },
            pct(c),
            pct(d.threshold)
        )),
    }
    match (d.commit, d.pushed) {
        (Some(c), true) => md.push_str(&format!("- Commit: `{c}` pushed to `{}`\n", i.branch)),
        (Some(c), false) => md.push_str(&format!("- Commit: `{c}` (not pushed)\n")),
        (None, _) if d.failure.is_none() => md.push_str("- Commit: none (no changes)\n"),
        (None, _) => md.push_str("- Commit: none\n"),
    }
    if let Some(t) = d.tests.filter(|t| !t.passed && !t.tail.is_empty()) {
        let body = t.tail.join("\n");
        let longest = longest_run(&body, '`');
        let fence = "`".repeat(longest.max(2) + 1);
        md.push_str(&format!(
            "\n<details><summary>Last {} lines of test output</summary>\n\n{fence}text\n{body}\n{fence}\n\n</details>\n",
            t.tail.len()
        ));
    }
    md
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        if ch == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::FailureClass;

    fn inputs() -> Inputs {
        Inputs::sample(2)
    }

    #[test]
    fn renders_tasks_checks_and_escaped_tail() {
        let i = inputs();
        let before = crate::tasks::parse("- [ ] 1. Add `subtract` | pipe\n- [x] 2. Old\n");
        let after = crate::tasks::parse("- [x] 1. Add `subtract` | pipe\n- [x] 2. Old\n");
        let tests = TestResult {
            passed: false,
            summary: "exit code 1".into(),
            tail: vec!["```".into(), "not ok 1".into()],
        };
        let failure = Failure::new(FailureClass::TestsFailed, "tests failed (exit code 1)");
        let md = render(&ReportData {
            inputs: &i,
            before: &before,
            after: &after,
            tests: Some(&tests),
            coverage: Some(62.5),
            threshold: 80.0,
            commit: None,
            pushed: false,
            failure: Some(&failure),
        });
        assert!(md.contains("failed: `tests-failed`"), "{md}");
        assert!(md.contains("| Attempt | 2 |") && md.contains("| Fence | 3 |"));
        assert!(
            md.contains("| 1 | Add `subtract` \\| pipe | open | ✅ done |"),
            "{md}"
        );
        assert!(md.contains("Done: 1 → 2 of 2"));
        assert!(md.contains("❌ 62.5% (threshold 80%)"));
        assert!(md.contains("````text\n```\nnot ok 1\n````"), "{md}");
    }
}
