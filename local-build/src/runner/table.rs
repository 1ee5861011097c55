//! The `builds` table: recording a new build under its idempotency key, reading rows,
//! and the conditional writes of a final state.
//!
//! Invariant: a final state is written only over QUEUED or IN_PROGRESS, so the first
//! final state of a build wins, whoever writes it (the build process or a runner).

use super::config::{DEFAULT_TIMEOUT, LocalBuildConfig, build_dir};
use crate::exec::LOG_FILE;
use kiro_protocol::{
    BuildId, BuildRequest, BuildState, BuildStatus, Clock, PortError, SystemClock, Timestamp,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tracing::info;

/// The `builds` table (one row per build; see [`super`]).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS builds (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    project         TEXT NOT NULL,
    item            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    source_version  TEXT NOT NULL,
    state           TEXT NOT NULL,
    phase           TEXT,
    env_json        TEXT NOT NULL,
    timeout_ms      INTEGER NOT NULL,
    buildspec       TEXT NOT NULL,
    build_dir       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    ended_at        INTEGER,
    pid             INTEGER,
    pid_start       INTEGER,
    pgid            INTEGER,
    boot_id         TEXT,
    stop_requested  INTEGER NOT NULL DEFAULT 0,
    exported_json   TEXT,
    message         TEXT
);
CREATE INDEX IF NOT EXISTS builds_project ON builds (project, seq);
";

/// What `start` found or made.
pub(super) enum Started {
    Existing(String),
    New(String),
}

pub(super) fn record_build(
    c: &mut Connection,
    req: &BuildRequest,
    config: &LocalBuildConfig,
    now: Timestamp,
) -> Result<Started, DbError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<String> = tx
        .query_row(
            "SELECT id FROM builds WHERE idempotency_key = ?1",
            params![req.idempotency_key],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(Started::Existing(id));
    }
    let seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM builds", [], |r| {
        r.get(0)
    })?;
    let id = format!("local:{}:{seq}", req.project);
    let env_json = serde_json::to_string(&req.env)
        .map_err(|e| PortError::internal(format!("cannot encode build environment: {e}")))?;
    let build_dir = build_dir(&config.state_dir, &BuildId::new(id.clone()));
    tx.execute(
        "INSERT INTO builds (seq, id, project, item, idempotency_key, source_version, state,
                             env_json, timeout_ms, buildspec, build_dir, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'QUEUED', ?7, ?8, ?9, ?10, ?11)",
        params![
            seq,
            id,
            req.project.as_str(),
            req.item.as_str(),
            req.idempotency_key,
            req.source_version.as_str(),
            env_json,
            i64::try_from(req.timeout.unwrap_or(DEFAULT_TIMEOUT).as_millis()).unwrap_or(i64::MAX),
            config.buildspec.to_string_lossy(),
            build_dir.to_string_lossy(),
            now.millis(),
        ],
    )?;
    tx.commit()?;
    Ok(Started::New(id))
}

/// One `builds` row.
#[derive(Debug, Clone)]
pub(super) struct BuildRow {
    pub(super) id: String,
    pub(super) state: BuildState,
    pub(super) phase: Option<String>,
    pub(super) source_version: String,
    pub(super) env: BTreeMap<String, String>,
    pub(super) timeout: Duration,
    pub(super) buildspec: PathBuf,
    pub(super) build_dir: PathBuf,
    pub(super) created_at: Timestamp,
    pub(super) started_at: Option<Timestamp>,
    pub(super) ended_at: Option<Timestamp>,
    pub(super) pid: Option<i32>,
    pub(super) pid_start: Option<u64>,
    pub(super) pgid: Option<i32>,
    pub(super) boot_id: Option<String>,
    pub(super) stop_requested: bool,
    pub(super) exported: BTreeMap<String, String>,
    pub(super) message: Option<String>,
}

impl BuildRow {
    pub(super) fn to_status(&self) -> BuildStatus {
        BuildStatus {
            id: BuildId::new(self.id.clone()),
            state: self.state,
            phase: self.phase.clone(),
            started_at: self.started_at.unwrap_or(self.created_at),
            ended_at: self.ended_at,
            exported: self.exported.clone(),
            log: Some(self.build_dir.join(LOG_FILE).to_string_lossy().into_owned()),
            message: self.message.clone(),
        }
    }
}

const ROW_COLUMNS: &str = "id, state, phase, source_version, env_json, timeout_ms, buildspec,
    build_dir, created_at, started_at, ended_at, pid, pid_start, pgid, boot_id,
    stop_requested, exported_json, message";

fn json_map(text: Option<String>) -> BTreeMap<String, String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<BuildRow> {
    let state: String = r.get(1)?;
    Ok(BuildRow {
        id: r.get(0)?,
        // An unreadable state is treated as a fault rather than a running build.
        state: BuildState::parse(&state).unwrap_or(BuildState::Fault),
        phase: r.get(2)?,
        source_version: r.get(3)?,
        env: json_map(r.get(4)?),
        timeout: Duration::from_millis(u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0)),
        buildspec: PathBuf::from(r.get::<_, String>(6)?),
        build_dir: PathBuf::from(r.get::<_, String>(7)?),
        created_at: Timestamp(r.get(8)?),
        started_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
        ended_at: r.get::<_, Option<i64>>(10)?.map(Timestamp),
        pid: r.get(11)?,
        pid_start: r
            .get::<_, Option<i64>>(12)?
            .and_then(|s| u64::try_from(s).ok()),
        pgid: r.get(13)?,
        boot_id: r.get(14)?,
        stop_requested: r.get::<_, i64>(15)? != 0,
        exported: json_map(r.get(16)?),
        message: r.get(17)?,
    })
}

/// The rows for `ids`, in one query.
pub(super) fn read_rows(
    c: &Connection,
    ids: &[String],
) -> Result<BTreeMap<String, BuildRow>, DbError> {
    let ids_json = serde_json::to_string(ids)
        .map_err(|e| PortError::internal(format!("cannot encode build ids: {e}")))?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM builds WHERE id IN (SELECT value FROM json_each(?1))"
    ))?;
    let rows = stmt.query_map(params![ids_json], row_from)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let row = row?;
        out.insert(row.id.clone(), row);
    }
    Ok(out)
}

/// Write a final state unless the row already has one. True when this call wrote it.
pub(super) fn finish_row(
    c: &Connection,
    id: &str,
    state: BuildState,
    message: &str,
    now: Timestamp,
) -> Result<bool, DbError> {
    let n = c.execute(
        "UPDATE builds SET state = ?1, message = ?2, ended_at = ?3
             WHERE id = ?4 AND state IN ('QUEUED', 'IN_PROGRESS')",
        params![state.as_str(), message, now.millis(), id],
    )?;
    Ok(n == 1)
}

pub(super) fn read_rows_sync(db: &EmbeddedDb, id: &str) -> Result<Option<BuildRow>, PortError> {
    db.call_sync(|c| Ok(read_rows(c, &[id.to_owned()])?.remove(id)))
}

pub(super) fn record_end(
    db: &EmbeddedDb,
    id: &str,
    state: BuildState,
    message: Option<&str>,
    phase: Option<&str>,
    exported: &BTreeMap<String, String>,
) -> Result<BuildState, PortError> {
    let exported_json = serde_json::to_string(exported)
        .map_err(|e| PortError::internal(format!("cannot encode exported variables: {e}")))?;
    let now = SystemClock.now();
    db.call_sync(|c| {
        c.execute(
            "UPDATE builds SET state = ?1, message = ?2, phase = COALESCE(?3, phase),
                               exported_json = ?4, ended_at = ?5
             WHERE id = ?6 AND state IN ('QUEUED', 'IN_PROGRESS')",
            params![
                state.as_str(),
                message,
                phase,
                exported_json,
                now.millis(),
                id
            ],
        )
        .map_err(DbError::from)
    })?;
    info!(state = %state, "build recorded");
    Ok(state)
}
