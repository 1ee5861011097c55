//! Wiring: the only place that builds adapters for the producer.
//!
//! Invariant: the rest of the producer sees ports (`Arc<dyn Board>`, `Arc<dyn WorkQueue>`,
//! `Arc<dyn Clock>`) only; which backend stands behind them is decided here, from the
//! [`Config`], once.

use crate::config::{BackendConfig, Config, ForgeConfig};
use anyhow::Context;
use kiro_backends::aws::sqs::SqsQueue;
use kiro_backends::embedded::{EmbeddedBoard, EmbeddedDb, QueueConfig, SqliteQueue};
use kiro_github::gh::{FieldConfig, GithubBoard, ProjectRef};
use kiro_producer::Producer;
use kiro_protocol::{Board, Clock, SystemClock, WorkQueue};
use std::sync::Arc;

/// Build the producer for `config`.
pub async fn producer(config: &Config) -> anyhow::Result<Producer> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let open_db = || {
        EmbeddedDb::open_dir(&config.state_dir).with_context(|| {
            format!(
                "cannot open the state database in {}",
                config.state_dir.display()
            )
        })
    };
    let board: Arc<dyn Board> = match &config.forge {
        ForgeConfig::Embedded { board_file } => Arc::new(
            EmbeddedBoard::open(board_file, open_db()?)
                .context("cannot open the board")?
                .with_clock(clock.clone()),
        ),
        ForgeConfig::Github { project } => {
            let settings = config.github.settings().context("GitHub settings")?;
            let project = ProjectRef::parse(project).context("KIRO_GITHUB_PROJECT")?;
            Arc::new(
                GithubBoard::new(settings, project, FieldConfig::default())
                    .context("cannot connect to the GitHub board")?,
            )
        }
    };
    let queue: Arc<dyn WorkQueue> = match &config.backend {
        BackendConfig::Aws { aws, queues } => {
            Arc::new(SqsQueue::connect(aws, queues.clone(), clock.clone()).await)
        }
        BackendConfig::Embedded => Arc::new(
            SqliteQueue::new(open_db()?, clock.clone(), QueueConfig::default())
                .context("cannot open the embedded queue")?,
        ),
    };
    Ok(Producer::new(board, queue, clock))
}
