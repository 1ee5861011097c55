//! `PullRequests`: look up a pull request, keep one sticky report on it, and post comments
//! that notify.
//!
//! Contract: `upsert_report` edits the report in place — one report per pull request, no
//! matter how many runs. `comment` posts a new comment on every call, never edits one and
//! is never taken for the sticky report: a new comment is what notifies the people it
//! `@`-mentions (an edited comment notifies nobody), so it is how a final failure reaches
//! the item's assignees. Reports and comments never contain secrets (callers render them
//! from typed data, never from raw environment; adapters redact them again).

use crate::failure::PortError;
use crate::ids::{ItemId, PrNumber, RepoName};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub repo: RepoName,
    pub number: PrNumber,
    pub head_branch: String,
    pub open: bool,
    #[serde(default)]
    pub url: String,
}

/// A report to show on a pull request (Markdown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub item: ItemId,
    pub markdown: String,
}

/// A run's result as a check on the pull request's head commit (GitHub check runs need
/// App credentials; forges without checks ignore it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub item: ItemId,
    pub success: bool,
    /// One line, e.g. "3 of 5 tasks done, coverage 84%".
    pub title: String,
    /// Markdown (the same text as the report is fine).
    pub summary: String,
}

#[async_trait]
pub trait PullRequests: Send + Sync + std::fmt::Debug {
    async fn get(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<PullRequest>, PortError>;
    async fn upsert_report(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        report: &Report,
    ) -> Result<(), PortError>;

    /// Post `comment` as a new comment on the pull request: every call adds one (a retried
    /// call may add it twice), none is edited, and none is the sticky report. Mentions
    /// in it (`@login`) notify, which an edit of the report would not.
    async fn comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment: &Report,
    ) -> Result<(), PortError>;

    /// Create or update this system's check run on the pull request's head commit, where
    /// the forge supports it. The default does nothing.
    async fn publish_check(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        check: &CheckReport,
    ) -> Result<(), PortError> {
        let _ = (repo, pr, check);
        Ok(())
    }
}
