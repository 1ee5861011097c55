//! The announcement of a final failure: a new comment on the item's pull request that
//! mentions the item's assignees. GitHub notifies the people a new comment mentions; the
//! worker's sticky report is edited in place, and an edit notifies no one.
//!
//! Invariant: only validated values are rendered as Markdown — the item id, the
//! assignees' logins ([`Login`](kiro_protocol::ids::Login)), the failure class, the counts,
//! the build id and the message id. The reason (free text from a build, already redacted)
//! goes inside a code fence longer than any run of backticks in it, so it can neither
//! mention anyone nor format anything. The board's title is never rendered.

use kiro_protocol::{DeadLetter, Report, WorkItem};

/// The comment announcing that `item` was dead-lettered with `letter`; `message_id` is
/// what `kiro-consumer dlq replay --id` takes.
pub fn final_failure(item: &WorkItem, letter: &DeadLetter, message_id: &str) -> Report {
    let who = if item.assignees.is_empty() {
        format!("No one is assigned to `{}`: it", item.id)
    } else {
        let logins: Vec<String> = item.assignees.iter().map(|l| format!("@{l}")).collect();
        format!("{}: `{}`", logins.join(" "), item.id)
    };
    let attempts = letter.attempts.len();
    let plural = if attempts == 1 { "" } else { "s" };
    let mut md = format!(
        "{who} failed for good after {attempts} attempt{plural} and was dead-lettered \
         (`{}`).\n\n{}\n",
        letter.class,
        fenced(&letter.reason)
    );
    if let Some(build) = &letter.build_id {
        md.push_str(&format!("\nLast build: `{build}`."));
    }
    md.push_str(&format!(
        "\nThe run report on this pull request has the details. Once the cause is fixed, \
         replay it with `kiro-consumer dlq replay --id {message_id}`.\n"
    ));
    Report {
        item: item.id.clone(),
        markdown: md,
    }
}

/// `text` in a `text` code fence longer than any run of backticks inside it.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{}\n{fence}", text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::ids::Login;
    use kiro_protocol::{AttemptRecord, BuildId, FailureClass, Fence, Timestamp, TraceContext};

    fn item(assignees: &[&str]) -> WorkItem {
        WorkItem {
            id: "CALC-3".parse().unwrap(),
            project: "alpha".parse().unwrap(),
            repo: "acme/calc".parse().unwrap(),
            branch: "feature/x".parse().unwrap(),
            spec: kiro_protocol::SpecPath::parse("x").unwrap(),
            pr: kiro_protocol::PrNumber(1),
            title: "@everyone please look".into(),
            updated_at: "1".into(),
            assignees: assignees.iter().map(|a| Login::parse(a).unwrap()).collect(),
        }
    }

    fn letter(reason: &str, attempts: usize) -> DeadLetter {
        DeadLetter {
            reason: reason.into(),
            class: FailureClass::CoverageBelow,
            attempts: (0..attempts)
                .map(|n| AttemptRecord {
                    attempt: n as u32 + 1,
                    fence: Fence(1),
                    build_id: None,
                    started_at: Timestamp(0),
                    ended_at: None,
                    failure: None,
                })
                .collect(),
            fence: None,
            build_id: Some(BuildId::new("kiro-worker:0a1b")),
            trace: TraceContext::default(),
        }
    }

    #[test]
    fn every_assignee_is_mentioned_and_the_replay_is_named() {
        let r = final_failure(
            &item(&["octo-cat", "Copilot"]),
            &letter("not retryable: coverage 71% is below 80%", 1),
            "m-42",
        );
        assert_eq!(r.item.as_str(), "CALC-3");
        let md = &r.markdown;
        assert!(md.starts_with("@octo-cat @Copilot: `CALC-3` failed for good after 1 attempt and was dead-lettered (`coverage-below`)."), "{md}");
        assert!(
            md.contains("```text\nnot retryable: coverage 71% is below 80%\n```"),
            "{md}"
        );
        assert!(md.contains("Last build: `kiro-worker:0a1b`."), "{md}");
        assert!(md.contains("kiro-consumer dlq replay --id m-42"), "{md}");
        assert!(
            !md.contains("@everyone"),
            "the title is never rendered: {md}"
        );
    }

    #[test]
    fn without_an_assignee_the_comment_still_says_so() {
        let md = final_failure(&item(&[]), &letter("r", 3), "m").markdown;
        assert!(
            md.starts_with("No one is assigned to `CALC-3`: it failed for good after 3 attempts"),
            "{md}"
        );
        assert!(!md.contains('@'), "{md}");
    }

    #[test]
    fn a_reason_cannot_mention_or_break_out_of_its_fence() {
        let reason = "assert failed: ```\n@mallory see <img src=x>\n````";
        let md = final_failure(&item(&[]), &letter(reason, 1), "m").markdown;
        // The fence is longer than the longest backtick run (4) in the reason.
        assert!(md.contains(&format!("`````text\n{reason}\n`````")), "{md}");
        let outside: String = md.split("`````").step_by(2).collect();
        assert!(!outside.contains("@mallory"), "{md}");
    }
}
