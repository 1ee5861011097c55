//! `kiro-producer`: parse the configuration, wire the adapters, tick once or on a period.
//!
//! Invariant: the binary is thin — the logic is in the library ([`Producer::tick`]); the
//! exit status is non-zero only when the configuration, the board or the queue could not
//! be used, never because items were rejected.

mod config;
mod wiring;

use anyhow::Context;
use clap::Parser;
use config::{Cli, Config, Mode};
use kiro_producer::{Producer, ProducerError, TickReport};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kiro-producer: {e}");
            return ExitCode::from(2);
        }
    };
    // The embedded default keeps spans beside its state for `kiro-consumer trace`.
    let span_dir = matches!(config.backend, config::BackendConfig::Embedded)
        .then(|| kiro_telemetry::spans::span_dir(&config.state_dir));
    let telemetry = kiro_telemetry::init(
        kiro_telemetry::TelemetryConfig::new("kiro-producer", config.log_format)
            .with_span_dir(span_dir),
    );
    let code = match run(config).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run(config: Config) -> anyhow::Result<ExitCode> {
    match config.mode {
        Mode::Once => once(&wiring::producer(&config).await?).await,
        Mode::Every(period) => {
            // Before wiring: a stop that arrives while the adapters are built ends the run
            // cleanly (the loop checks the token before its first tick).
            let cancel = kiro_runtime::shutdown::on_signal("stopping")
                .context("cannot install signal handlers")?;
            let producer = wiring::producer(&config).await?;
            producer.run(period, cancel, print_summary).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn once(producer: &Producer) -> anyhow::Result<ExitCode> {
    let report = producer.tick().await?;
    println!("kiro-producer: {report}");
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per tick on stdout.
fn print_summary(result: &Result<TickReport, ProducerError>) {
    match result {
        Ok(report) => println!("kiro-producer: {report}"),
        Err(e) => tracing::error!("producer tick failed: {e}"),
    }
}
