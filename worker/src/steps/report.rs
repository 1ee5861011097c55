//! The pull-request report: one Markdown document rendered from typed data.
//!
//! Invariant: the report is built only from the parsed item, the task lists, the test
//! result (whose tail was already masked), the coverage figures and the commit id —
//! never from the environment — so it cannot leak a secret. Repository-controlled text
//! (task titles, test output) is escaped so it cannot break the table or the code block.
//! The report posted is at most [`REPORT_MAX_CHARS`] characters ([`cap`]): a longer one is
//! cut at a line, its open blocks closed, with a note naming where the full text is.

use crate::config::Inputs;
use crate::steps::coverage::pct;
use crate::steps::steering::SyncReport;
use crate::steps::test_run::TestResult;
use crate::tasks::{self, Progress, Task, TaskState};
use kiro_protocol::Failure;
use std::time::Duration;

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
    /// What the steering sync did, when a central source is configured.
    pub steering: Option<&'a SyncReport>,
    pub failure: Option<&'a Failure>,
    /// Each round of the fix loop.
    pub rounds: &'a [Round],
    /// The agent's time across the rounds.
    pub agent_time: Duration,
    /// The last lines of the agent's output: its own summary.
    pub agent_summary: &'a [String],
    /// What happened to side branches of partial work, one sentence each.
    pub side_notes: &'a [String],
    /// The build's page (its log).
    pub build_url: Option<&'a str>,
}

/// One round of the fix loop, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub n: u32,
    /// What the agent was told, in one line.
    pub told: String,
    /// The outcome, in one line.
    pub result: String,
    pub passed: bool,
    /// The round's agent run and checks.
    pub duration: Duration,
}

/// `4.2s` under a minute, else whole seconds (`1m 5s`).
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `text` in a fenced block inside `<details>`, the fence longer than any backtick run.
fn details(summary: &str, lines: &[String]) -> String {
    let body = lines.join("\n");
    let fence = "`".repeat(longest_run(&body, '`').max(2) + 1);
    format!(
        "\n<details><summary>{summary}</summary>\n\n{fence}text\n{body}\n{fence}\n\n</details>\n"
    )
}

fn cell(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
}

fn state(s: Option<TaskState>) -> String {
    match s {
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
    if let Some(url) = d.build_url.map(str::trim).filter(|u| !u.is_empty()) {
        md.push_str(&format!(
            "| Build log | [the build]({}) |\n",
            url.replace(')', "%29")
        ));
    }
    md.push_str("\n#### Tasks\n\n| Task | Title | Before | After |\n|---|---|---|---|\n");
    let changes = tasks::changes(d.before, d.after);
    for c in &changes {
        let after = if c.changed() {
            format!("**{}**", state(c.after))
        } else {
            state(c.after)
        };
        md.push_str(&format!(
            "| {}{} | {} | {} | {} |\n",
            cell(&c.id),
            if c.optional { " (optional)" } else { "" },
            cell(&c.title),
            state(c.before),
            after
        ));
    }
    let (b, a) = (Progress::of(d.before), Progress::of(d.after));
    md.push_str(&format!(
        "\nRequired tasks done: {} → {} of {}",
        b.done,
        a.done,
        a.total.max(b.total)
    ));
    if a.optional_total > 0 || b.optional_total > 0 {
        md.push_str(&format!(
            "; optional: {} → {} of {}",
            b.optional_done,
            a.optional_done,
            a.optional_total.max(b.optional_total)
        ));
    }
    md.push('\n');
    let moved: Vec<String> = changes
        .iter()
        .filter(|c| c.changed())
        .map(|c| {
            format!(
                "{} ({} → {})",
                cell(&c.id),
                c.before.map_or("—".to_owned(), |s| s.to_string()),
                c.after.map_or("—".to_owned(), |s| s.to_string())
            )
        })
        .collect();
    if !moved.is_empty() {
        md.push_str(&format!("\nChanged: {}\n", moved.join(", ")));
    }
    md.push_str("\n#### Checks\n\n");
    match d.tests {
        None => md.push_str("- Tests: not run\n"),
        Some(t) if t.passed => md.push_str("- Tests: ✅ passed"),
        Some(t) => md.push_str(&format!("- Tests: ❌ failed ({})", cell(&t.summary))),
    }
    if let Some(c) = d.tests.and_then(|t| t.counts) {
        md.push_str(&format!(
            " — {} tests, {} failures, {} errors, {} skipped",
            c.tests, c.failures, c.errors, c.skipped
        ));
    }
    if d.tests.is_some() {
        md.push('\n');
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
    for note in d.side_notes {
        md.push_str(&format!("- Side branch: {}\n", cell(note)));
    }
    if let Some(sr) = d.steering {
        let list = |v: &[String]| {
            v.iter()
                .map(|n| format!("`{}`", cell(n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        for (what, v) in [
            ("added", &sr.added),
            ("updated", &sr.updated),
            ("removed", &sr.removed),
            ("kept the repository's own", &sr.kept_local),
            ("skipped", &sr.skipped),
        ] {
            if !v.is_empty() {
                parts.push(format!("{what} {}", list(v)));
            }
        }
        if parts.is_empty() {
            md.push_str("- Steering: up to date\n");
        } else {
            md.push_str(&format!("- Steering: {}\n", parts.join("; ")));
        }
    }
    if !d.rounds.is_empty() {
        md.push_str(
            "\n#### Rounds\n\n| Round | The agent was told | Result | Duration |\n|---|---|---|---|\n",
        );
        for r in d.rounds {
            md.push_str(&format!(
                "| {} | {} | {} {} | {} |\n",
                r.n,
                cell(&r.told),
                if r.passed { "✅" } else { "❌" },
                cell(&r.result),
                secs(r.duration)
            ));
        }
        md.push_str(&format!(
            "\nAgent time: {} in {} round{}.\n",
            secs(d.agent_time),
            d.rounds.len(),
            if d.rounds.len() == 1 { "" } else { "s" }
        ));
    }
    if !d.agent_summary.is_empty() {
        md.push_str(&details(
            &format!(
                "The agent's summary (the last {} lines of its output)",
                d.agent_summary.len()
            ),
            d.agent_summary,
        ));
    }
    if let Some(t) = d.tests.filter(|t| !t.passed && !t.tail.is_empty()) {
        md.push_str(&details(
            &format!("Last {} lines of test output", t.tail.len()),
            &t.tail,
        ));
    }
    md
}

/// The longest report posted, in characters: GitHub stops a comment, a description and a
/// check-run summary at 65,536; 1,024 are left for the adapter's marker or section.
pub const REPORT_MAX_CHARS: usize = 65_536 - 1_024;

/// `full` when it is at most [`REPORT_MAX_CHARS`] characters; otherwise its first lines,
/// with an open code block and `<details>` closed, and a note saying how much was kept
/// and where the full report is (`full_at`) — the whole at most [`REPORT_MAX_CHARS`].
pub fn cap(full: &str, full_at: &str) -> String {
    let total = full.chars().count();
    if total <= REPORT_MAX_CHARS {
        return full.to_owned();
    }
    let note = |kept: usize| {
        format!(
            "\n---\n\n> ✂️ This report was cut at {kept} of {total} characters (GitHub's limit). The full report: {full_at}.\n"
        )
    };
    let mut budget = REPORT_MAX_CHARS.saturating_sub(note(total).chars().count());
    loop {
        let head = head_lines(full, budget);
        let out = format!("{head}{}{}", closers(head), note(head.chars().count()));
        let n = out.chars().count();
        if n <= REPORT_MAX_CHARS || budget == 0 {
            return out;
        }
        budget = budget.saturating_sub(n - REPORT_MAX_CHARS);
    }
}

/// The longest prefix of `s` of at most `chars` characters that ends a line (or the
/// cut itself when there is no line break in it).
fn head_lines(s: &str, chars: usize) -> &str {
    let end = s.char_indices().nth(chars).map_or(s.len(), |(i, _)| i);
    let head = &s[..end];
    match head.rfind('\n') {
        Some(i) => &head[..=i],
        None => head,
    }
}

/// What closes the code block and the `<details>` elements `head` leaves open.
fn closers(head: &str) -> String {
    let mut fence: Option<usize> = None;
    for line in head.lines() {
        let ticks = line.chars().take_while(|c| *c == '`').count();
        match fence {
            None if ticks >= 3 => fence = Some(ticks),
            Some(open) if ticks >= open && line[ticks..].trim().is_empty() => fence = None,
            _ => {}
        }
    }
    let mut out = String::new();
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    if let Some(n) = fence {
        out.push_str(&"`".repeat(n));
        out.push('\n');
    }
    let open = head.matches("<details>").count();
    let closed = head.matches("</details>").count();
    for _ in closed..open {
        out.push_str("\n</details>\n");
    }
    out
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
        let before = crate::tasks::parse(
            "- [ ] 1. Add `subtract` | pipe\n- [x] 2. Old\n- [ ]* 3. Extra\n- [ ] 4. Later\n",
        );
        let after = crate::tasks::parse(
            "- [x] 1. Add `subtract` | pipe\n- [x] 2. Old\n- [x]* 3. Extra\n- [-] 4. Later\n",
        );
        let tests = TestResult {
            passed: false,
            summary: "exit code 1".into(),
            tail: vec!["```".into(), "not ok 1".into()],
            counts: Some(crate::steps::junit::TestCounts {
                tests: 5,
                failures: 1,
                errors: 0,
                skipped: 2,
            }),
            failed_cases: Vec::new(),
        };
        let steering = SyncReport {
            added: vec!["org.md".into()],
            removed: vec!["old.md".into()],
            ..Default::default()
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
            steering: Some(&steering),
            failure: Some(&failure),
            rounds: &[
                Round {
                    n: 1,
                    told: "the spec's 3 open required tasks".into(),
                    result: "tests-failed: tests failed (exit code 1)".into(),
                    passed: false,
                    duration: Duration::from_millis(65_400),
                },
                Round {
                    n: 2,
                    told: "the failure brief: a | b".into(),
                    result: "tests-failed: tests failed (exit code 1)".into(),
                    passed: false,
                    duration: Duration::from_secs(3),
                },
            ],
            agent_time: Duration::from_secs(60),
            agent_summary: &["I added `subtract`.".into(), "```".into()],
            side_notes: &[
                "the work of this attempt is kept on `kiro/partial/feature/subtract`".into(),
            ],
            build_url: Some("https://ci.example/build/1"),
        });
        assert!(md.contains("failed: `tests-failed`"), "{md}");
        assert!(md.contains("| Attempt | 2 |") && md.contains("| Fence | 3 |"));
        assert!(
            md.contains("| 1 | Add `subtract` \\| pipe | open | **✅ done** |"),
            "{md}"
        );
        assert!(md.contains("| 2 | Old | ✅ done | ✅ done |"), "{md}");
        assert!(
            md.contains("| 3 (optional) | Extra | open | **✅ done** |"),
            "{md}"
        );
        assert!(
            md.contains("Required tasks done: 1 → 2 of 3; optional: 0 → 1 of 1\n"),
            "{md}"
        );
        assert!(
            md.contains("Changed: 1 (open → done), 3 (open → done), 4 (open → in progress)"),
            "{md}"
        );
        assert!(
            md.contains(
                "- Tests: ❌ failed (exit code 1) — 5 tests, 1 failures, 0 errors, 2 skipped\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("- Steering: added `org.md`; removed `old.md`\n"),
            "{md}"
        );
        assert!(md.contains("❌ 62.5% (threshold 80%)"));
        assert!(md.contains("````text\n```\nnot ok 1\n````"), "{md}");
        assert!(
            md.contains("| Build log | [the build](https://ci.example/build/1) |\n"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 1 | the spec's 3 open required tasks | ❌ tests-failed: tests failed (exit code 1) | 1m 5s |\n\
                 | 2 | the failure brief: a \\| b | ❌ tests-failed: tests failed (exit code 1) | 3.0s |\n"
            ),
            "{md}"
        );
        assert!(md.contains("Agent time: 1m in 2 rounds."), "{md}");
        assert!(
            md.contains("- Side branch: the work of this attempt is kept on `kiro/partial/feature/subtract`\n"),
            "{md}"
        );
        assert!(
            md.contains("The agent's summary (the last 2 lines of its output)</summary>\n\n````text\nI added `subtract`.\n```\n````"),
            "{md}"
        );
    }

    /// At the boundary: a report of exactly the limit (counted in characters, not bytes)
    /// is posted whole; one character more is cut, with a note and where the full text is.
    #[test]
    fn a_report_over_githubs_limit_is_cut_with_a_note() {
        let at = "where: `kiro-report.md` of build https://ci.example/b/1";
        let exact: String = "é".repeat(REPORT_MAX_CHARS);
        assert_eq!(cap(&exact, at), exact);
        let over = format!("{exact}x");
        let cut = cap(&over, at);
        assert!(
            cut.chars().count() <= REPORT_MAX_CHARS,
            "{}",
            cut.chars().count()
        );
        assert!(cut.starts_with("éééé"));
        assert!(
            cut.contains(&format!("of {} characters", REPORT_MAX_CHARS + 1)),
            "{}",
            &cut[cut.len() - 300..]
        );
        assert!(
            cut.ends_with(&format!("{at}.\n")),
            "{}",
            &cut[cut.len() - 300..]
        );
        // A 9 MB report cut inside the test-output block closes the block and <details>.
        let fenced = format!(
            "### report\n<details><summary>tail</summary>\n\n````text\n{}",
            "line of output\n".repeat(600_000)
        );
        let cut = cap(&fenced, at);
        assert!(cut.chars().count() <= REPORT_MAX_CHARS);
        let fences = cut.lines().filter(|l| l.starts_with("````")).count();
        assert_eq!(fences, 2, "the code block is closed");
        assert!(cut.contains("</details>"));
        assert!(cut.find("</details>") < cut.find("This report was cut"));
    }
}
