//! One build's running state ([`Run`]): a phase's shell started in the build's process
//! group, waited for against the deadline and the stop signal, and killed with its group.
//!
//! Invariant: every phase shell joins the build's one process group (the first creates
//! it), and a timed-out or stopped phase leaves nothing running: SIGTERM to the group, a
//! grace, then SIGKILL.

use super::plan::{ExecError, ExecPlan, io_err};
use super::script::{SHELL_OWNED, parse_env_dump, phase_script};
use crate::buildspec::{BuildSpec, Phase, PhaseName};
use crate::process::{self, SIGKILL, SIGTERM};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How one phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PhaseEnd {
    Succeeded,
    Failed(String),
    TimedOut,
    Stopped,
}

/// One build's running state.
pub(super) struct Run<'a> {
    pub(super) plan: &'a ExecPlan,
    pub(super) spec: &'a BuildSpec,
    pub(super) shell: String,
    pub(super) log: File,
    pub(super) env: BTreeMap<String, String>,
    /// The process group all phase shells join (created by the first one).
    pub(super) pgid: Option<i32>,
    pub(super) deadline: Instant,
    pub(super) stop: watch::Receiver<bool>,
}

impl Run<'_> {
    pub(super) fn log_line(&mut self, line: &str) {
        if let Err(e) = writeln!(self.log, "{line}") {
            warn!(error = %e, "cannot write to the build log");
        }
    }

    fn spawn(&self, script: &Path, group: i32) -> std::io::Result<Child> {
        let out = self.log.try_clone()?;
        let err = self.log.try_clone()?;
        Command::new(&self.shell)
            .arg(script)
            .current_dir(self.plan.src_dir())
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(group)
            .spawn()
    }

    pub(super) async fn phase(
        &mut self,
        phase: &Phase,
        on_phase: &mut (dyn FnMut(PhaseName, i32) + Send),
    ) -> Result<PhaseEnd, ExecError> {
        let dir = &self.plan.build_dir;
        let script = dir.join(format!("phase-{}.sh", phase.name.key()));
        let env_file = dir.join(format!(".env-{}", phase.name.key()));
        let fail_file = dir.join(format!(".fail-{}", phase.name.key()));
        for f in [&env_file, &fail_file] {
            // Leftovers of an earlier run would be read as this run's results.
            let _ = std::fs::remove_file(f);
        }
        std::fs::write(
            &script,
            phase_script(
                phase,
                &self.spec.env.exported_variables,
                &env_file,
                &fail_file,
            ),
        )
        .map_err(io_err(format!("cannot write {}", script.display())))?;
        self.log_line(&format!("\n[Container] Entering phase {}", phase.name));

        // Join the build's process group while it exists (so background processes of
        // earlier phases stay in it); otherwise start a new one.
        let joined = match self.pgid.filter(|g| process::group_exists(*g)) {
            Some(g) => match self.spawn(&script, g) {
                Ok(c) => Some(c),
                Err(e) => {
                    debug!(error = %e, "cannot join the build's process group; starting a new one");
                    None
                }
            },
            None => None,
        };
        let mut child = match joined {
            Some(c) => c,
            None => {
                let c = self
                    .spawn(&script, 0)
                    .map_err(io_err(format!("cannot start {}", self.shell)))?;
                self.pgid = c.id().and_then(|p| i32::try_from(p).ok());
                c
            }
        };
        let pgid = self.pgid.unwrap_or(0);
        on_phase(phase.name, pgid);

        let mut stop = self.stop.clone();
        let stopped = async move {
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let end = tokio::select! {
            status = child.wait() => {
                let status = status.map_err(io_err("cannot wait for the phase shell"))?;
                self.finished(status, &fail_file)
            }
            () = tokio::time::sleep_until(self.deadline) => {
                self.kill_child(&mut child).await;
                PhaseEnd::TimedOut
            }
            () = stopped => {
                self.kill_child(&mut child).await;
                PhaseEnd::Stopped
            }
        };
        self.absorb_env(&env_file);
        let _ = std::fs::remove_file(&fail_file);
        let state = match &end {
            PhaseEnd::Succeeded => "SUCCEEDED",
            PhaseEnd::Failed(_) => "FAILED",
            PhaseEnd::TimedOut => "TIMED_OUT",
            PhaseEnd::Stopped => "STOPPED",
        };
        self.log_line(&format!(
            "[Container] Phase complete: {} State: {state}",
            phase.name
        ));
        Ok(end)
    }

    fn finished(&self, status: ExitStatus, fail_file: &Path) -> PhaseEnd {
        if status.success() {
            return PhaseEnd::Succeeded;
        }
        if let Ok(how) = std::fs::read_to_string(fail_file)
            && !how.is_empty()
        {
            return PhaseEnd::Failed(how);
        }
        PhaseEnd::Failed(match status.code() {
            Some(code) => format!("the shell exited with status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!(
                    "the shell was killed by signal {}",
                    status.signal().unwrap_or(0)
                )
            }
        })
    }

    /// Take over the environment the phase left behind (if it managed to write it).
    fn absorb_env(&mut self, env_file: &Path) {
        match std::fs::read(env_file) {
            Ok(bytes) => {
                let _ = std::fs::remove_file(env_file);
                let mut next = parse_env_dump(&bytes);
                for k in SHELL_OWNED {
                    next.remove(k);
                }
                self.env = next;
            }
            Err(e) => debug!(error = %e, "the phase left no environment; keeping the previous one"),
        }
    }

    /// SIGTERM the build's group, give the shell `kill_grace` to exit, then SIGKILL
    /// whatever is left.
    async fn kill_child(&mut self, child: &mut Child) {
        if let Some(pgid) = self.pgid
            && let Err(e) = process::signal_group(pgid, SIGTERM)
        {
            warn!(error = %e, pgid, "cannot signal the build's process group");
        }
        if tokio::time::timeout(self.plan.kill_grace, child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
        }
        if let Some(pgid) = self.pgid
            && process::group_exists(pgid)
            && let Err(e) = process::signal_group(pgid, SIGKILL)
        {
            warn!(error = %e, pgid, "cannot kill the build's process group");
        }
        let _ = child.wait().await;
    }

    /// Kill whatever is left in the build's process group: SIGTERM, a grace, SIGKILL.
    pub(super) async fn kill_group(&mut self) {
        let Some(pgid) = self.pgid else { return };
        if !process::group_exists(pgid) {
            return;
        }
        if let Err(e) = process::signal_group(pgid, SIGTERM) {
            warn!(error = %e, pgid, "cannot signal the build's process group");
        }
        let give_up = Instant::now() + self.plan.kill_grace;
        while process::group_exists(pgid) && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if process::group_exists(pgid)
            && let Err(e) = process::signal_group(pgid, SIGKILL)
        {
            warn!(error = %e, pgid, "cannot kill the build's process group");
        }
    }
}
