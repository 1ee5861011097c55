//! `kiro-worker` binary: parse the configuration, build the ports, run the pipeline,
//! write the outcome file.
//!
//! Invariant: the outcome file is written whatever happens (it carries any failure,
//! including a bad configuration or a SIGTERM, which stops the agent and the tests
//! first); the process exits 0 when it was written, 2 for a bad setting (one clap cannot
//! parse, or one outside its range: [`kiro_worker::ranges`], named by flag and variable
//! on stderr and in the outcome), 1 when even the outcome file could not be written.

use anyhow::Context;
use clap::Parser;
use kiro_protocol::{Failure, FailureClass, WorkerOutcome, env};
use kiro_worker::config::DEFAULT_OUTCOME_FILE;
use kiro_worker::{Cli, Command, outcome_file, wiring};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::SignalKind;

fn main() -> ExitCode {
    // In a local build of the embedded default the state directory is known: spans go
    // to its store, beside the producer's and the consumer's.
    let span_dir = std::env::var_os(env::STATE_DIR)
        .filter(|d| !d.is_empty())
        .map(|d| kiro_telemetry::spans::span_dir(std::path::Path::new(&d)));
    let telemetry = kiro_telemetry::init(
        kiro_telemetry::TelemetryConfig::new("kiro-worker", kiro_telemetry::LogFormat::Auto)
            .with_span_dir(span_dir),
    );
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiro-worker: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Exit status of a bad setting.
const BAD_SETTING: u8 = 2;

/// A bad configuration is still an outcome the consumer must see: write it, then exit 2.
fn bad_setting(path: &std::path::Path, reason: String) -> anyhow::Result<ExitCode> {
    let outcome = WorkerOutcome::failure(Failure::new(FailureClass::PermanentInput, reason));
    outcome_file::write(path, &outcome)
        .with_context(|| format!("cannot write the outcome file {}", path.display()))?;
    Ok(ExitCode::from(BAD_SETTING))
}

fn real_main() -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            let path = std::env::var_os(env::OUTCOME_FILE)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTCOME_FILE));
            return bad_setting(&path, format!("invalid worker configuration: {}", e.kind()));
        }
    };
    let Command::Run(cfg) = cli.command;
    if let Err(e) = kiro_worker::ranges::check(&cfg) {
        eprintln!("kiro-worker: {e}");
        return bad_setting(
            &cfg.outcome_path(),
            format!("invalid worker configuration: {e}"),
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let work = async {
            match wiring::ports(&cfg).await {
                Ok(ports) => kiro_worker::run(&cfg, &ports).await,
                Err(f) => {
                    tracing::error!(class = %f.class, reason = %f.reason, "cannot build the ports");
                    WorkerOutcome::failure(f)
                }
            }
        };
        let mut term = match tokio::signal::unix::signal(SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGTERM");
                return work.await;
            }
        };
        tokio::select! {
            outcome = work => outcome,
            _ = term.recv() => {
                // Dropping the pipeline ends the running step's whole process group (the
                // agent or the tests); the outcome is still written for the build to export.
                tracing::warn!("SIGTERM: stopping the agent and the tests");
                WorkerOutcome::failure(Failure::new(
                    FailureClass::Stopped,
                    "kiro-worker was stopped (SIGTERM) before it finished; its agent and tests were stopped",
                ))
            }
        }
    });
    let path = cfg.outcome_path();
    outcome_file::write(&path, &outcome)
        .with_context(|| format!("cannot write the outcome file {}", path.display()))?;
    tracing::info!(outcome = ?outcome.status, file = %path.display(), "outcome written");
    Ok(ExitCode::SUCCESS)
}
