//! `kiro-local-build`: runs ONE recorded local build to its end.
//!
//! Launched detached by the local build runner (`LocalBuildRunner::start`), never by
//! humans: it reads the build's row from the state database, runs the buildspec's
//! phases, and records the final state, the exported variables and a message. SIGTERM
//! stops the build (recorded STOPPED). Thin glue over
//! `kiro_local_build::run_recorded_build`.

use anyhow::Context;
use clap::Parser;
use kiro_local_build::run_recorded_build;
use kiro_protocol::{BuildId, BuildState};
use kiro_statedb::EmbeddedDb;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs one build recorded by the local build runner (launched by `kiro-consumer`'s
/// embedded backend, not by humans). The build's log is `<state>/builds/<id>/build.log`.
#[derive(Debug, Parser)]
#[command(name = "kiro-local-build", version)]
struct Args {
    /// The state database (`<state dir>/kiro.db`).
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// The id of the recorded build to run (e.g. `local:calc:3`).
    #[arg(long, value_name = "ID")]
    build_id: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let db = EmbeddedDb::open(&args.db)
        .with_context(|| format!("opening the state database {}", args.db.display()))?;
    let state = run_recorded_build(db, &BuildId::new(args.build_id.clone()))
        .await
        .with_context(|| format!("running build {}", args.build_id))?;
    Ok(if state == BuildState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
