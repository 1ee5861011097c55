//! Wiring: the only place that builds adapters for the worker's ports.
//!
//! Invariant: the pipeline only ever sees `Arc<dyn …>` ports; which backend serves them
//! is decided here, once, from the configuration. Today the embedded backend (state
//! directory + board file) is the only one.

use crate::config::Config;
use kiro_backends::embedded::{EmbeddedDb, SqliteLeaseStore};
use kiro_github::{EmbeddedBoard, EmbeddedPulls};
use kiro_protocol::{Board, Failure, FailureClass, LeaseStore, PullRequests, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// The ports the pipeline uses.
#[derive(Debug, Clone)]
pub struct Ports {
    pub lease: Arc<dyn LeaseStore>,
    pub board: Arc<dyn Board>,
    pub pulls: Arc<dyn PullRequests>,
}

/// Build the ports for `cfg`.
pub fn ports(cfg: &Config) -> Result<Ports, Failure> {
    let (Some(state_dir), Some(board_file)) = (&cfg.state_dir, &cfg.board_file) else {
        return Err(Failure::new(
            FailureClass::PermanentInput,
            "no backend configured: set KIRO_STATE_DIR and KIRO_BOARD_FILE (embedded backend)",
        ));
    };
    embedded(state_dir, board_file)
}

/// The embedded backend's ports over `state_dir` and `board_file`.
pub fn embedded(
    state_dir: &std::path::Path,
    board_file: &std::path::Path,
) -> Result<Ports, Failure> {
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
