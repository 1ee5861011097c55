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

use crate::config::{Backend, Config, Forge, ReportModeArg};
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::embedded::{EmbeddedBoard, EmbeddedDb, EmbeddedPulls, SqliteLeaseStore};
use kiro_github::gh::{
    FieldConfig, GithubBoard, GithubClient, GithubPulls, ProjectRef, ReportMode,
};
use kiro_protocol::env::{GITHUB_PROJECT, STATE_DIR};
use kiro_protocol::{Board, Failure, FailureClass, LeaseStore, PullRequests, SystemClock};
use kiro_runtime::MissingSetting;
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

fn unset(e: MissingSetting) -> Failure {
    missing(e.0)
}

/// Build the ports for `cfg`.
pub async fn ports(cfg: &Config) -> Result<Ports, Failure> {
    let db = match (&cfg.state_dir, cfg.backend, cfg.forge.forge) {
        (Some(dir), _, _) => Some(EmbeddedDb::open_dir(dir)?),
        (None, Backend::Aws, Forge::Github) => None,
        (None, _, _) => return Err(missing(&format!("{STATE_DIR} (embedded backend)"))),
    };
    let lease: Arc<dyn LeaseStore> = match cfg.backend {
        Backend::Embedded => Arc::new(SqliteLeaseStore::new(
            db.clone().ok_or_else(|| missing(STATE_DIR))?,
            Arc::new(SystemClock),
            Duration::ZERO,
        )?),
        Backend::Aws => {
            let aws = cfg.aws.settings().map_err(unset)?;
            let table = cfg.leases.table().map_err(unset)?;
            Arc::new(
                DynamoLeaseStore::connect(&aws, table, Arc::new(SystemClock), Duration::ZERO).await,
            )
        }
    };
    let (board, pulls): Forges = match cfg.forge.forge {
        Forge::Embedded => {
            let file = cfg
                .board_file
                .as_deref()
                .ok_or_else(|| missing("KIRO_BOARD_FILE (embedded forge)"))?;
            let db = db.ok_or_else(|| missing(STATE_DIR))?;
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
    let settings = cfg
        .github
        .settings()
        .map_err(|e| Failure::new(FailureClass::PermanentInput, e.to_string()))?;
    let project = cfg
        .forge
        .github_project
        .as_deref()
        .ok_or_else(|| missing(&format!("{GITHUB_PROJECT} (e.g. orgs/acme/7)")))?;
    let project = ProjectRef::parse(project)
        .map_err(|e| Failure::new(FailureClass::PermanentInput, e.to_string()))?;
    let mode = match cfg.report_mode {
        ReportModeArg::Comment => ReportMode::Comment,
        ReportModeArg::Body => ReportMode::BodySection,
    };
    // One client for both: they share its connections and (with an App) its token.
    let client = GithubClient::new(settings)?;
    let board = GithubBoard::with_client(client.clone(), project, FieldConfig::default());
    let pulls = GithubPulls::with_client(client, mode);
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
        cfg.backend = Backend::Aws;
        cfg.aws.region = Some("eu-west-1".into());
        assert!(failure(cfg.clone()).await.contains("KIRO_LEASE_TABLE"));
        cfg.backend = Backend::Embedded;
        cfg.forge.forge = Forge::Github;
        let reason = failure(cfg).await;
        assert!(
            reason.contains("KIRO_GITHUB_PROJECT") || reason.contains("GITHUB_TOKEN"),
            "{reason}"
        );
    }
}
