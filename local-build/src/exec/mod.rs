//! The phase executor: runs a parsed buildspec the way CodeBuild does, on this machine.
//!
//! Owns the shell processes of one build. Invariants:
//! - phases run in order INSTALL, PRE_BUILD, BUILD, POST_BUILD, each as ONE shell process
//!   running a generated script: a phase stops at its first failing command, its
//!   `finally` commands always run afterwards, and it fails if any of them failed;
//! - a failed INSTALL/PRE_BUILD with `on-failure: ABORT` ends the build; a failed BUILD
//!   still runs POST_BUILD (with `CODEBUILD_BUILD_SUCCEEDING=0`); `CONTINUE` goes on but
//!   the build still ends FAILED;
//! - the environment a phase leaves behind (captured with `env -0` from an EXIT trap,
//!   into a private file that is deleted once read) is the next phase's environment;
//! - all phase shells share one process group, which is killed (SIGTERM, then SIGKILL
//!   after a grace) on timeout, on stop and at the end of the build, so nothing a build
//!   started outlives it;
//! - everything the phases print goes to `<build dir>/build.log`.
//!
//! Commands run with `eval` in the phase's shell, so `cd` and plain assignments carry
//! to the next command as in CodeBuild; a command that calls `exit` ends its phase's
//! shell at once (its `finally` commands then do not run).
//!
//! This module runs the phases in order and decides how the build ended; `plan` holds
//! what a build is given and what it returns, `phase` runs one phase's shell, and
//! `script` generates it and reads back the environment it left.

mod phase;
mod plan;
mod script;

pub use plan::{ExecError, ExecOutcome, ExecPlan, LOG_FILE, SRC_DIR};
pub use script::{parse_env_dump, phase_script, resolve_shell, shell_quote};

use super::buildspec::{BuildSpec, OnFailure, PhaseName};
use kiro_protocol::BuildState;
use phase::{PhaseEnd, Run};
use plan::io_err;
use std::fs::OpenOptions;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, instrument};

/// Run `spec` as planned. `stop` turning true stops the build; `on_phase` is told each
/// phase as it starts, with the process group its shell runs in.
#[instrument(skip_all, fields(build = %plan.build_id))]
pub async fn execute(
    spec: &BuildSpec,
    plan: &ExecPlan,
    stop: watch::Receiver<bool>,
    on_phase: &mut (dyn FnMut(PhaseName, i32) + Send),
) -> Result<ExecOutcome, ExecError> {
    let src = plan.src_dir();
    std::fs::create_dir_all(&src).map_err(io_err(format!("cannot create {}", src.display())))?;
    let log_path = plan.log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(format!("cannot open {}", log_path.display())))?;

    let mut env = plan.base_env.clone();
    env.extend(spec.env.variables.clone());
    env.extend(plan.overrides.clone());
    env.insert("CODEBUILD_BUILD_ID".into(), plan.build_id.clone());
    env.insert(
        "CODEBUILD_SRC_DIR".into(),
        src.to_string_lossy().into_owned(),
    );
    env.insert(
        "CODEBUILD_SOURCE_VERSION".into(),
        plan.source_version.clone(),
    );
    env.insert(
        "CODEBUILD_START_TIME".into(),
        plan.start_time.millis().to_string(),
    );
    let shell = resolve_shell(
        spec.env.shell.as_deref(),
        env.get("PATH").map(String::as_str),
    );

    let mut run = Run {
        plan,
        spec,
        shell,
        log,
        env,
        pgid: None,
        deadline: Instant::now() + plan.timeout,
        stop,
    };
    run.log_line(&format!(
        "[Container] Build {} started with shell {}",
        plan.build_id, run.shell
    ));

    let mut failures: Vec<String> = Vec::new();
    let mut aborted_at: Option<PhaseName> = None;
    let mut last_phase = None;
    let mut interrupted: Option<(BuildState, String)> = None;
    for phase in &spec.phases {
        if let Some(at) = aborted_at {
            // Only a failed BUILD lets POST_BUILD run.
            if !(at == PhaseName::Build && phase.name == PhaseName::PostBuild) {
                run.log_line(&format!("[Container] Phase {} skipped", phase.name));
                continue;
            }
        }
        last_phase = Some(phase.name);
        run.env.insert(
            "CODEBUILD_BUILD_SUCCEEDING".into(),
            if failures.is_empty() { "1" } else { "0" }.into(),
        );
        match run.phase(phase, on_phase).await? {
            PhaseEnd::Succeeded => {}
            PhaseEnd::Failed(how) => {
                failures.push(format!("phase {} failed: {how}", phase.name));
                if phase.on_failure == OnFailure::Abort && aborted_at.is_none() {
                    aborted_at = Some(phase.name);
                }
            }
            PhaseEnd::TimedOut => {
                interrupted = Some((
                    BuildState::TimedOut,
                    format!(
                        "build timed out after {}s in phase {}",
                        plan.timeout.as_secs_f64(),
                        phase.name
                    ),
                ));
                break;
            }
            PhaseEnd::Stopped => {
                interrupted = Some((
                    BuildState::Stopped,
                    format!("build stopped in phase {}", phase.name),
                ));
                break;
            }
        }
    }
    run.kill_group().await;

    let exported = spec
        .env
        .exported_variables
        .iter()
        .filter_map(|k| run.env.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let (state, message) = match interrupted {
        Some((state, msg)) => (state, Some(msg)),
        None if failures.is_empty() => (BuildState::Succeeded, None),
        None => (BuildState::Failed, Some(failures.join("; "))),
    };
    run.log_line(&format!(
        "[Container] Build {} ended: {state}{}",
        plan.build_id,
        message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    ));
    info!(state = %state, "build ended");
    Ok(ExecOutcome {
        state,
        message,
        exported,
        last_phase,
    })
}

#[cfg(test)]
mod tests;
