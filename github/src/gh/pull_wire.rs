//! One pull request as REST returns it: [`PullWire`] and [`get`]
//! (`GET /repos/{o}/{r}/pulls/{n}`), shared by the report ([`super::pulls`]) and the check
//! run ([`super::checks`]).
//!
//! Invariant: a 404 is `None` (the pull request does not exist or is not visible); any
//! other unsuccessful answer is a classified, scrubbed [`PortError`].

use super::client::GithubClient;
use http::Method;
use kiro_protocol::{PortError, PrNumber, RepoName};
use serde::Deserialize;

/// A pull request as REST returns it (the fields used here).
#[derive(Debug, Deserialize)]
pub(crate) struct PullWire {
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub body: Option<String>,
    pub head: HeadWire,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HeadWire {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
}

/// Pull request `pr` of `repo`, or `None` when GitHub answers 404.
pub(crate) async fn get(
    client: &GithubClient,
    repo: &RepoName,
    pr: PrNumber,
) -> Result<Option<PullWire>, PortError> {
    let url = client.url(&format!("/repos/{repo}/pulls/{}", pr.0));
    let resp = client.send(Method::GET, &url, None).await?;
    if resp.status.as_u16() == 404 {
        return Ok(None);
    }
    if !resp.status.is_success() {
        return Err(client.error_for(&resp, &format!("reading pull request {repo}{pr}")));
    }
    resp.json("pull request").map(Some)
}

/// Pull request `pr` of `repo`; a missing one is permanent input.
pub(crate) async fn require(
    client: &GithubClient,
    repo: &RepoName,
    pr: PrNumber,
) -> Result<PullWire, PortError> {
    get(client, repo, pr)
        .await?
        .ok_or_else(|| PortError::input(format!("pull request {repo}{pr} does not exist")))
}
