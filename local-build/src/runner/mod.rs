//! `LocalBuildRunner`: the embedded [`BuildRunner`], builds as detached local processes
//! recorded in the `builds` table; and [`run_recorded_build`], what such a process runs.
//!
//! Invariants:
//! - one row per idempotency key (a UNIQUE column, checked and inserted in one IMMEDIATE
//!   transaction), so the same key never starts a second build, across processes too;
//! - a build runs in its own `kiro-local-build` process, in its own process group with
//!   no stdin, so it survives the process that started it; any runner on the same
//!   database answers for it (re-attach);
//! - only the build process writes IN_PROGRESS and the final state; a runner writes a
//!   final state only for a build whose process is gone (FAULT "build process vanished",
//!   or STOPPED when a stop was requested), and every final write is conditional on the
//!   row not being final yet, so the first final state wins;
//! - a build recorded but never launched (its starter died between the two) is launched
//!   by the next runner that asks for its status after [`LAUNCH_GRACE`]: a consumer's
//!   crash never turns a recorded build into a failed one (only one process ever claims
//!   a build, so a second launch is harmless);
//! - a pid is trusted only with its recorded start time (see [`super::process`]).
//!
//! This module is the runner's side (start, status, stop, re-attach); `config` holds its
//! settings and limits, `table` reads and writes `builds` rows, and `recorded`
//! ([`run_recorded_build`]) is the build process's side.

mod config;
mod recorded;
mod table;

pub use config::{
    DEFAULT_TIMEOUT, KILL_GRACE, LAUNCH_GRACE, LAUNCHER_NAME, LocalBuildConfig, SPAWN_GRACE,
    build_dir, locate_launcher,
};
pub use recorded::run_recorded_build;
pub use table::SCHEMA;

use super::buildspec::BuildSpec;
use super::exec::LOG_FILE;
use super::process::{self, SIGKILL, SIGTERM};
use async_trait::async_trait;
use config::MINIMAL_ENV;
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, Clock, PortError, Timestamp,
};
use kiro_statedb::EmbeddedDb;
use rusqlite::params;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use table::{BuildRow, Started, finish_row, read_rows, record_build};
use tracing::{debug, error, info, instrument, warn};

/// Runs buildspec.yml locally; see the module documentation.
#[derive(Debug, Clone)]
pub struct LocalBuildRunner {
    db: EmbeddedDb,
    clock: Arc<dyn Clock>,
    config: Arc<LocalBuildConfig>,
}

impl LocalBuildRunner {
    /// Create the `builds` table if needed and check the configuration: the buildspec
    /// must parse and the launcher must exist.
    pub fn new(
        db: EmbeddedDb,
        clock: Arc<dyn Clock>,
        config: LocalBuildConfig,
    ) -> Result<Self, PortError> {
        db.migrate(SCHEMA)?;
        BuildSpec::load(&config.buildspec).map_err(|e| PortError::input(e.to_string()))?;
        if !config.launcher.is_file() {
            return Err(PortError::input(format!(
                "the build launcher {} does not exist (build the kiro-local-build binary)",
                config.launcher.display()
            )));
        }
        Ok(LocalBuildRunner {
            db,
            clock,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &LocalBuildConfig {
        &self.config
    }

    /// Where build `id` keeps its log, sources and scripts.
    pub fn build_dir(&self, id: &BuildId) -> PathBuf {
        build_dir(&self.config.state_dir, id)
    }

    /// The build's log file.
    pub fn log_path(&self, id: &BuildId) -> PathBuf {
        self.build_dir(id).join(LOG_FILE)
    }
}

fn spawn_launcher(
    config: &LocalBuildConfig,
    db_path: &Path,
    id: &str,
    dir: &Path,
) -> std::io::Result<std::process::Child> {
    std::fs::create_dir_all(dir)?;
    // Appended: a launch that lost the race to claim the build shares the file.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("launcher.log"))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&config.launcher);
    cmd.arg("--db")
        .arg(db_path)
        .arg("--build-id")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if !config.inherit_env {
        cmd.env_clear();
        for k in MINIMAL_ENV {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
    }
    cmd.envs(&config.base_env);
    cmd.spawn()
}

/// Wait for the launcher in the background so it never lingers as a zombie.
fn reap(mut child: std::process::Child) {
    let spawned = std::thread::Builder::new()
        .name("kiro-build-reaper".into())
        .spawn(move || {
            if let Err(e) = child.wait() {
                warn!(error = %e, "cannot wait for a build process");
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a reaper thread; the build process will be reaped at exit");
    }
}

#[async_trait]
impl BuildRunner for LocalBuildRunner {
    #[instrument(skip_all, fields(project = %req.project, item = %req.item))]
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError> {
        let req = req.clone();
        let config = self.config.clone();
        let db_path = self.db.path().to_owned();
        let now = self.clock.now();
        self.db
            .call(move |c| {
                let started = record_build(c, &req, &config, now)?;
                let id = match started {
                    Started::Existing(id) => {
                        debug!(build = %id, "idempotency key already used; same build");
                        return Ok(BuildId::new(id));
                    }
                    Started::New(id) => id,
                };
                let build_id = BuildId::new(id.clone());
                launch(c, &config, &db_path, &id, now)?;
                Ok(build_id)
            })
            .await
    }

    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let now = self.clock.now();
        let config = self.config.clone();
        let db_path = self.db.path().to_owned();
        self.db
            .call(move |c| {
                let mut rows = read_rows(c, &ids)?;
                for row in rows.values_mut() {
                    if never_launched(row, now) {
                        warn!(build = %row.id, "recorded but never launched (its starter died?): launching it");
                        launch(c, &config, &db_path, &row.id, now)?;
                        if let Some(fresh) =
                            read_rows(c, std::slice::from_ref(&row.id))?.remove(&row.id)
                        {
                            *row = fresh;
                        }
                    }
                    if let Some((state, message)) = vanished(row, now) {
                        let changed = finish_row(c, &row.id, state, message, now)?;
                        if changed {
                            warn!(build = %row.id, state = %state, "{message}");
                            kill_leftovers(row);
                        }
                        if let Some(fresh) =
                            read_rows(c, std::slice::from_ref(&row.id))?.remove(&row.id)
                        {
                            *row = fresh;
                        }
                    }
                }
                // Answer in the order asked, once per known id.
                let mut seen = std::collections::BTreeSet::new();
                Ok(ids
                    .iter()
                    .filter(|id| seen.insert(id.as_str()))
                    .filter_map(|id| rows.get(id))
                    .map(BuildRow::to_status)
                    .collect())
            })
            .await
    }

    #[instrument(skip_all, fields(build = %id))]
    async fn stop(&self, id: &BuildId) -> Result<(), PortError> {
        let id = id.as_str().to_owned();
        self.db
            .call(move |c| {
                let row = read_rows(c, std::slice::from_ref(&id))?
                    .remove(&id)
                    .ok_or_else(|| PortError::input(format!("unknown build {id}")))?;
                if row.state.is_finished() {
                    return Ok(());
                }
                c.execute(
                    "UPDATE builds SET stop_requested = 1 WHERE id = ?1",
                    params![id],
                )?;
                if let Some(pid) = row.pid
                    && process::is_alive(pid, row.pid_start)
                {
                    // The build process leads its own group; it turns SIGTERM into
                    // "kill the phases, record STOPPED".
                    process::signal_group(pid, SIGTERM).map_err(|e| {
                        PortError::internal(format!("cannot signal build process {pid}: {e}"))
                    })?;
                }
                info!("stop requested");
                Ok(())
            })
            .await
    }
}

/// Spawn the process of the recorded build `id` and record its pid (unless the build
/// process already recorded its own); a spawn that fails ends the build FAULT with why.
/// Launching a build twice is harmless: only one process claims it (QUEUED → IN_PROGRESS)
/// and the other exits.
fn launch(
    c: &rusqlite::Connection,
    config: &LocalBuildConfig,
    db_path: &Path,
    id: &str,
    now: Timestamp,
) -> Result<(), kiro_statedb::DbError> {
    let dir = build_dir(&config.state_dir, &BuildId::new(id.to_owned()));
    match spawn_launcher(config, db_path, id, &dir) {
        Ok(child) => {
            let pid = i32::try_from(child.id()).unwrap_or(0);
            let started = process::start_time(pid).map(|s| s as i64);
            c.execute(
                "UPDATE builds SET pid = ?1, pid_start = ?2, boot_id = ?3
                 WHERE id = ?4 AND pid IS NULL",
                params![pid, started, process::boot_id(), id],
            )?;
            reap(child);
            info!(build = %id, pid, "build started");
        }
        Err(e) => {
            error!(build = %id, error = %e, "cannot start the build process");
            finish_row(
                c,
                id,
                BuildState::Fault,
                &format!(
                    "cannot start the build process {}: {e}",
                    config.launcher.display()
                ),
                now,
            )?;
        }
    }
    Ok(())
}

/// Whether `row` was recorded but its process never launched, longer than its starter
/// needs to launch it ([`LAUNCH_GRACE`]): the starter died in between, so whoever looks
/// launches it (unless a stop was asked: then it ends STOPPED, see [`vanished`]).
fn never_launched(row: &BuildRow, now: Timestamp) -> bool {
    row.state == BuildState::Queued
        && row.pid.is_none()
        && !row.stop_requested
        && now.since(row.created_at) > LAUNCH_GRACE
}

/// If `row` claims to be queued or running but its process is gone, the final state to
/// record and why.
fn vanished(row: &BuildRow, now: Timestamp) -> Option<(BuildState, &'static str)> {
    if row.state.is_finished() {
        return None;
    }
    let gone = match row.pid {
        Some(pid) => !process::is_alive(pid, row.pid_start),
        None => now.since(row.created_at) > SPAWN_GRACE,
    };
    if !gone {
        return None;
    }
    Some(if row.stop_requested {
        (
            BuildState::Stopped,
            "build stopped (its process ended before recording it)",
        )
    } else {
        (BuildState::Fault, "build process vanished")
    })
}

/// Kill what a vanished build process left running (its phase group), but only in the
/// boot the group was recorded in.
fn kill_leftovers(row: &BuildRow) {
    let same_boot = row.boot_id.is_some() && row.boot_id == process::boot_id();
    if let Some(pgid) = row.pgid
        && same_boot
        && process::group_exists(pgid)
        && let Err(e) = process::signal_group(pgid, SIGKILL)
    {
        warn!(build = %row.id, pgid, error = %e, "cannot kill the leftovers of a vanished build");
    }
}
