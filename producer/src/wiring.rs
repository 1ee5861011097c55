//! Wiring: the only place that builds adapters for the producer.
//!
//! Invariant: the rest of the producer sees ports (`Arc<dyn Board>`, `Arc<dyn WorkQueue>`,
//! `Arc<dyn Clock>`) only; which backend stands behind them is decided here, from the
//! [`Config`], once.

use crate::config::{BackendConfig, Config};
use anyhow::Context;
use kiro_backends::aws::settings::AwsSettings;
use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
use kiro_backends::embedded::{EmbeddedDb, QueueConfig, SqliteQueue};
use kiro_github::EmbeddedBoard;
use kiro_producer::Producer;
use kiro_protocol::{Clock, SystemClock};
use std::sync::Arc;

/// Build the producer for `config`.
pub async fn producer(config: &Config) -> anyhow::Result<Producer> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match &config.backend {
        BackendConfig::Aws {
            state_dir,
            board_file,
            region,
            endpoint_url,
            queue_url,
            dlq_url,
        } => {
            let db = EmbeddedDb::open_dir(state_dir).with_context(|| {
                format!("cannot open the state database in {}", state_dir.display())
            })?;
            let board = EmbeddedBoard::open(board_file, db)
                .context("cannot open the board")?
                .with_clock(clock.clone());
            let mut aws = AwsSettings::new(region.clone());
            aws.endpoint_url = endpoint_url.clone();
            let queue = SqsQueue::connect(
                &aws,
                SqsSettings::new(queue_url.clone(), dlq_url.clone()),
                clock.clone(),
            )
            .await;
            Ok(Producer::new(Arc::new(board), Arc::new(queue), clock))
        }
        BackendConfig::Embedded {
            state_dir,
            board_file,
        } => {
            let db = EmbeddedDb::open_dir(state_dir).with_context(|| {
                format!("cannot open the state database in {}", state_dir.display())
            })?;
            let board = EmbeddedBoard::open(board_file, db.clone())
                .context("cannot open the board")?
                .with_clock(clock.clone());
            let queue = SqliteQueue::new(db, clock.clone(), QueueConfig::default())
                .context("cannot open the embedded queue")?;
            Ok(Producer::new(Arc::new(board), Arc::new(queue), clock))
        }
    }
}
