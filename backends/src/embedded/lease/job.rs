//! Job-record writes on SQLite: one `BEGIN IMMEDIATE` transaction that checks the
//! fence, writes the item's row (over any, or only when there is none) and notes the
//! item on the lease row — or, for the last record of a hold, releases the lease.
//!
//! Invariant: no job row is written unless the lease row's owner and fence are the
//! caller's at that moment ([`check_current`] inside the same transaction).

use super::{SqliteLeaseStore, check_current, fence_sql, immediate};
use kiro_protocol::{JobRecord, Lease, LeaseError, PortError};
use rusqlite::{Connection, params};

/// What one job-record write does besides writing the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobWrite {
    /// Write over the item's record, if any.
    Upsert,
    /// Write only when the item has no record (`false`: nothing written).
    Create,
    /// Write over the item's record and release the lease, in one transaction.
    UpsertAndRelease,
}

impl SqliteLeaseStore {
    /// The one fenced job-record write: one transaction that checks the fence, writes the
    /// record (as `how` says) and notes the item on the lease row, or releases it.
    pub(super) async fn write_job(
        &self,
        lease: &Lease,
        job: &JobRecord,
        how: JobWrite,
    ) -> Result<bool, LeaseError> {
        if job.project != lease.project {
            return Err(LeaseError::Port(PortError::input(format!(
                "job record for project {} written under the lease of {}",
                job.project, lease.project
            ))));
        }
        let now = self.clock.now();
        let lease = lease.clone();
        let job = job.clone();
        let json = serde_json::to_string(&job)
            .map_err(|e| PortError::internal(format!("cannot encode job record: {e}")))?;
        let fence = fence_sql(job.fence)?;
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                if let Err(e) = check_current(&tx, &lease) {
                    return Ok(Err(e));
                }
                if how == JobWrite::Create {
                    let exists = tx
                        .prepare_cached("SELECT 1 FROM lease_jobs WHERE project = ?1 AND item = ?2")
                        .and_then(|mut s| {
                            s.exists(params![job.project.as_str(), job.item.as_str()])
                        })?;
                    if exists {
                        return Ok(Ok(false));
                    }
                }
                upsert_job(&tx, &job, fence, &json)?;
                let (project, item) = (job.project.as_str(), job.item.as_str());
                if how == JobWrite::UpsertAndRelease {
                    tx.prepare_cached(
                        "UPDATE lease_rows SET current_item = ?2, owner = NULL, expires_at = ?3
                         WHERE project = ?1",
                    )
                    .and_then(|mut s| s.execute(params![project, item, now.0]))?;
                } else {
                    tx.prepare_cached("UPDATE lease_rows SET current_item = ?2 WHERE project = ?1")
                        .and_then(|mut s| s.execute(params![project, item]))?;
                }
                tx.commit()?;
                Ok(Ok(true))
            })
            .await?
    }
}

/// Write `job`'s row (`json` its encoding, `fence` the fence it is written under) over
/// the item's row, if any: the one statement every job-record write uses.
pub(super) fn upsert_job(
    tx: &Connection,
    job: &JobRecord,
    fence: i64,
    json: &str,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO lease_jobs (project, item, message_id, fence, state, build_id,
                                 updated_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(project, item) DO UPDATE SET
           message_id = excluded.message_id, fence = excluded.fence,
           state = excluded.state, build_id = excluded.build_id,
           updated_at = excluded.updated_at, record = excluded.record",
    )
    .and_then(|mut s| {
        s.execute(params![
            job.project.as_str(),
            job.item.as_str(),
            job.message_id.as_str(),
            fence,
            job.state.as_str(),
            job.build_id.as_ref().map(|b| b.as_str()),
            job.updated_at.0,
            json
        ])
    })
    .map(|_| ())
}
