//! [`run_recorded_build`]: what the `kiro-local-build` process does — claim the recorded
//! build, run its phases, record how it ended.
//!
//! Invariant: only this process writes IN_PROGRESS and the outcome of its build; it
//! handles SIGTERM before anything else, so a stop is always recorded STOPPED, and it
//! ends its whole process tree before recording the build done.

use super::config::KILL_GRACE;
use super::table::{SCHEMA, read_rows_sync, record_end};
use crate::buildspec::{BuildSpec, PhaseName};
use crate::exec::{self, ExecPlan};
use crate::process;
use kiro_protocol::{BuildId, BuildState, Clock, PortError, SystemClock};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::params;
use std::collections::BTreeMap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, instrument, warn};

/// The environment a recorded build starts from: this (launcher) process's own, which
/// the runner set up (inherited or minimal, plus its `base_env`).
fn launcher_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Run the recorded build `id` to its end and record how it ended: what the
/// `kiro-local-build` process does. SIGTERM (sent by [`BuildRunner::stop`](kiro_protocol::BuildRunner::stop)) stops the
/// build, which is then recorded STOPPED. Returns the final state.
#[instrument(skip_all, fields(build = %id))]
pub async fn run_recorded_build(db: EmbeddedDb, id: &BuildId) -> Result<BuildState, PortError> {
    // First of all, so a stop never kills this process before it can record STOPPED.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| PortError::internal(format!("cannot handle SIGTERM: {e}")))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if term.recv().await.is_some() {
            info!("SIGTERM: stopping the build");
            let _ = stop_tx.send(true);
        }
    });
    // Before anything is spawned: every process the build starts stays in this tree.
    if let Err(e) = process::become_subreaper() {
        warn!(error = %e, "cannot become a child subreaper; orphans of the build may outlive it");
    }

    db.migrate(SCHEMA)?;
    let key = id.as_str().to_owned();
    let row = read_rows_sync(&db, &key)?
        .ok_or_else(|| PortError::input(format!("unknown build {key}")))?;
    if row.state != BuildState::Queued {
        return Err(PortError::input(format!(
            "build {key} is {} already; it runs only once",
            row.state
        )));
    }
    let clock = SystemClock;
    let started_at = clock.now();
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let claimed = db.call_sync(|c| {
        c.execute(
            "UPDATE builds SET state = 'IN_PROGRESS', pid = ?1, pid_start = ?2, boot_id = ?3,
                               started_at = ?4
             WHERE id = ?5 AND state = 'QUEUED'",
            params![
                me,
                process::start_time(me).map(|s| s as i64),
                process::boot_id(),
                started_at.millis(),
                key
            ],
        )
        .map_err(DbError::from)
    })?;
    if claimed != 1 {
        return Err(PortError::input(format!(
            "build {key} was claimed by another process"
        )));
    }
    if row.stop_requested || *stop_rx.borrow() {
        return record_end(
            &db,
            &key,
            BuildState::Stopped,
            Some("build stopped before it started"),
            None,
            &BTreeMap::new(),
        );
    }

    let plan = ExecPlan {
        build_id: key.clone(),
        build_dir: row.build_dir.clone(),
        base_env: launcher_env(),
        overrides: row.env.clone(),
        source_version: row.source_version.clone(),
        start_time: started_at,
        timeout: row.timeout,
        kill_grace: KILL_GRACE,
    };
    let spec = match BuildSpec::load(&row.buildspec) {
        Ok(spec) => spec,
        Err(e) => {
            let message = format!("phase DOWNLOAD_SOURCE failed: {e}");
            let _ = std::fs::create_dir_all(&row.build_dir);
            if let Err(w) = std::fs::write(plan.log_path(), format!("[Container] {message}\n")) {
                warn!(error = %w, "cannot write the build log");
            }
            return record_end(
                &db,
                &key,
                BuildState::Failed,
                Some(&message),
                None,
                &BTreeMap::new(),
            );
        }
    };
    let phase_db = db.clone();
    let phase_key = key.clone();
    let mut on_phase = move |phase: PhaseName, pgid: i32| {
        // A short local write, in the build's own process.
        let written = phase_db.call_sync(|c| {
            c.execute(
                "UPDATE builds SET phase = ?1, pgid = ?2 WHERE id = ?3",
                params![phase.as_str(), pgid, phase_key],
            )
            .map_err(DbError::from)
        });
        if let Err(e) = written {
            warn!(error = %e, "cannot record the current phase");
        }
    };
    let ran = exec::execute(&spec, &plan, stop_rx, &mut on_phase).await;
    // Nothing the build started may outlive it (an agent in its own process group, a
    // worker's orphan, a daemon): end the whole tree before the build is recorded done.
    process::end_tree(me, KILL_GRACE).await;
    match ran {
        Ok(outcome) => record_end(
            &db,
            &key,
            outcome.state,
            outcome.message.as_deref(),
            outcome.last_phase.map(|p| p.as_str()),
            &outcome.exported,
        ),
        Err(e) => {
            error!(error = %e, "the build could not run");
            record_end(
                &db,
                &key,
                BuildState::Fault,
                Some(&e.to_string()),
                None,
                &BTreeMap::new(),
            )
        }
    }
}
