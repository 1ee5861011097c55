//! `kiro-consumer`: thin entry point. Parses the command line once, wires the backend,
//! and runs the engine or an operator command.

mod config;
mod dlq;
mod health;
mod wiring;

use anyhow::{Context, Result};
use clap::Parser;
use config::{Cli, Command, RunArgs};
use kiro_consumer::ops;
use kiro_consumer::{Engine, EngineConfig, Ports, RetryPolicy};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `run` makes spans; the embedded default keeps them beside its state.
    let span_dir = (matches!(cli.command, Command::Run(_))
        && cli.backend == config::Backend::Embedded)
        .then(|| kiro_telemetry::spans::span_dir(&cli.state_dir));
    // Operator commands print their own output (and progress bars): only warnings and
    // errors are logged unless RUST_LOG says otherwise.
    let default_filter = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    let telemetry = kiro_telemetry::init(
        kiro_telemetry::TelemetryConfig::new("kiro-consumer", cli.log_format)
            .with_span_dir(span_dir)
            .with_default_filter(default_filter),
    );
    let code = match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiro-consumer: {e:#}");
            if e.downcast_ref::<config::InvalidSetting>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    telemetry.shutdown();
    code
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    if let Command::Health {
        health_file,
        max_age,
    } = &cli.command
    {
        return Ok(health::check(health_file, *max_age));
    }
    let visibility = match &cli.command {
        Command::Run(a) => a.visibility,
        _ => std::time::Duration::from_secs(300),
    };
    let skew = match &cli.command {
        Command::Run(a) => a.lease_skew,
        _ => std::time::Duration::from_secs(2),
    };
    // Checked before anything is wired: a bad setting exits 2 at once.
    let build_timeout = match &cli.command {
        Command::Run(a) => {
            a.check()?;
            let runner = match cli.backend {
                config::Backend::Aws => cli.aws.build_runner,
                config::Backend::Embedded => config::BuildRunnerKind::Local,
            };
            config::build_timeout(runner, a.build_timeout)?
        }
        _ => None,
    };
    let wired = wiring::core(cli.backend, &cli.aws, &cli.state_dir, visibility, skew).await?;
    match cli.command {
        Command::Run(args) => run(&cli.state_dir, &cli.aws, wired, args, build_timeout).await,
        Command::Jobs { json } => {
            let jobs = wired.leases.jobs().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ops::jobs_json(&jobs))?);
            } else {
                print!("{}", ops::jobs_table(&jobs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            item,
            project,
            json,
        } => {
            let jobs = wired.leases.jobs().await?;
            match cli.backend {
                config::Backend::Embedded => {
                    let dir = kiro_telemetry::spans::span_dir(&cli.state_dir);
                    let traces = kiro_consumer::trace::embedded_traces(
                        &dir,
                        &jobs,
                        &item,
                        project.as_deref(),
                    )?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&traces)?);
                    } else {
                        print!("{}", kiro_consumer::trace::render_embedded(&traces));
                    }
                }
                config::Backend::Aws => {
                    let region = cli.aws.region()?;
                    print!(
                        "{}",
                        kiro_consumer::trace::aws_report(
                            &region,
                            &jobs,
                            &item,
                            project.as_deref()
                        )?
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { command } => {
            let show = ops::ShowContext {
                state_dir: (cli.backend == config::Backend::Embedded)
                    .then(|| cli.state_dir.clone()),
                aws_region: match cli.backend {
                    config::Backend::Aws => cli.aws.region().ok(),
                    config::Backend::Embedded => None,
                },
            };
            dlq::run(&*wired.queue, &*wired.clock, &show, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { .. } => Ok(ExitCode::SUCCESS),
        Command::Board { board, json } => {
            let b = kiro_backends::embedded::EmbeddedBoard::open(&board, wired.db.clone())?;
            let items = b.items().await?;
            // Everything shown comes from a human-edited file or from notes: redacted.
            use kiro_protocol::redact::redact;
            let status = |s: Option<kiro_protocol::ItemStatus>, raw: &str| {
                s.map(|s| s.to_string())
                    .unwrap_or_else(|| format!("{} (unknown status)", redact(raw)))
            };
            if json {
                let v: Vec<serde_json::Value> = items
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "project": redact(&i.item.project),
                            "item": redact(&i.item.id),
                            "title": redact(&i.item.title),
                            "status": status(i.status, &i.file_status),
                            "note": i.note.as_deref().map(redact),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|i| {
                        vec![
                            redact(&i.item.project),
                            redact(&i.item.id),
                            status(i.status, &i.file_status),
                            redact(i.note.as_deref().unwrap_or_default()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    ops::table(&["PROJECT", "ITEM", "STATUS", "NOTE"], &rows)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reports { board, json } => {
            let p = kiro_backends::embedded::EmbeddedPulls::open(&board, wired.db.clone())?;
            let reports = p.reports().await?;
            if json {
                let v: Vec<serde_json::Value> = reports
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "repo": r.repo,
                            "pr": r.number,
                            "item": r.report.item,
                            "revision": r.revision,
                            "markdown": r.report.markdown,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in reports {
                    println!(
                        "── {}{} (revision {}) ──\n{}\n",
                        r.repo, r.number, r.revision, r.report.markdown
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(
    state_dir: &std::path::Path,
    aws: &config::AwsArgs,
    wired: wiring::Wired,
    args: RunArgs,
    build_timeout: Option<std::time::Duration>,
) -> Result<ExitCode> {
    let wiring::RunParts {
        builds,
        board,
        build_env,
        protection,
    } = wiring::run_parts(&wired, aws, state_dir, &args).await?;
    let cfg = EngineConfig {
        max_jobs: args.max_jobs,
        receive_wait: args.receive_wait,
        lease_ttl: args.lease_ttl,
        visibility: args.visibility,
        renew_every: args.lease_ttl / 3,
        safety_margin: (args.lease_ttl / 10).max(std::time::Duration::from_millis(200)),
        poll_every: args.poll_every,
        build_timeout,
        contention_delay: args.lease_ttl,
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            base_delay: args.retry_base,
            max_delay: args.retry_max,
        },
        build_env,
        // `KIRO_METRICS=emf`: CloudWatch EMF lines on stdout; off by default.
        metrics: kiro_telemetry::metrics::MetricsMode::from_env().sink(),
        ..EngineConfig::default()
    };
    tracing::info!(owner = %cfg.owner, max_jobs = cfg.max_jobs, "consumer starting");
    let ports = Ports {
        queue: wired.queue,
        leases: wired.leases,
        builds,
        board,
        clock: wired.clock,
        protection,
    };
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone())?;
    let mut engine = Engine::new(cfg, ports);
    health::spawn_writer(args.health_file.clone(), engine.heartbeat(), cancel.clone());
    let stats = engine.run(cancel.clone(), args.until_idle).await;
    if let Some(m) = &engine.config().metrics {
        // Export what the OTLP reader still holds (EMF lines are already written).
        m.flush();
    }
    let t = &stats.totals;
    tracing::info!(
        started = t.started,
        adopted = t.adopted,
        succeeded = t.succeeded,
        retried = t.retried,
        dead_lettered = t.dead_lettered,
        handed_off = cancel.is_cancelled(),
        "consumer stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (ECS, the quick start) and SIGINT (a terminal) both start the handoff.
fn spawn_signal_handler(cancel: CancellationToken) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: handing jobs off"),
            _ = int.recv() => tracing::info!("SIGINT: handing jobs off"),
        }
        cancel.cancel();
    });
    Ok(())
}
