//! Wiring: the only place that builds adapters for the worker's ports.
//!
//! Invariant: the pipeline only ever sees `Arc<dyn …>` ports; which backend serves them
//! is decided here, once, from the configuration:
//! - the lease store (the fence check): the embedded SQLite store in `KIRO_STATE_DIR`, or
//!   the DynamoDB table `KIRO_LEASE_TABLE` (`KIRO_BACKEND=aws`);
//! - the board and pull requests: the embedded board file and forge, or GitHub
//!   (`KIRO_FORGE=github`, Projects v2 board `KIRO_GITHUB_PROJECT`, sticky report).
//!
//! A missing setting is a `permanent-input` failure that names it.

use crate::config::{Config, Forge, LeaseBackend, ReportModeArg};
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::aws::settings::AwsSettings;
use kiro_backends::embedded::{EmbeddedBoard, EmbeddedPulls};
use kiro_backends::embedded::{EmbeddedDb, SqliteLeaseStore};
use kiro_github::gh::{
    FieldConfig, GithubBoard, GithubPulls, GithubSettings, ProjectRef, ReportMode,
};
use kiro_protocol::{Board, Failure, FailureClass, LeaseStore, PullRequests, SystemClock};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The ports the pipeline uses.
#[derive(Debug, Clone)]
pub struct Ports {
    pub lease: Arc<dyn LeaseStore>,
    pub board: Arc<dyn Board>,
    pub pulls: Arc<dyn PullRequests>,
}

fn missing(what: &str) -> Failure {
    Failure::new(FailureClass::PermanentInput, format!("{what} is not set"))
}

/// Build the ports for `cfg`.
pub async fn ports(cfg: &Config) -> Result<Ports, Failure> {
    let db = match (&cfg.state_dir, cfg.backend, cfg.forge) {
        (Some(dir), _, _) => Some(EmbeddedDb::open_dir(dir)?),
        (None, LeaseBackend::Aws, Forge::Github) => None,
        (None, _, _) => return Err(missing("KIRO_STATE_DIR (embedded backend)")),
    };
    let lease: Arc<dyn LeaseStore> = match cfg.backend {
        LeaseBackend::Embedded => Arc::new(SqliteLeaseStore::new(
            db.clone().ok_or_else(|| missing("KIRO_STATE_DIR"))?,
            Arc::new(SystemClock),
            Duration::ZERO,
        )?),
        LeaseBackend::Aws => {
            let region = cfg
                .aws_region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .filter(|r| !r.is_empty())
                .ok_or_else(|| missing("KIRO_AWS_REGION (or AWS_REGION)"))?;
            let table = cfg
                .lease_table
                .clone()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| missing("KIRO_LEASE_TABLE"))?;
            let mut aws = AwsSettings::new(region);
            if let Some(url) = cfg.aws_endpoint_url.clone().filter(|u| !u.is_empty()) {
                aws = aws.with_endpoint(url);
            }
            Arc::new(
                DynamoLeaseStore::connect(&aws, table, Arc::new(SystemClock), Duration::ZERO).await,
            )
        }
    };
    let (board, pulls): Forges = match cfg.forge {
        Forge::Embedded => {
            let file = cfg
                .board_file
                .as_deref()
                .ok_or_else(|| missing("KIRO_BOARD_FILE (embedded forge)"))?;
            let db = db.ok_or_else(|| missing("KIRO_STATE_DIR"))?;
            (
                Arc::new(EmbeddedBoard::open(file, db.clone())?),
                Arc::new(EmbeddedPulls::open(file, db)?),
            )
        }
        Forge::Github => github(cfg)?,
    };
    Ok(Ports {
        lease,
        board,
        pulls,
    })
}

/// A board and the pull requests that go with it.
type Forges = (Arc<dyn Board>, Arc<dyn PullRequests>);

/// The GitHub board and pull requests.
fn github(cfg: &Config) -> Result<Forges, Failure> {
    let settings = GithubSettings::from_env()
        .map_err(|e| Failure::new(FailureClass::PermanentInput, e.to_string()))?;
    let project = cfg
        .github_project
        .as_deref()
        .ok_or_else(|| missing("KIRO_GITHUB_PROJECT (e.g. orgs/acme/7)"))?;
    let project = ProjectRef::parse(project)
        .map_err(|e| Failure::new(FailureClass::PermanentInput, e.to_string()))?;
    let mode = match cfg.report_mode {
        ReportModeArg::Comment => ReportMode::Comment,
        ReportModeArg::Body => ReportMode::BodySection,
    };
    let board = GithubBoard::new(settings.clone(), project, FieldConfig::default())?;
    let pulls = GithubPulls::new(settings, mode)?;
    Ok((Arc::new(board), Arc::new(pulls)))
}

/// The embedded backend's ports over `state_dir` and `board_file`.
pub fn embedded(state_dir: &Path, board_file: &Path) -> Result<Ports, Failure> {
    let db = EmbeddedDb::open_dir(state_dir)?;
    let lease = SqliteLeaseStore::new(db.clone(), Arc::new(SystemClock), Duration::from_secs(0))?;
    let board = EmbeddedBoard::open(board_file, db.clone())?;
    let pulls = EmbeddedPulls::open(board_file, db)?;
    Ok(Ports {
        lease: Arc::new(lease),
        board: Arc::new(board),
        pulls: Arc::new(pulls),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn failure(cfg: Config) -> String {
        match ports(&cfg).await {
            Ok(_) => panic!("expected a failure"),
            Err(f) => {
                assert_eq!(f.class, FailureClass::PermanentInput);
                f.reason
            }
        }
    }

    #[tokio::test]
    async fn a_missing_setting_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::defaults();
        assert!(failure(cfg.clone()).await.contains("KIRO_STATE_DIR"));
        cfg.state_dir = Some(dir.path().to_path_buf());
        assert!(failure(cfg.clone()).await.contains("KIRO_BOARD_FILE"));
        cfg.backend = LeaseBackend::Aws;
        cfg.aws_region = Some("eu-west-1".into());
        assert!(failure(cfg.clone()).await.contains("KIRO_LEASE_TABLE"));
        cfg.backend = LeaseBackend::Embedded;
        cfg.forge = Forge::Github;
        let reason = failure(cfg).await;
        assert!(
            reason.contains("KIRO_GITHUB_PROJECT") || reason.contains("GITHUB_TOKEN"),
            "{reason}"
        );
    }
}
