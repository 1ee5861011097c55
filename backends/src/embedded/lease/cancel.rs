//! `SqliteLeaseStore::cancel`: an item's `cancelled` record, written without holding the
//! lease, with the fence bump that makes every earlier holder stale.
//!
//! Invariant: one `BEGIN IMMEDIATE` transaction reads the lease row (and, when it names
//! another item, that item's record), decides with [`cancel_bumps`], and writes the
//! record — with the fence bumped by one and the lease released when it bumps, so fences
//! still only ever grow by one per write that moves them and no stale fence can write.
//! Sessions are never touched: the holder keeps its other leases.

use super::{SqliteLeaseStore, decode_record, fence_sql, immediate, read_row, upsert_job};
use kiro_protocol::ports::lease::cancel_bumps;
use kiro_protocol::{Cancellation, Fence, JobRecord, LeaseError, PortError};
use kiro_statedb::DbError;
use rusqlite::{OptionalExtension, params};

impl SqliteLeaseStore {
    pub(super) async fn cancel_row(&self, job: &JobRecord) -> Result<Cancellation, LeaseError> {
        let now = self.clock.now();
        let mut job = job.clone();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let row = read_row(&tx, job.project.as_str())?;
                let current = match row.as_ref().and_then(|r| r.current_item.as_deref()) {
                    Some(other) if other != job.item.as_str() => {
                        let raw: Option<String> = tx
                            .prepare_cached(
                                "SELECT record FROM lease_jobs WHERE project = ?1 AND item = ?2",
                            )
                            .and_then(|mut s| {
                                s.query_row(params![job.project.as_str(), other], |r| r.get(0))
                                    .optional()
                            })?;
                        raw.as_deref().map(decode_record).transpose()?
                    }
                    _ => None,
                };
                let bumps = cancel_bumps(
                    row.as_ref().and_then(|r| r.current_item.as_deref()),
                    &job.item,
                    current.as_ref(),
                );
                let fence = match (&row, bumps) {
                    (None, _) => Fence(1),
                    (Some(r), true) => Fence(r.fence.0.saturating_add(1)),
                    (Some(r), false) => r.fence,
                };
                job.fence = fence;
                let json = serde_json::to_string(&job)
                    .map_err(|e| PortError::internal(format!("cannot encode job record: {e}")))?;
                let fence_value = fence_sql(fence)?;
                if bumps {
                    tx.prepare_cached(
                        "INSERT INTO lease_rows (project, owner, fence, expires_at, current_item)
                         VALUES (?1, NULL, ?2, ?3, ?4)
                         ON CONFLICT(project) DO UPDATE SET
                           owner = NULL, fence = excluded.fence,
                           expires_at = excluded.expires_at,
                           current_item = excluded.current_item",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            job.project.as_str(),
                            fence_value,
                            now.0,
                            job.item.as_str()
                        ])
                    })?;
                }
                upsert_job(&tx, &job, fence_value, &json).map_err(DbError::from)?;
                tx.commit()?;
                Ok(Ok(Cancellation {
                    fence,
                    bumped: bumps,
                }))
            })
            .await?
    }
}
