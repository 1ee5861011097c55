//! `EmbeddedPulls`: the `PullRequests` port over the board file's `pull_requests` and the
//! `pr_reports` and `pr_comments` tables in the state database.
//!
//! Invariant: one report per pull request — `upsert_report` replaces the stored report in
//! place and bumps its `revision`, exactly like editing one sticky comment on GitHub;
//! `comment` appends one row per call and never touches a row again, like posting a new
//! comment. Both are refused for a pull request the board file does not list, and the
//! stored Markdown has passed through [`redact`].

use super::board_file as file;
use super::file_backed::FileBacked;
use async_trait::async_trait;
use kiro_protocol::redact::redact;
use kiro_protocol::{
    Clock, ItemId, PortError, PrNumber, PullRequest, PullRequests, RepoName, Report, Timestamp,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use tracing::{info, instrument};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pr_reports (
    repo       TEXT NOT NULL,
    number     INTEGER NOT NULL,
    item       TEXT NOT NULL,
    markdown   TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, number)
);
CREATE TABLE IF NOT EXISTS pr_comments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repo       TEXT NOT NULL,
    number     INTEGER NOT NULL,
    item       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// A stored report, for printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub repo: RepoName,
    pub number: PrNumber,
    pub report: Report,
    /// 1 when first written, +1 on every edit.
    pub revision: u64,
    pub updated_at: Timestamp,
}

/// A stored comment (one [`PullRequests::comment`] call), for printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredComment {
    pub repo: RepoName,
    pub number: PrNumber,
    pub item: ItemId,
    /// The Markdown as stored (redacted).
    pub body: String,
    pub created_at: Timestamp,
}

/// The embedded forge.
#[derive(Debug, Clone)]
pub struct EmbeddedPulls {
    base: FileBacked,
}

impl EmbeddedPulls {
    /// Open over `board_file`, creating the report table. The file is parsed once here so
    /// a broken file is reported at start-up.
    pub fn open(board_file: &Path, db: EmbeddedDb) -> Result<Self, PortError> {
        Ok(EmbeddedPulls {
            base: FileBacked::open(board_file, db, SCHEMA)?,
        })
    }

    /// Use `clock` for report timestamps.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.base.clock = clock;
        self
    }

    /// The report on one pull request and its revision.
    pub async fn report(
        &self,
        repo: &RepoName,
        pr: PrNumber,
    ) -> Result<Option<(Report, u64)>, PortError> {
        let repo = repo.as_str().to_owned();
        let row = self
            .base.db
            .call(move |c| {
                c.query_row(
                    "SELECT item, markdown, revision FROM pr_reports WHERE repo = ?1 AND number = ?2",
                    params![repo, pr_key(pr)?],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(DbError::from)
            })
            .await?;
        row.map(|(item, markdown, revision)| {
            Ok((
                Report {
                    item: parse_item(&item)?,
                    markdown,
                },
                u64::try_from(revision).unwrap_or(0),
            ))
        })
        .transpose()
    }

    /// Every stored report, ordered by repository and number.
    pub async fn reports(&self) -> Result<Vec<StoredReport>, PortError> {
        let rows = self
            .base
            .db
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT repo, number, item, markdown, revision, updated_at
                         FROM pr_reports ORDER BY repo, number",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        rows.into_iter()
            .map(|(repo, number, item, markdown, revision, at)| {
                let (repo, number, item) = stored_pr(&repo, number, &item, "report")?;
                Ok(StoredReport {
                    repo,
                    number,
                    report: Report { item, markdown },
                    revision: u64::try_from(revision).unwrap_or(0),
                    updated_at: Timestamp(at),
                })
            })
            .collect()
    }
}

impl EmbeddedPulls {
    /// Every comment posted, in the order they were posted.
    pub async fn comments(&self) -> Result<Vec<StoredComment>, PortError> {
        let rows = self
            .base
            .db
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT repo, number, item, body, created_at FROM pr_comments ORDER BY id",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        rows.into_iter()
            .map(|(repo, number, item, body, at)| {
                let (repo, number, item) = stored_pr(&repo, number, &item, "comment")?;
                Ok(StoredComment {
                    repo,
                    number,
                    item,
                    body,
                    created_at: Timestamp(at),
                })
            })
            .collect()
    }

    /// Refuse a pull request the board file does not list.
    async fn known(&self, repo: &RepoName, pr: PrNumber) -> Result<(), PortError> {
        if self.get(repo, pr).await?.is_none() {
            return Err(PortError::input(format!(
                "no pull request {repo} {pr} in board file {}",
                self.base.file.display()
            )));
        }
        Ok(())
    }
}

/// A stored row's pull request and item, read back (`what` names the row in an error).
fn stored_pr(
    repo: &str,
    number: i64,
    item: &str,
    what: &str,
) -> Result<(RepoName, PrNumber, ItemId), PortError> {
    let repo =
        RepoName::parse(repo).map_err(|e| PortError::internal(format!("stored {what}: {e}")))?;
    Ok((
        repo,
        PrNumber(u64::try_from(number).unwrap_or(0)),
        parse_item(item)?,
    ))
}

fn pr_key(pr: PrNumber) -> Result<i64, PortError> {
    i64::try_from(pr.0).map_err(|_| PortError::input(format!("pull request {pr} is out of range")))
}

fn parse_item(raw: &str) -> Result<ItemId, PortError> {
    ItemId::parse(raw).map_err(|e| PortError::internal(format!("stored report: {e}")))
}

#[async_trait]
impl PullRequests for EmbeddedPulls {
    #[instrument(skip_all, fields(repo = %repo, pr = %pr))]
    async fn get(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<PullRequest>, PortError> {
        let file = file::load(&self.base.file).await?;
        let found = file
            .pull_requests
            .into_iter()
            .find(|p| p.repo == repo.as_str() && PrNumber::parse(&p.number).ok() == Some(pr));
        if let Some(p) = &found {
            p.unambiguous(&self.base.file)?;
        }
        Ok(found.map(|p| PullRequest {
            repo: repo.clone(),
            number: pr,
            head_branch: p.head,
            open: p.open,
            url: p.url,
        }))
    }

    #[instrument(skip_all, fields(repo = %repo, pr = %pr, item = %report.item))]
    async fn upsert_report(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        report: &Report,
    ) -> Result<(), PortError> {
        self.known(repo, pr).await?;
        let repo = repo.as_str().to_owned();
        let number = pr_key(pr)?;
        let item = report.item.as_str().to_owned();
        let markdown = redact(&report.markdown);
        let now = self.base.clock.now().0;
        let revision: i64 = self
            .base.db
            .call(move |c| {
                c.query_row(
                    "INSERT INTO pr_reports (repo, number, item, markdown, revision, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)
                     ON CONFLICT (repo, number) DO UPDATE SET
                        item = excluded.item,
                        markdown = excluded.markdown,
                        revision = pr_reports.revision + 1,
                        updated_at = excluded.updated_at
                     RETURNING revision",
                    params![repo, number, item, markdown, now],
                    |r| r.get(0),
                )
                .map_err(DbError::from)
            })
            .await?;
        info!(revision, "pull request report written");
        Ok(())
    }

    #[instrument(skip_all, fields(repo = %repo, pr = %pr, item = %comment.item))]
    async fn comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment: &Report,
    ) -> Result<(), PortError> {
        self.known(repo, pr).await?;
        let repo = repo.as_str().to_owned();
        let number = pr_key(pr)?;
        let item = comment.item.as_str().to_owned();
        let body = redact(&comment.markdown);
        let now = self.base.clock.now().0;
        self.base
            .db
            .call(move |c| {
                c.execute(
                    "INSERT INTO pr_comments (repo, number, item, body, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![repo, number, item, body, now],
                )
                .map_err(DbError::from)
            })
            .await?;
        info!("pull request comment posted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{FailureClass, ManualClock};
    use std::time::Duration;

    const BOARD: &str = r##"
items: []
pull_requests:
  - repo: acme/calc
    number: 1
    head: feature/subtract
    title: Subtract
  - repo: acme/calc
    number: "#2"
    head: feature/multiply
    open: false
    url: https://example.invalid/acme/calc/pull/2
"##;

    fn setup() -> (tempfile::TempDir, EmbeddedPulls, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.yaml");
        std::fs::write(&path, BOARD).unwrap();
        let db = EmbeddedDb::open_dir(&dir.path().join("state")).unwrap();
        let clock = ManualClock::default();
        let pulls = EmbeddedPulls::open(&path, db)
            .unwrap()
            .with_clock(Arc::new(clock.clone()));
        (dir, pulls, clock)
    }

    fn repo() -> RepoName {
        RepoName::parse("acme/calc").unwrap()
    }

    fn report(md: &str) -> Report {
        Report {
            item: ItemId::parse("CALC-1").unwrap(),
            markdown: md.into(),
        }
    }

    #[tokio::test]
    async fn pull_requests_come_from_the_file() {
        let (_dir, pulls, _) = setup();
        let pr = pulls.get(&repo(), PrNumber(1)).await.unwrap().unwrap();
        assert_eq!(pr.head_branch, "feature/subtract");
        assert!(pr.open);
        let pr2 = pulls.get(&repo(), PrNumber(2)).await.unwrap().unwrap();
        assert!(!pr2.open);
        assert_eq!(pr2.url, "https://example.invalid/acme/calc/pull/2");
        assert_eq!(pulls.get(&repo(), PrNumber(3)).await.unwrap(), None);
        let other = RepoName::parse("acme/other").unwrap();
        assert_eq!(pulls.get(&other, PrNumber(1)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_report_is_edited_in_place() {
        let (_dir, pulls, clock) = setup();
        assert_eq!(pulls.report(&repo(), PrNumber(1)).await.unwrap(), None);
        pulls
            .upsert_report(&repo(), PrNumber(1), &report("first"))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(60));
        pulls
            .upsert_report(&repo(), PrNumber(1), &report("second"))
            .await
            .unwrap();
        let (r, revision) = pulls.report(&repo(), PrNumber(1)).await.unwrap().unwrap();
        assert_eq!(r.markdown, "second");
        assert_eq!(revision, 2);
        let all = pulls.reports().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].revision, 2);
        assert_eq!(all[0].updated_at, clock.now());
        assert_eq!(all[0].number, PrNumber(1));
    }

    #[tokio::test]
    async fn reports_are_redacted_before_they_are_stored() {
        let (_dir, pulls, _) = setup();
        pulls
            .upsert_report(
                &repo(),
                PrNumber(2),
                &report("env: KIRO_API_KEY=ksk_secretsecretsecret GH=ghs_abcdefghijkl"),
            )
            .await
            .unwrap();
        let (r, _) = pulls.report(&repo(), PrNumber(2)).await.unwrap().unwrap();
        assert_eq!(r.markdown, "env: KIRO_API_KEY=[REDACTED] GH=[REDACTED]");
    }

    #[tokio::test]
    async fn a_report_on_an_unknown_pull_request_is_rejected() {
        let (_dir, pulls, _) = setup();
        let err = pulls
            .upsert_report(&repo(), PrNumber(9), &report("x"))
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::PermanentInput);
        assert!(err.message.contains("acme/calc #9"), "{err}");
        assert!(pulls.reports().await.unwrap().is_empty());
    }
    #[tokio::test]
    async fn every_comment_is_a_new_row_in_order_beside_the_report() {
        let (_dir, pulls, clock) = setup();
        assert!(pulls.comments().await.unwrap().is_empty());
        pulls
            .upsert_report(&repo(), PrNumber(1), &report("sticky"))
            .await
            .unwrap();
        pulls
            .comment(&repo(), PrNumber(1), &report("@octo-cat first"))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(60));
        pulls
            .comment(&repo(), PrNumber(1), &report("@octo-cat first"))
            .await
            .unwrap();
        pulls
            .comment(&repo(), PrNumber(2), &report("second PR"))
            .await
            .unwrap();
        let all = pulls.comments().await.unwrap();
        let shown: Vec<(u64, &str)> = all.iter().map(|c| (c.number.0, c.body.as_str())).collect();
        assert_eq!(
            shown,
            [
                (1, "@octo-cat first"),
                (1, "@octo-cat first"),
                (2, "second PR")
            ],
            "two calls with one text are two comments, in the order posted"
        );
        assert!(all[0].created_at < all[1].created_at);
        assert_eq!(all[0].item.as_str(), "CALC-1");
        assert_eq!(all[0].repo, repo());
        let (sticky, revision) = pulls.report(&repo(), PrNumber(1)).await.unwrap().unwrap();
        assert_eq!(
            (sticky.markdown.as_str(), revision),
            ("sticky", 1),
            "the report is untouched"
        );
    }

    #[tokio::test]
    async fn comments_are_redacted_and_refused_for_an_unknown_pull_request() {
        let (_dir, pulls, _) = setup();
        pulls
            .comment(
                &repo(),
                PrNumber(1),
                &report("@octo-cat failed: KIRO_API_KEY=ksk_secretsecretsecret"),
            )
            .await
            .unwrap();
        assert_eq!(
            pulls.comments().await.unwrap()[0].body,
            "@octo-cat failed: KIRO_API_KEY=[REDACTED]"
        );
        let err = pulls
            .comment(&repo(), PrNumber(9), &report("x"))
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::PermanentInput);
        assert!(err.message.contains("acme/calc #9"), "{err}");
        assert_eq!(pulls.comments().await.unwrap().len(), 1);
    }
}
