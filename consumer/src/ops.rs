//! Operator views: job records and dead letters as aligned text tables or JSON, the
//! full record of one dead letter (`dlq show`), the audit line of a replay, and the
//! embedded forge's pull requests (`reports`: each sticky report, then the comments
//! posted on that pull request, so a mention on a final failure shows).
//!
//! Invariant: these views only read; nothing here changes a job or a message. Values
//! shown come from typed records (no raw environment), so no secret can appear.

use kiro_backends::embedded::{StoredComment, StoredReport};
use kiro_protocol::{
    BuildId, DeadLetterEntry, DlqListing, Envelope, JobRecord, MessageId, PrNumber, RepoName,
    Timestamp, TraceContext,
};
use serde_json::json;

/// Render rows as a left-aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

fn coverage(c: Option<f64>) -> String {
    c.map(|c| format!("{c:.1}%")).unwrap_or_else(|| "-".into())
}

/// The job-records table: project, item, state, attempts, fence, build, last failure, coverage.
/// Agent time used of the item's budget, e.g. `12m/3h`.
pub fn agent_used(j: &JobRecord, budget: std::time::Duration) -> String {
    let used = std::time::Duration::from_secs(j.agent_seconds);
    let mins = |d: std::time::Duration| {
        let m = d.as_secs().div_ceil(60);
        if m >= 60 && m.is_multiple_of(60) {
            format!("{}h", m / 60)
        } else {
            format!("{m}m")
        }
    };
    format!("{}/{}", mins(used), mins(budget))
}

pub fn jobs_table(jobs: &[JobRecord], budget: std::time::Duration) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.project.to_string(),
                j.item.to_string(),
                j.state.to_string(),
                j.attempts.to_string(),
                j.fence.to_string(),
                j.build_id
                    .clone()
                    .or_else(|| j.history.last().and_then(|a| a.build_id.clone()))
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                j.last_failure
                    .as_ref()
                    .map(|f| f.class.to_string())
                    .unwrap_or_else(|| "-".into()),
                coverage(j.coverage),
                agent_used(j, budget),
            ]
        })
        .collect();
    table(
        &[
            "PROJECT",
            "ITEM",
            "STATE",
            "ATTEMPTS",
            "FENCE",
            "BUILD",
            "LAST FAILURE",
            "COVERAGE",
            "AGENT/BUDGET",
        ],
        &rows,
    )
}

pub fn jobs_json(jobs: &[JobRecord]) -> serde_json::Value {
    serde_json::to_value(jobs).unwrap_or_default()
}

/// The item id inside a dead letter's body, if it decodes (`?` otherwise).
pub fn item_of(e: &DeadLetterEntry) -> String {
    Envelope::decode(&e.body)
        .map(|env| env.item.id.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn age(now: Timestamp, then: Timestamp) -> String {
    let s = now.since(then).as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

pub fn dlq_table(entries: &[DeadLetterEntry], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.group.to_string(),
                item_of(e),
                e.letter.class.to_string(),
                e.letter.attempts.len().to_string(),
                age(now, e.dead_lettered_at),
                e.letter.reason.chars().take(100).collect(),
            ]
        })
        .collect();
    table(
        &[
            "MESSAGE", "PROJECT", "ITEM", "CLASS", "ATTEMPTS", "AGE", "REASON",
        ],
        &rows,
    )
}

/// `dlq list --json`: `{"dead_letters": [...], "more": n, "partial": reason | null}`;
/// `more` counts the letters the queue holds that the listing does not show.
pub fn dlq_json(listing: &DlqListing, now: Timestamp) -> serde_json::Value {
    let letters: Vec<serde_json::Value> = listing
        .entries
        .iter()
        .map(|e| serde_json::Value::Object(letter_fields(e, now, e.letter.build_id.as_ref())))
        .collect();
    json!({
        "dead_letters": letters,
        "more": listing.more,
        "partial": listing.partial,
    })
}

/// The trace id of a context in X-Ray form (`1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx`): the
/// `Root` of the X-Ray header, else derived from the W3C trace id.
pub fn xray_trace_id(trace: &TraceContext) -> Option<String> {
    if let Some(root) = trace.xray.as_deref().and_then(|h| {
        h.split(';')
            .find_map(|p| p.trim().strip_prefix("Root="))
            .map(str::to_owned)
    }) {
        return Some(root);
    }
    trace
        .trace_id()
        .map(|t| format!("1-{}-{}", &t[..8], &t[8..]))
}

/// The X-Ray console link of a trace.
pub fn xray_link(region: &str, xray_id: &str) -> String {
    format!("https://console.aws.amazon.com/xray/home?region={region}#/traces/{xray_id}")
}

/// What `dlq show` knows beyond the letter itself (it depends on the backend).
#[derive(Debug, Clone, Default)]
pub struct ShowContext {
    /// The state directory of the embedded default (build logs live under it).
    pub state_dir: Option<std::path::PathBuf>,
    /// The AWS region, on the AWS backend (for the X-Ray and CodeBuild console links).
    pub aws_region: Option<String>,
}

/// Where the build log of `build_id` is, when known: on AWS the CodeBuild console page of
/// the build (its logs are a tab there), on the embedded default the log file.
fn log_location(ctx: &ShowContext, build_id: &str) -> Option<String> {
    if let Some(region) = &ctx.aws_region {
        return codebuild_link(region, build_id);
    }
    ctx.state_dir.as_ref().map(|d| {
        d.join("builds")
            .join(build_id.replace(':', "_"))
            .join("build.log")
            .display()
            .to_string()
    })
}

/// The CodeBuild console link of a build; its id is `<project>:<uuid>` (None otherwise).
pub fn codebuild_link(region: &str, build_id: &str) -> Option<String> {
    let (project, _) = build_id.split_once(':')?;
    Some(format!(
        "https://{region}.console.aws.amazon.com/codesuite/codebuild/projects/{}/build/{}/?region={region}",
        url_encode(project),
        url_encode(build_id)
    ))
}

/// Percent-encode everything but RFC 3986's unreserved characters (so `:` is `%3A`).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The full record of one dead letter as JSON.
pub fn dlq_show_json(e: &DeadLetterEntry, now: Timestamp, ctx: &ShowContext) -> serde_json::Value {
    let build_id = e.letter.build_id.clone().or_else(|| {
        e.letter
            .attempts
            .iter()
            .rev()
            .find_map(|a| a.build_id.clone())
    });
    let xray = xray_trace_id(&e.letter.trace);
    let link = match (&ctx.aws_region, &xray) {
        (Some(region), Some(id)) => Some(xray_link(region, id)),
        _ => None,
    };
    let mut fields = letter_fields(e, now, build_id.as_ref());
    for (k, v) in [
        ("receive_count", json!(e.receive_count)),
        (
            "build_log",
            json!(
                build_id
                    .as_ref()
                    .and_then(|b| log_location(ctx, b.as_str()))
            ),
        ),
        ("trace_id", json!(e.letter.trace.trace_id())),
        ("xray_trace_id", json!(xray)),
        ("xray_link", json!(link)),
        ("traceparent", json!(e.letter.trace.traceparent)),
    ] {
        fields.insert(k.to_owned(), v);
    }
    serde_json::Value::Object(fields)
}

/// The fields `dlq list --json` and `dlq show --json` share, with `build_id` as given.
fn letter_fields(
    e: &DeadLetterEntry,
    now: Timestamp,
    build_id: Option<&BuildId>,
) -> serde_json::Map<String, serde_json::Value> {
    let v = json!({
        "message": e.id.as_str(),
        "original_message": e.original_id.as_str(),
        "project": e.group,
        "item": item_of(e),
        "class": e.letter.class.as_str(),
        "reason": e.letter.reason,
        "attempts": e.letter.attempts,
        "fence": e.letter.fence,
        "build_id": build_id,
        "age_seconds": now.since(e.dead_lettered_at).as_secs(),
    });
    // An object literal, so always an object.
    v.as_object().cloned().unwrap_or_default()
}

/// The full record of one dead letter as readable text (`key: value` lines).
pub fn dlq_show(e: &DeadLetterEntry, now: Timestamp, ctx: &ShowContext) -> String {
    let v = dlq_show_json(e, now, ctx);
    let text = |k: &str| match &v[k] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    for (label, key) in [
        ("message", "message"),
        ("original message", "original_message"),
        ("project", "project"),
        ("item", "item"),
        ("class", "class"),
        ("reason", "reason"),
        ("receive count", "receive_count"),
        ("fence", "fence"),
        ("build id", "build_id"),
        ("build log", "build_log"),
        ("trace id", "trace_id"),
        ("x-ray trace", "xray_trace_id"),
        ("x-ray console", "xray_link"),
    ] {
        out.push_str(&format!("{label:<17}{}\n", text(key)));
    }
    out.push_str(&format!(
        "dead-lettered    {} ago\n",
        age(now, e.dead_lettered_at)
    ));
    out.push_str(&format!("attempts         {}\n", e.letter.attempts.len()));
    for a in &e.letter.attempts {
        out.push_str(&format!(
            "  #{} fence={} build={} failure={}\n",
            a.attempt,
            a.fence,
            a.build_id.as_ref().map_or("-".into(), |b| b.to_string()),
            a.failure
                .as_ref()
                .map_or("-".into(), |f| format!("{}: {}", f.class, f.reason)),
        ));
    }
    out
}

/// The one audit line a replay writes per message.
pub fn replay_audit_line(e: &DeadLetterEntry, new_id: &MessageId) -> String {
    format!(
        "replayed {} project={} item={} class={} new={}",
        e.id,
        e.group,
        item_of(e),
        e.letter.class,
        new_id
    )
}

/// Every pull request with a report or a comment, by repository and number: its report
/// (if any) and its comments in the order they were posted.
fn forge_pulls<'a>(
    reports: &'a [StoredReport],
    comments: &'a [StoredComment],
) -> Vec<(
    &'a RepoName,
    PrNumber,
    Option<&'a StoredReport>,
    Vec<&'a StoredComment>,
)> {
    let mut keys: Vec<(&RepoName, PrNumber)> = reports
        .iter()
        .map(|r| (&r.repo, r.number))
        .chain(comments.iter().map(|c| (&c.repo, c.number)))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(repo, pr)| {
            let report = reports.iter().find(|r| &r.repo == repo && r.number == pr);
            let said = comments
                .iter()
                .filter(|c| &c.repo == repo && c.number == pr)
                .collect();
            (repo, pr, report, said)
        })
        .collect()
}

/// `kiro-consumer reports`: each pull request's sticky report, then its comments.
pub fn reports_text(reports: &[StoredReport], comments: &[StoredComment]) -> String {
    let mut out = String::new();
    for (repo, pr, report, said) in forge_pulls(reports, comments) {
        match report {
            Some(r) => out.push_str(&format!(
                "── {repo}{pr} (revision {}) ──\n{}\n\n",
                r.revision, r.report.markdown
            )),
            None => out.push_str(&format!("── {repo}{pr} (no report) ──\n\n")),
        }
        for c in said {
            out.push_str(&format!(
                "── {repo}{pr} comment for {} ──\n{}\n\n",
                c.item, c.body
            ));
        }
    }
    out
}

/// `kiro-consumer reports --json`: one object per pull request (`revision` and `markdown`
/// null when it has only comments), each with its `comments`.
pub fn reports_json(reports: &[StoredReport], comments: &[StoredComment]) -> serde_json::Value {
    let pulls: Vec<serde_json::Value> = forge_pulls(reports, comments)
        .into_iter()
        .map(|(repo, pr, report, said)| {
            json!({
                "repo": repo,
                "pr": pr,
                "item": report.map(|r| &r.report.item),
                "revision": report.map(|r| r.revision),
                "markdown": report.map(|r| &r.report.markdown),
                "comments": said.iter().map(|c| json!({
                    "item": c.item,
                    "body": c.body,
                    "created_at": c.created_at,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::Value::Array(pulls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{ItemId, Report};

    fn stored_report(pr: u64, markdown: &str) -> StoredReport {
        StoredReport {
            repo: RepoName::parse("acme/calc").unwrap(),
            number: PrNumber(pr),
            report: Report {
                item: ItemId::parse("CALC-1").unwrap(),
                markdown: markdown.into(),
            },
            revision: 2,
            updated_at: Timestamp(5),
        }
    }

    fn comment(pr: u64, body: &str) -> StoredComment {
        StoredComment {
            repo: RepoName::parse("acme/calc").unwrap(),
            number: PrNumber(pr),
            item: ItemId::parse("CALC-1").unwrap(),
            body: body.into(),
            created_at: Timestamp(7),
        }
    }

    #[test]
    fn reports_show_each_pull_requests_comments_after_its_report() {
        let reports = [
            stored_report(1, "sticky one"),
            stored_report(3, "sticky three"),
        ];
        let comments = [
            comment(1, "@octo-cat failed"),
            comment(2, "@mona only a comment"),
            comment(1, "@octo-cat failed again"),
        ];
        assert_eq!(
            reports_text(&reports, &comments),
            "── acme/calc#1 (revision 2) ──\nsticky one\n\n\
             ── acme/calc#1 comment for CALC-1 ──\n@octo-cat failed\n\n\
             ── acme/calc#1 comment for CALC-1 ──\n@octo-cat failed again\n\n\
             ── acme/calc#2 (no report) ──\n\n\
             ── acme/calc#2 comment for CALC-1 ──\n@mona only a comment\n\n\
             ── acme/calc#3 (revision 2) ──\nsticky three\n\n"
        );
        let v = reports_json(&reports, &comments);
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert_eq!(v[0]["pr"], 1);
        assert_eq!(v[0]["revision"], 2);
        assert_eq!(v[0]["comments"][1]["body"], "@octo-cat failed again");
        assert_eq!(v[1]["markdown"], serde_json::Value::Null);
        assert_eq!(v[1]["comments"][0]["item"], "CALC-1");
        assert_eq!(v[2]["comments"], json!([]));
        assert_eq!(reports_text(&[], &[]), "");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz    w\n");
    }

    #[test]
    fn xray_ids_from_either_header() {
        let w3c = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap_or_default();
        assert_eq!(
            xray_trace_id(&w3c).as_deref(),
            Some("1-4bf92f35-77b34da6a3ce929d0e0e4736")
        );
        let aws = TraceContext {
            xray: Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into()),
            ..Default::default()
        };
        assert_eq!(
            xray_trace_id(&aws).as_deref(),
            Some("1-5759e988-bd862e3fe1be46a994272793")
        );
        assert_eq!(xray_trace_id(&TraceContext::default()), None);
        assert_eq!(
            xray_link("eu-west-1", "1-a-b"),
            "https://console.aws.amazon.com/xray/home?region=eu-west-1#/traces/1-a-b"
        );
    }

    #[test]
    fn build_logs_link_codebuild_on_aws_and_a_file_locally() {
        let aws = ShowContext {
            state_dir: None,
            aws_region: Some("eu-west-1".into()),
        };
        assert_eq!(
            log_location(&aws, "kiro-calc:0f9e8d7c-1234-4abc-9def-0123456789ab").as_deref(),
            Some(
                "https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/projects/kiro-calc\
                 /build/kiro-calc%3A0f9e8d7c-1234-4abc-9def-0123456789ab/?region=eu-west-1"
            )
        );
        assert_eq!(
            codebuild_link("eu-west-1", "no-colon"),
            None,
            "not a CodeBuild id"
        );
        assert_eq!(url_encode("a b/c:d"), "a%20b%2Fc%3Ad");
        let local = ShowContext {
            state_dir: Some("/state".into()),
            aws_region: None,
        };
        assert_eq!(
            log_location(&local, "local:X1").as_deref(),
            Some("/state/builds/local_X1/build.log")
        );
        assert_eq!(log_location(&ShowContext::default(), "p:1"), None);
    }

    #[test]
    fn ages_are_human() {
        assert_eq!(age(Timestamp(200_000), Timestamp(0)), "3m");
        assert_eq!(age(Timestamp(5_000), Timestamp(0)), "5s");
    }
}
