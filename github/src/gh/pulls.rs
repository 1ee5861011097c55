//! [`GithubPulls`]: the `PullRequests` port over GitHub's REST API.
//!
//! - `get`: `GET /repos/{o}/{r}/pulls/{n}` (head ref and sha, state, `html_url`); 404 is `None`.
//! - `upsert_report`, [`ReportMode::Comment`] (default): the one issue comment whose body
//!   contains [`REPORT_MARKER`], found by listing the pull request's comments page by page
//!   (following the `Link: rel="next"` header, only on the API's own origin), is edited in
//!   place (`PATCH /repos/{o}/{r}/issues/comments/{id}`, skipped when unchanged); it is created
//!   only when no marked comment exists. With several marked comments the oldest is edited.
//! - [`ReportMode::BodySection`]: the pull request's body between [`SECTION_START`] and
//!   [`SECTION_END`] is replaced (appended when absent) with `PATCH /repos/{o}/{r}/pulls/{n}`.
//! - `comment`: `POST /repos/{o}/{r}/issues/{n}/comments`, a new comment on every call (this
//!   is what notifies the people it mentions); [`REPORT_MARKER`] is removed from its body,
//!   so the sticky-report lookup can never take it for the report.
//! - `publish_check`: see [`super::checks`] (GitHub App credentials only).
//!
//! Invariant: one report per pull request, never a new report comment per run, and no
//! other comment carries the report's marker; every body sent has passed through
//! [`redact`].

use super::checks;
use super::client::GithubClient;
use super::pull_wire;
use super::settings::GithubSettings;
use crate::redact::redact;
use async_trait::async_trait;
use http::Method;
use kiro_protocol::{
    CheckReport, PortError, PrNumber, PullRequest, PullRequests, RepoName, Report,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, instrument, warn};

/// The hidden marker of the sticky report comment.
pub const REPORT_MARKER: &str = "<!-- kiro-codebuild-worker:report -->";
/// Start of the report section in a pull request's body.
pub const SECTION_START: &str = "<!-- kiro-codebuild-worker:report:start -->";
/// End of the report section in a pull request's body.
pub const SECTION_END: &str = "<!-- kiro-codebuild-worker:report:end -->";

/// Where the report lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportMode {
    /// One marked issue comment, edited in place.
    #[default]
    Comment,
    /// A marked section of the pull request's description.
    BodySection,
}

#[derive(Debug, Deserialize)]
struct CommentWire {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

/// The GitHub forge.
#[derive(Debug, Clone)]
pub struct GithubPulls {
    client: GithubClient,
    mode: ReportMode,
}

impl GithubPulls {
    pub fn new(settings: GithubSettings, mode: ReportMode) -> Result<Self, PortError> {
        Ok(GithubPulls::with_client(GithubClient::new(settings)?, mode))
    }

    /// Share a client (and its token cache) with other adapters.
    pub fn with_client(client: GithubClient, mode: ReportMode) -> Self {
        GithubPulls { client, mode }
    }

    pub fn client(&self) -> &GithubClient {
        &self.client
    }

    /// Send `{"body": body}` to `path` and require a 2xx answer, decoded as JSON.
    async fn send_body<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &str,
        what: &str,
    ) -> Result<T, PortError> {
        let url = self.client.url(path);
        self.client
            .json(method, &url, Some(&json!({ "body": body })), what)
            .await
    }

    /// The marked comment, if any: (id, body).
    async fn find_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
    ) -> Result<Option<(u64, String)>, PortError> {
        let api_origin = origin(&self.client.settings().api_base).to_owned();
        let mut url = Some(self.client.url(&format!(
            "/repos/{repo}/issues/{}/comments?per_page=100",
            pr.0
        )));
        let mut found: Vec<(u64, String)> = Vec::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            let resp = self.client.send(Method::GET, &u, None).await?;
            if !resp.status.is_success() {
                return Err(self
                    .client
                    .error_for(&resp, &format!("listing comments of {repo}{pr}")));
            }
            let comments: Vec<CommentWire> = resp.json("issue comments")?;
            found.extend(comments.into_iter().filter_map(|c| {
                c.body
                    .filter(|b| b.contains(REPORT_MARKER))
                    .map(|b| (c.id, b))
            }));
            url = next_link(&resp.headers).filter(|n| origin(n) == api_origin && pages < 100);
        }
        if found.len() > 1 {
            warn!(
                count = found.len(),
                "several marked report comments; editing the oldest"
            );
        }
        Ok(found.into_iter().min_by_key(|(id, _)| *id))
    }

    async fn upsert_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        body: String,
    ) -> Result<(), PortError> {
        match self.find_comment(repo, pr).await? {
            Some((id, old)) if old == body => {
                info!(comment = id, "report unchanged");
            }
            Some((id, _)) => {
                let _: serde_json::Value = self
                    .send_body(
                        Method::PATCH,
                        &format!("/repos/{repo}/issues/comments/{id}"),
                        &body,
                        "editing the report comment",
                    )
                    .await?;
                info!(comment = id, "report comment edited");
            }
            None => {
                let created: CommentWire = self
                    .send_body(
                        Method::POST,
                        &format!("/repos/{repo}/issues/{}/comments", pr.0),
                        &body,
                        "creating the report comment",
                    )
                    .await?;
                info!(comment = created.id, "report comment created");
            }
        }
        Ok(())
    }

    async fn upsert_section(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        section: String,
    ) -> Result<(), PortError> {
        let pull = pull_wire::require(&self.client, repo, pr).await?;
        let old = pull.body.unwrap_or_default();
        let new = replace_section(&old, &section);
        if new == old {
            info!("report section unchanged");
            return Ok(());
        }
        let _: serde_json::Value = self
            .send_body(
                Method::PATCH,
                &format!("/repos/{repo}/pulls/{}", pr.0),
                &new,
                "editing the pull request body",
            )
            .await?;
        info!("report section written");
        Ok(())
    }
}

/// `markdown` as a plain comment's body: redacted, and without [`REPORT_MARKER`] (removed
/// until none is left, so no removal can join two halves into a new one).
pub fn comment_body(markdown: &str) -> String {
    let mut body = redact(markdown);
    while body.contains(REPORT_MARKER) {
        body = body.replace(REPORT_MARKER, "");
    }
    body
}

/// `body` with the marked section replaced by `section` (appended when absent).
pub fn replace_section(body: &str, section: &str) -> String {
    let block = format!("{SECTION_START}\n{section}\n{SECTION_END}");
    if let Some(start) = body.find(SECTION_START) {
        if let Some(end_rel) = body[start..].find(SECTION_END) {
            let end = start + end_rel + SECTION_END.len();
            return format!("{}{block}{}", &body[..start], &body[end..]);
        }
        // A start without an end: replace everything after the start.
        return format!("{}{block}", &body[..start]);
    }
    if body.trim().is_empty() {
        block
    } else {
        format!("{}\n\n{block}", body.trim_end())
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let host_len = rest.find('/').unwrap_or(rest.len());
    &url[..scheme.len() + 3 + host_len]
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        Some(
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
        )
    })
}

#[async_trait]
impl PullRequests for GithubPulls {
    #[instrument(skip_all, fields(repo = %repo, pr = %pr))]
    async fn get(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<PullRequest>, PortError> {
        Ok(pull_wire::get(&self.client, repo, pr)
            .await?
            .map(|w| PullRequest {
                repo: repo.clone(),
                number: pr,
                head_branch: w.head.git_ref,
                open: w.state == "open",
                url: w.html_url,
            }))
    }

    #[instrument(skip_all, fields(repo = %repo, pr = %pr, item = %report.item))]
    async fn upsert_report(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        report: &Report,
    ) -> Result<(), PortError> {
        let markdown = redact(&report.markdown);
        match self.mode {
            ReportMode::Comment => {
                self.upsert_comment(repo, pr, format!("{REPORT_MARKER}\n{markdown}"))
                    .await
            }
            ReportMode::BodySection => self.upsert_section(repo, pr, markdown).await,
        }
    }

    #[instrument(skip_all, fields(repo = %repo, pr = %pr, item = %comment.item))]
    async fn comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment: &Report,
    ) -> Result<(), PortError> {
        let created: CommentWire = self
            .send_body(
                Method::POST,
                &format!("/repos/{repo}/issues/{}/comments", pr.0),
                &comment_body(&comment.markdown),
                &format!("commenting on pull request {repo}{pr}"),
            )
            .await?;
        info!(comment = created.id, "comment posted");
        Ok(())
    }

    #[instrument(skip_all, fields(repo = %repo, pr = %pr, item = %check.item))]
    async fn publish_check(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        check: &CheckReport,
    ) -> Result<(), PortError> {
        checks::publish(&self.client, repo, pr, check).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_replace_or_append() {
        assert_eq!(
            replace_section("", "r1"),
            format!("{SECTION_START}\nr1\n{SECTION_END}")
        );
        let once = replace_section("Intro text\n", "r1");
        assert_eq!(
            once,
            format!("Intro text\n\n{SECTION_START}\nr1\n{SECTION_END}")
        );
        let twice = replace_section(&format!("{once}\nfooter"), "r2");
        assert_eq!(
            twice,
            format!("Intro text\n\n{SECTION_START}\nr2\n{SECTION_END}\nfooter")
        );
        assert_eq!(
            replace_section(&format!("a {SECTION_START} junk"), "r"),
            format!("a {SECTION_START}\nr\n{SECTION_END}")
        );
    }

    #[test]
    fn a_comment_never_carries_the_report_marker() {
        assert_eq!(comment_body("@octo-cat failed"), "@octo-cat failed");
        assert_eq!(
            comment_body(&format!(
                "{REPORT_MARKER}\n@octo-cat failed {REPORT_MARKER}"
            )),
            "\n@octo-cat failed "
        );
        let (head, tail) = REPORT_MARKER.split_at(10);
        let nested = format!("{head}{REPORT_MARKER}{tail} x");
        assert!(!comment_body(&nested).contains(REPORT_MARKER), "{nested}");
        assert_eq!(
            comment_body("KIRO_API_KEY=ksk_secretsecretsecret"),
            "KIRO_API_KEY=[REDACTED]"
        );
    }

    #[test]
    fn links_and_origins() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::LINK,
            "<https://api.github.com/repositories/1/issues/2/comments?page=2>; rel=\"next\", <https://api.github.com/repositories/1/issues/2/comments?page=5>; rel=\"last\"".parse().unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?page=2")
        );
        assert_eq!(origin("http://127.0.0.1:8080/a/b"), "http://127.0.0.1:8080");
        assert_eq!(origin("https://api.github.com"), "https://api.github.com");
        assert_eq!(next_link(&http::HeaderMap::new()), None);
    }
}
