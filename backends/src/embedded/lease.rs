//! The embedded lease store: consumer sessions, per-project leases held by a session
//! with fencing tokens, and job records, in SQLite.
//!
//! Owns the tables `lease_sessions` (one row per session: expiry, ended), `lease_rows`
//! (one row per project: holding session, fence, current item; `expires_at` keeps the
//! holder session's expiry at the acquire, read only for a holder without a session row)
//! and `lease_jobs` (one [`JobRecord`] per (project, item), as JSON plus indexed columns).
//!
//! Invariants:
//! - every operation is one `BEGIN IMMEDIATE` transaction, so the read-check-write of
//!   an acquire (project row AND holder session) or a fenced write is atomic even across
//!   processes sharing the file;
//! - `acquire` succeeds only when there is no row, the row is released (owner NULL), or
//!   its holder session is not live (ended, or `expires_at + skew <= now`); it bumps the
//!   fence by one (a new row starts at 1), so fences of a project strictly increase and
//!   are never reused, and it ends the holder's session in the same transaction (writing
//!   an ended row for a holder that had none);
//! - `renew_session` succeeds while the session is not ended; `release` and `record`
//!   require the caller's owner AND fence to match the row; otherwise they fail and change
//!   nothing. `record` writes the job row and the lease's `current_item` together;
//! - `cancel` (`lease/cancel.rs`) reads and writes in one transaction, so it never needs
//!   the port's retries.

mod cancel;
mod job;

use async_trait::async_trait;
use job::{JobWrite, upsert_job};
use kiro_protocol::{
    Cancellation, Clock, Fence, ItemId, JobRecord, Lease, LeaseError, LeaseStore, LeaseView,
    PortError, ProjectKey, Session, SessionView, Timestamp,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS lease_sessions (
    id         TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    ended      INTEGER NOT NULL DEFAULT 0
);
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
    /// Create the lease tables if needed. `skew` is the clock-skew bound: a lease can be
    /// taken from an expired session only `skew` after the session's expiry.
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

fn read_session(c: &Connection, id: &str) -> Result<Option<SessionView>, DbError> {
    c.prepare_cached("SELECT expires_at, ended FROM lease_sessions WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row(params![id], |r| {
                Ok(SessionView {
                    id: id.to_owned(),
                    expires_at: Timestamp(r.get(0)?),
                    ended: r.get::<_, i64>(1)? != 0,
                })
            })
            .optional()
        })
        .map_err(DbError::from)
}

/// The expiry of the session holding `row`, when it is live at `now` (`None`: the lease
/// can be taken). A holder without a session row is judged by the row's own expiry.
fn live_holder(
    c: &Connection,
    row: &Row,
    now: Timestamp,
    skew: Duration,
) -> Result<Option<(String, Timestamp)>, DbError> {
    let Some(holder) = &row.owner else {
        return Ok(None);
    };
    let expires_at = match read_session(c, holder)? {
        Some(s) if s.ended => return Ok(None),
        Some(s) => s.expires_at,
        None => row.expires_at,
    };
    Ok((expires_at.plus(skew) > now).then(|| (holder.clone(), expires_at)))
}

fn session_lost(session: &Session) -> LeaseError {
    LeaseError::SessionLost {
        session: session.id.clone(),
    }
}

fn decode_record(raw: &str) -> Result<JobRecord, PortError> {
    serde_json::from_str(raw)
        .map_err(|e| PortError::internal(format!("unreadable job record: {e}")))
}

#[async_trait]
impl LeaseStore for SqliteLeaseStore {
    #[instrument(skip_all, fields(session = %id))]
    async fn open_session(&self, id: &str, ttl: Duration) -> Result<Session, LeaseError> {
        let session = Session {
            id: id.to_owned(),
            expires_at: self.clock.now().plus(ttl),
        };
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                if read_session(&tx, &session.id)?.is_some() {
                    return Ok(Err(LeaseError::Port(PortError::input(format!(
                        "session id {} was already used",
                        session.id
                    )))));
                }
                tx.prepare_cached(
                    "INSERT INTO lease_sessions (id, expires_at, ended) VALUES (?1, ?2, 0)",
                )
                .and_then(|mut s| s.execute(params![session.id, session.expires_at.0]))?;
                tx.commit()?;
                Ok(Ok(session))
            })
            .await?
    }

    #[instrument(skip_all, fields(session = %session.id))]
    async fn renew_session(&self, session: &Session, ttl: Duration) -> Result<Session, LeaseError> {
        let renewed = Session {
            id: session.id.clone(),
            expires_at: self.clock.now().plus(ttl),
        };
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                match read_session(&tx, &renewed.id)? {
                    Some(s) if !s.ended => {}
                    _ => return Ok(Err(session_lost(&renewed))),
                }
                tx.prepare_cached("UPDATE lease_sessions SET expires_at = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![renewed.id, renewed.expires_at.0]))?;
                tx.commit()?;
                Ok(Ok(renewed))
            })
            .await?
    }

    #[instrument(skip_all, fields(session = %session.id))]
    async fn end_session(&self, session: &Session) -> Result<(), LeaseError> {
        let session = session.clone();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                if read_session(&tx, &session.id)?.is_none() {
                    return Ok(Err(session_lost(&session)));
                }
                tx.prepare_cached("UPDATE lease_sessions SET ended = 1 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![session.id]))?;
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?
    }

    async fn session(&self, id: &str) -> Result<Option<SessionView>, PortError> {
        let id = id.to_owned();
        self.db.call(move |c| read_session(c, &id)).await
    }

    #[instrument(skip_all, fields(project = %project, session = %session.id))]
    async fn acquire(&self, project: &ProjectKey, session: &Session) -> Result<Lease, LeaseError> {
        let now = self.clock.now();
        let skew = self.skew;
        let project = project.clone();
        let session = session.clone();
        self.db
            .call(move |c| {
                let tx = immediate(c)?;
                let row = read_row(&tx, project.as_str())?;
                let fence = match &row {
                    None => Fence(1),
                    Some(r) => {
                        if let Some((holder, expires_at)) = live_holder(&tx, r, now, skew)? {
                            return Ok(Err(LeaseError::Held {
                                project,
                                holder,
                                fence: r.fence,
                                expires_at,
                            }));
                        }
                        if let Some(holder) = &r.owner {
                            // A takeover: the holder's session expired beyond the skew
                            // bound; end it, so it can never be renewed again.
                            // (A holder without a session row gets an ended one, so its id
                            // is never opened later.)
                            tx.prepare_cached(
                                "INSERT INTO lease_sessions (id, expires_at, ended)
                                 VALUES (?1, ?2, 1)
                                 ON CONFLICT(id) DO UPDATE SET ended = 1",
                            )
                            .and_then(|mut s| s.execute(params![holder, r.expires_at.0]))?;
                        }
                        Fence(r.fence.0.saturating_add(1))
                    }
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
                    s.execute(params![
                        project.as_str(),
                        session.id,
                        fence_value,
                        session.expires_at.0
                    ])
                })?;
                tx.commit()?;
                Ok(Ok(Lease {
                    project,
                    owner: session.id,
                    fence,
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
                        current_item,
                    })
                })
                .transpose()
            })
            .await
    }

    #[instrument(skip_all, fields(project = %lease.project, fence = %lease.fence, item = %job.item, state = %job.state))]
    async fn record(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        self.write_job(lease, job, JobWrite::Upsert)
            .await
            .map(|_| ())
    }

    #[instrument(skip_all, fields(project = %lease.project, item = %job.item, fence = %lease.fence))]
    async fn record_new(&self, lease: &Lease, job: &JobRecord) -> Result<bool, LeaseError> {
        self.write_job(lease, job, JobWrite::Create).await
    }

    #[instrument(skip_all, fields(project = %lease.project, item = %job.item, fence = %lease.fence))]
    async fn record_and_release(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        self.write_job(lease, job, JobWrite::UpsertAndRelease)
            .await
            .map(|_| ())
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

    #[instrument(skip_all, fields(project = %job.project, item = %job.item))]
    async fn cancel(&self, job: &JobRecord) -> Result<Cancellation, LeaseError> {
        self.cancel_row(job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{FailureClass, ManualClock, MessageId, TraceContext};

    fn store(skew: Duration) -> (tempfile::TempDir, ManualClock, SqliteLeaseStore) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::default();
        let db = EmbeddedDb::open_dir(dir.path()).unwrap();
        let store = SqliteLeaseStore::new(db, Arc::new(clock.clone()), skew).unwrap();
        (dir, clock, store)
    }

    #[tokio::test]
    async fn a_record_for_another_project_is_refused() {
        let (_dir, clock, store) = store(Duration::ZERO);
        let p = ProjectKey::parse("p").unwrap();
        let s = store
            .open_session("a", Duration::from_secs(10))
            .await
            .unwrap();
        let lease = store.acquire(&p, &s).await.unwrap();
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
    async fn same_session_cannot_acquire_twice_and_skew_delays_takeover() {
        let (_dir, clock, store) = store(Duration::from_secs(2));
        let p = ProjectKey::parse("p").unwrap();
        let a = store
            .open_session("a", Duration::from_secs(10))
            .await
            .unwrap();
        let l1 = store.acquire(&p, &a).await.unwrap();
        assert!(matches!(
            store.acquire(&p, &a).await,
            Err(LeaseError::Held { .. })
        ));
        clock.advance(Duration::from_secs(11));
        let b = store
            .open_session("b", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(store.acquire(&p, &b).await.is_err());
        clock.advance(Duration::from_secs(1));
        let l2 = store.acquire(&p, &b).await.unwrap();
        assert_eq!(l2.fence, Fence(l1.fence.0 + 1));
        assert!(store.session("a").await.unwrap().unwrap().ended);
    }

    /// A lease row written before sessions (its owner has no session row) is judged by
    /// its own expiry, so consumers of this version respect it.
    #[tokio::test]
    async fn a_holder_without_a_session_row_is_judged_by_the_row_expiry() {
        let (_dir, clock, store) = store(Duration::from_secs(2));
        let p = ProjectKey::parse("p").unwrap();
        let ghost = Session {
            id: "old-consumer".into(),
            expires_at: clock.now().plus(Duration::from_secs(10)),
        };
        let old = store.acquire(&p, &ghost).await.unwrap();
        let b = store
            .open_session("b", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(matches!(
            store.acquire(&p, &b).await,
            Err(LeaseError::Held { ref holder, .. }) if holder == "old-consumer"
        ));
        clock.advance(Duration::from_secs(12));
        let taken = store.acquire(&p, &b).await.unwrap();
        assert_eq!(taken.fence, Fence(old.fence.0 + 1));
    }
}
