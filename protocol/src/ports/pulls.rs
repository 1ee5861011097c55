//! `PullRequests`: look up a pull request and keep one sticky report on it.
//!
//! Contract: `upsert_report` edits the report in place — one report per pull request, no
//! matter how many runs; reports never contain secrets (callers render them from typed
//! data, never from raw environment).

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

#[async_trait]
pub trait PullRequests: Send + Sync + std::fmt::Debug {
    async fn get(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<PullRequest>, PortError>;
    async fn upsert_report(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        report: &Report,
    ) -> Result<(), PortError>;
}
