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
//! - a pid is trusted only with its recorded start time (see [`super::process`]).

use super::SCHEMA;
use super::buildspec::BuildSpec;
use super::exec::{self, ExecPlan, LOG_FILE};
use super::process::{self, SIGKILL, SIGTERM};
use async_trait::async_trait;
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, Clock, PortError, SystemClock,
    Timestamp,
};
use kiro_statedb::{DbError, EmbeddedDb};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{debug, error, info, instrument, warn};

/// How long a build whose process was never recorded may stay QUEUED before it is
/// declared vanished (covers the moment between recording a build and spawning it).
pub const SPAWN_GRACE: Duration = Duration::from_secs(30);

/// The time limit of a build whose request sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How long a killed build's processes get between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Environment variables a build keeps when `inherit_env` is off.
const MINIMAL_ENV: [&str; 6] = ["PATH", "HOME", "USER", "LANG", "TMPDIR", "TZ"];

/// Configuration of the local runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBuildConfig {
    /// The state directory; builds live in `<state_dir>/builds/<build dir>/`.
    pub state_dir: PathBuf,
    /// The buildspec every build runs (read when the build starts).
    pub buildspec: PathBuf,
    /// The `kiro-local-build` binary.
    pub launcher: PathBuf,
    /// Extra environment for every build, on top of the inherited one (the buildspec's
    /// `env.variables` and the request's overrides win over it). Passed to the build
    /// process directly, never stored in the database.
    pub base_env: BTreeMap<String, String>,
    /// Whether builds inherit this process's environment, like a local CI runner
    /// (default). When off they get only `PATH`, `HOME`, `USER`, `LANG`, `TMPDIR`, `TZ`.
    pub inherit_env: bool,
}

impl LocalBuildConfig {
    pub fn new(
        state_dir: impl Into<PathBuf>,
        buildspec: impl Into<PathBuf>,
        launcher: impl Into<PathBuf>,
    ) -> Self {
        LocalBuildConfig {
            state_dir: state_dir.into(),
            buildspec: buildspec.into(),
            launcher: launcher.into(),
            base_env: BTreeMap::new(),
            inherit_env: true,
        }
    }
}

/// The file name of the build launcher binary.
pub const LAUNCHER_NAME: &str = "kiro-local-build";

/// Find the `kiro-local-build` binary: next to the running executable (or one level up,
/// for test binaries in `target/<profile>/deps`), else on `PATH`.
pub fn locate_launcher() -> Option<PathBuf> {
    let beside_exe = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?.to_owned();
        [dir.join(LAUNCHER_NAME), dir.parent()?.join(LAUNCHER_NAME)]
            .into_iter()
            .find(|p| p.is_file())
    });
    beside_exe.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(LAUNCHER_NAME))
                .find(|p| p.is_file())
        })
    })
}

/// The directory of build `id` under `state_dir` (`:` becomes `_`).
pub fn build_dir(state_dir: &Path, id: &BuildId) -> PathBuf {
    state_dir
        .join("builds")
        .join(id.as_str().replace([':', '/'], "_"))
}

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

/// What `start` found or made.
enum Started {
    Existing(String),
    New(String),
}

fn spawn_launcher(
    config: &LocalBuildConfig,
    db_path: &Path,
    id: &str,
    dir: &Path,
) -> std::io::Result<std::process::Child> {
    std::fs::create_dir_all(dir)?;
    let out = File::create(dir.join("launcher.log"))?;
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
                let dir = build_dir(&config.state_dir, &build_id);
                match spawn_launcher(&config, &db_path, &id, &dir) {
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
                            &id,
                            BuildState::Fault,
                            &format!(
                                "cannot start the build process {}: {e}",
                                config.launcher.display()
                            ),
                            now,
                        )?;
                    }
                }
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
        self.db
            .call(move |c| {
                let mut rows = read_rows(c, &ids)?;
                for row in rows.values_mut() {
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

fn record_build(
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
struct BuildRow {
    id: String,
    state: BuildState,
    phase: Option<String>,
    source_version: String,
    env: BTreeMap<String, String>,
    timeout: Duration,
    buildspec: PathBuf,
    build_dir: PathBuf,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    pid: Option<i32>,
    pid_start: Option<u64>,
    pgid: Option<i32>,
    boot_id: Option<String>,
    stop_requested: bool,
    exported: BTreeMap<String, String>,
    message: Option<String>,
}

impl BuildRow {
    fn to_status(&self) -> BuildStatus {
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
fn read_rows(c: &Connection, ids: &[String]) -> Result<BTreeMap<String, BuildRow>, DbError> {
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

/// Write a final state unless the row already has one. True when this call wrote it.
fn finish_row(
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

/// The environment a recorded build starts from: this (launcher) process's own, which
/// the runner set up (inherited or minimal, plus its `base_env`).
fn launcher_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Run the recorded build `id` to its end and record how it ended: what the
/// `kiro-local-build` process does. SIGTERM (sent by [`BuildRunner::stop`]) stops the
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
    let mut on_phase = move |phase: super::buildspec::PhaseName, pgid: i32| {
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

fn read_rows_sync(db: &EmbeddedDb, id: &str) -> Result<Option<BuildRow>, PortError> {
    db.call_sync(|c| Ok(read_rows(c, &[id.to_owned()])?.remove(id)))
}

fn record_end(
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
