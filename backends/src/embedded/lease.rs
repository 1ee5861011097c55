//! The embedded lease store: per-project leases with fencing tokens, and job records,
//! in SQLite.
//!
//! Owns the tables `lease_rows` (one row per project: owner, fence, expiry, current
//! item) and `lease_jobs` (one [`JobRecord`] per (project, item), as JSON plus indexed
//! columns).
//!
//! Invariants:
//! - every operation is one `BEGIN IMMEDIATE` transaction, so the read-check-write of
//!   an acquire or a fenced write is atomic even across processes sharing the file;
//! - `acquire` succeeds only when there is no row, the row is released (owner NULL), or
//!   `expires_at + skew <= now`; it bumps the fence by one (a new row starts at 1), so
//!   fences of a project strictly increase and are never reused;
//! - `renew`, `release` and `record` require the caller's owner AND fence to match the
//!   row (a renew after expiry is allowed while nobody re-acquired); otherwise they fail
//!   with `FenceLost` and change nothing. `record` writes the job row and the lease's
//!   `current_item` together.

use async_trait::async_trait;
use kiro_protocol::{
    Clock, Fence, ItemId, JobRecord, Lease, LeaseError, LeaseStore, LeaseView, PortError,
    ProjectKey, Timestamp,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS lease_rows (
    project      TEXT PRIMARY KEY,
    owner        TEXT,
    fence        INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    current_item TEXT
);
CREATE TABLE IF NOT EXISTS lease_jobs (
    project    TEXT NOT NULL,
    item       TEXT NOT NULL,
    message_id TEXT NOT NULL,
    fence      INTEGER NOT NULL,
    state      TEXT NOT NULL,
    build_id   TEXT,
    updated_at INTEGER NOT NULL,
    record     TEXT NOT NULL,
    PRIMARY KEY (project, item)
);
CREATE INDEX IF NOT EXISTS lease_jobs_updated ON lease_jobs(project, updated_at);
CREATE INDEX IF NOT EXISTS lease_jobs_state ON lease_jobs(state);
"#;

/// The embedded [`LeaseStore`].
#[derive(Debug, Clone)]
pub struct SqliteLeaseStore {
    db: EmbeddedDb,
    clock: Arc<dyn Clock>,
    skew: Duration,
}

impl SqliteLeaseStore {
    /// Create the lease tables if needed. `skew` is the clock-skew bound: an expired
    /// lease can be taken only `skew` after its expiry.
    pub fn new(db: EmbeddedDb, clock: Arc<dyn Clock>, skew: Duration) -> Result<Self, PortError> {
        db.migrate(SCHEMA)?;
        Ok(SqliteLeaseStore { db, clock, skew })
    }

    pub fn skew(&self) -> Duration {
        self.skew
    }
}

/// A row of `lease_rows`.
#[derive(Debug, Clone)]
struct Row {
    owner: Option<String>,
    fence: Fence,
    expires_at: Timestamp,
    current_item: Option<String>,
}

fn fence_sql(f: Fence) -> Result<i64, PortError> {
    i64::try_from(f.0).map_err(|_| PortError::internal(format!("fence {f} out of range")))
}

fn immediate(c: &mut Connection) -> Result<Transaction<'_>, DbError> {
    Ok(c.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn read_row(c: &Connection, project: &str) -> Result<Option<Row>, DbError> {
    c.prepare_cached(
        "SELECT owner, fence, expires_at, current_item FROM lease_rows WHERE project = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![project], |r| {
            Ok(Row {
                owner: r.get(0)?,
                fence: Fence(u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)),
                expires_at: Timestamp(r.get(2)?),
                current_item: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(DbError::from)
}

/// Check that `lease` is still the current holder of its row.
fn check_current(c: &Connection, lease: &Lease) -> Result<(), LeaseError> {
    let row = read_row(c, lease.project.as_str()).map_err(PortError::from)?;
    match row {
        Some(r) if r.fence == lease.fence && r.owner.as_deref() == Some(lease.owner.as_str()) => {
            Ok(())
        }
        other => Err(LeaseError::FenceLost {
            project: lease.project.clone(),
            mine: lease.fence,
            current: other.map(|r| r.fence),
        }),
    }
}

fn decode_record(raw: &str) -> Result<JobRecord, PortError> {
    serde_json::from_str(raw)
        .map_err(|e| PortError::internal(format!("unreadable job record: {e}")))
}

#[async_trait]
impl LeaseStore for SqliteLeaseStore {
    #[instrument(skip_all, fields(project = %project, owner))]
    async fn acquire(
        &self,
        project: &ProjectKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, LeaseError> {
        let now = self.clock.now();
        let skew = self.skew;
        let project = project.clone();
        let owner = owner.to_owned();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let row = read_row(&tx, project.as_str())?;
                let expires_at = now.plus(ttl);
                let fence = match row {
                    None => Fence(1),
                    Some(r) => match r.owner {
                        Some(holder) if r.expires_at.plus(skew) > now => {
                            return Ok(Err(LeaseError::Held {
                                project,
                                holder,
                                fence: r.fence,
                                expires_at: r.expires_at,
                            }));
                        }
                        _ => Fence(r.fence.0.saturating_add(1)),
                    },
                };
                let fence_value = fence_sql(fence)?;
                tx.prepare_cached(
                    "INSERT INTO lease_rows (project, owner, fence, expires_at, current_item)
                     VALUES (?1, ?2, ?3, ?4, NULL)
                     ON CONFLICT(project) DO UPDATE SET
                       owner = excluded.owner, fence = excluded.fence,
                       expires_at = excluded.expires_at",
                )
                .and_then(|mut s| {
                    s.execute(params![project.as_str(), owner, fence_value, expires_at.0])
                })?;
                tx.commit()?;
                Ok(Ok(Lease {
                    project,
                    owner,
                    fence,
                    expires_at,
                }))
            })
            .await?
    }

    #[instrument(skip_all, fields(project = %lease.project, fence = %lease.fence))]
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, LeaseError> {
        let now = self.clock.now();
        let lease = lease.clone();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                if let Err(e) = check_current(&tx, &lease) {
                    return Ok(Err(e));
                }
                let expires_at = now.plus(ttl);
                tx.prepare_cached("UPDATE lease_rows SET expires_at = ?2 WHERE project = ?1")
                    .and_then(|mut s| s.execute(params![lease.project.as_str(), expires_at.0]))?;
                tx.commit()?;
                Ok(Ok(Lease {
                    expires_at,
                    ..lease
                }))
            })
            .await?
    }

    #[instrument(skip_all, fields(project = %lease.project, fence = %lease.fence))]
    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let now = self.clock.now();
        let lease = lease.clone();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                if let Err(e) = check_current(&tx, &lease) {
                    return Ok(Err(e));
                }
                tx.prepare_cached(
                    "UPDATE lease_rows SET owner = NULL, expires_at = ?2 WHERE project = ?1",
                )
                .and_then(|mut s| s.execute(params![lease.project.as_str(), now.0]))?;
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?
    }

    async fn get(&self, project: &ProjectKey) -> Result<Option<LeaseView>, PortError> {
        let project = project.clone();
        self.db
            .call(move |c| {
                let row = read_row(c, project.as_str())?;
                row.map(|r| {
                    let current_item = r
                        .current_item
                        .map(|i| {
                            ItemId::parse(&i)
                                .map_err(|e| PortError::internal(format!("stored item id: {e}")))
                        })
                        .transpose()?;
                    Ok(LeaseView {
                        project: project.clone(),
                        owner: r.owner,
                        fence: r.fence,
                        expires_at: r.expires_at,
                        current_item,
                    })
                })
                .transpose()
            })
            .await
    }

    #[instrument(skip_all, fields(project = %lease.project, fence = %lease.fence, item = %job.item, state = %job.state))]
    async fn record(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        if job.project != lease.project {
            return Err(LeaseError::Port(PortError::input(format!(
                "job record for project {} written under the lease of {}",
                job.project, lease.project
            ))));
        }
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
                })?;
                tx.prepare_cached("UPDATE lease_rows SET current_item = ?2 WHERE project = ?1")
                    .and_then(|mut s| {
                        s.execute(params![job.project.as_str(), job.item.as_str()])
                    })?;
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?
    }

    async fn job(
        &self,
        project: &ProjectKey,
        item: &ItemId,
    ) -> Result<Option<JobRecord>, PortError> {
        let project = project.clone();
        let item = item.clone();
        self.db
            .call(move |c| {
                let raw: Option<String> = c
                    .prepare_cached(
                        "SELECT record FROM lease_jobs WHERE project = ?1 AND item = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![project.as_str(), item.as_str()], |r| r.get(0))
                            .optional()
                    })?;
                Ok(raw.as_deref().map(decode_record).transpose()?)
            })
            .await
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        self.db
            .call(|c| {
                let raws = c
                    .prepare_cached(
                        "SELECT record FROM lease_jobs ORDER BY project, updated_at, item",
                    )
                    .and_then(|mut s| {
                        s.query_map([], |r| r.get::<_, String>(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })?;
                Ok(raws
                    .iter()
                    .map(|r| decode_record(r))
                    .collect::<Result<_, PortError>>()?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{FailureClass, ManualClock, MessageId, TraceContext};

    #[tokio::test]
    async fn a_record_for_another_project_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let store = SqliteLeaseStore::new(db, Arc::new(clock.clone()), Duration::ZERO).unwrap();
        let p = ProjectKey::parse("p").unwrap();
        let lease = store
            .acquire(&p, "a", Duration::from_secs(10))
            .await
            .unwrap();
        let job = JobRecord::new(
            ProjectKey::parse("q").unwrap(),
            ItemId::parse("i").unwrap(),
            MessageId::new("m"),
            lease.fence,
            TraceContext::default(),
            clock.now(),
        );
        let err = store.record(&lease, &job).await.unwrap_err();
        assert_eq!(err.class(), FailureClass::PermanentInput);
        assert!(store.jobs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn same_owner_cannot_acquire_twice_and_skew_delays_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let store =
            SqliteLeaseStore::new(db, Arc::new(clock.clone()), Duration::from_secs(2)).unwrap();
        let p = ProjectKey::parse("p").unwrap();
        let l1 = store
            .acquire(&p, "a", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(matches!(
            store.acquire(&p, "a", Duration::from_secs(10)).await,
            Err(LeaseError::Held { .. })
        ));
        clock.advance(Duration::from_secs(11));
        assert!(
            store
                .acquire(&p, "b", Duration::from_secs(10))
                .await
                .is_err()
        );
        clock.advance(Duration::from_secs(1));
        let l2 = store
            .acquire(&p, "b", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(l2.fence, Fence(l1.fence.0 + 1));
    }
}
