//! Check runs: this system's result on a pull request's head commit.
//!
//! Only GitHub Apps may write check runs; with a personal access token [`publish`] logs and
//! does nothing. Otherwise: the pull request's head sha is read, the latest check run named
//! [`CHECK_NAME`] on that commit is looked up
//! (`GET /repos/{o}/{r}/commits/{sha}/check-runs?check_name=…&filter=latest`) and updated
//! (`PATCH /repos/{o}/{r}/check-runs/{id}`), or created (`POST /repos/{o}/{r}/check-runs`).
//!
//! Invariant: one check run per head commit for this system, completed with conclusion
//! `success` or `failure`; title and summary are redacted and cut to GitHub's limits.

use super::client::GithubClient;
use super::pull_wire;
use crate::redact::redact;
use http::Method;
use kiro_protocol::{CheckReport, PortError, PrNumber, RepoName};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

/// The check run's name.
pub const CHECK_NAME: &str = "kiro-codebuild-worker";
/// GitHub's limit on `output.summary`.
const SUMMARY_MAX: usize = 65_535;

#[derive(Debug, Deserialize)]
struct CheckRuns {
    #[serde(default)]
    check_runs: Vec<CheckRunWire>,
}

#[derive(Debug, Deserialize)]
struct CheckRunWire {
    id: u64,
}

fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Create or update the check run for `pr`'s head commit.
pub async fn publish(
    client: &GithubClient,
    repo: &RepoName,
    pr: PrNumber,
    check: &CheckReport,
) -> Result<(), PortError> {
    if !client.is_app() {
        info!("no GitHub App credentials: check run skipped");
        return Ok(());
    }
    let pull = pull_wire::require(client, repo, pr).await?;
    let sha = pull.head.sha;
    let conclusion = if check.success { "success" } else { "failure" };
    let title: String = redact(&check.title)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let output = json!({
        "title": if title.is_empty() { conclusion.to_owned() } else { title },
        "summary": cut(&redact(&check.summary), SUMMARY_MAX),
    });
    let list_url = client.url(&format!(
        "/repos/{repo}/commits/{sha}/check-runs?check_name={CHECK_NAME}&filter=latest&per_page=1"
    ));
    let existing: CheckRuns = client
        .json(Method::GET, &list_url, None, "listing check runs")
        .await?;
    match existing.check_runs.first() {
        Some(run) => {
            let url = client.url(&format!("/repos/{repo}/check-runs/{}", run.id));
            let body = json!({
                "status": "completed",
                "conclusion": conclusion,
                "external_id": check.item.as_str(),
                "output": output,
            });
            let _: serde_json::Value = client
                .json(Method::PATCH, &url, Some(&body), "updating the check run")
                .await?;
            info!(check_run = run.id, conclusion, "check run updated");
        }
        None => {
            let url = client.url(&format!("/repos/{repo}/check-runs"));
            let body = json!({
                "name": CHECK_NAME,
                "head_sha": sha,
                "status": "completed",
                "conclusion": conclusion,
                "external_id": check.item.as_str(),
                "output": output,
            });
            let created: CheckRunWire = client
                .json(Method::POST, &url, Some(&body), "creating the check run")
                .await?;
            info!(check_run = created.id, conclusion, "check run created");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_respects_char_boundaries() {
        assert_eq!(cut("abc", 10), "abc");
        let s = "ééééé";
        let c = cut(s, 6);
        assert!(c.len() <= 6 + "…".len());
        assert!(c.ends_with('…'));
    }
}
