//! `kiro-consumer`: thin entry point. Parses the command line once (`run`: into its typed
//! [`Config`]), wires the backend, and runs the engine or an operator command.

mod config;
mod dlq;
mod health;
mod wiring;

use anyhow::{Context, Result};
use clap::Parser;
use config::{Backend, Cli, Command, Config, Timing};
use kiro_consumer::ops;
use kiro_consumer::{Engine, Ports};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `run` makes spans; the embedded default keeps them beside its state.
    let span_dir = (matches!(cli.command, Command::Run(_))
        && cli.common.backend == Backend::Embedded)
        .then(|| kiro_telemetry::spans::span_dir(&cli.common.state_dir));
    // Operator commands print their own output (and progress bars): only warnings and
    // errors are logged unless RUST_LOG says otherwise.
    let default_filter = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    let telemetry = kiro_telemetry::init(
        kiro_telemetry::TelemetryConfig::new("kiro-consumer", cli.common.log_format)
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
    let Cli {
        common,
        aws,
        command,
    } = cli;
    match command {
        Command::Health {
            health_file,
            max_age,
        } => return Ok(health::check(&health_file, max_age)),
        // Checked before anything is wired: a bad setting exits 2 at once.
        Command::Run(args) => return run(Config::new(&common, aws, *args)?).await,
        _ => {}
    }
    let wired = wiring::core(common.backend, &aws, &common.state_dir, Timing::default()).await?;
    match command {
        Command::Jobs {
            json,
            item_agent_budget,
        } => {
            let jobs = wired.leases.jobs().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ops::jobs_json(&jobs))?);
            } else {
                print!("{}", ops::jobs_table(&jobs, item_agent_budget));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel {
            item,
            project,
            buildspec,
        } => {
            let runner = wiring::stopper(&wired, &aws, &common.state_dir, &buildspec).await;
            let runner = match runner {
                Ok(r) => Some(r),
                Err(why) => {
                    eprintln!("kiro-consumer: no build runner to stop a build with: {why}");
                    None
                }
            };
            let done = kiro_consumer::cancel::cancel_item(
                &*wired.leases,
                runner.as_deref(),
                &*wired.clock,
                &item,
                project.as_ref(),
            )
            .await?;
            print!("{}", kiro_consumer::cancel::describe(&done));
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            item,
            project,
            json,
        } => {
            let jobs = wired.leases.jobs().await?;
            match common.backend {
                Backend::Embedded => {
                    let dir = kiro_telemetry::spans::span_dir(&common.state_dir);
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
                Backend::Aws => {
                    let region = aws.aws.region()?;
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
                state_dir: (common.backend == Backend::Embedded).then(|| common.state_dir.clone()),
                aws_region: match common.backend {
                    Backend::Aws => aws.aws.region().ok(),
                    Backend::Embedded => None,
                },
            };
            dlq::run(&*wired.queue, &*wired.clock, &show, command).await?;
            Ok(ExitCode::SUCCESS)
        }
        // Handled above.
        Command::Run(_) | Command::Health { .. } => Ok(ExitCode::SUCCESS),
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
            let comments = p.comments().await?;
            if json {
                let v = ops::reports_json(&reports, &comments);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", ops::reports_text(&reports, &comments));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(config: Config) -> Result<ExitCode> {
    // SIGTERM (ECS, the quick start) and SIGINT (a terminal) both start the handoff. The
    // handlers come first: a stop that arrives while the adapters are wired ends the run
    // cleanly (nothing is held yet) instead of killing the process.
    let cancel = kiro_runtime::shutdown::on_signal("handing jobs off")
        .context("installing the SIGTERM and SIGINT handlers")?;
    let wired = wiring::core(
        config.backend,
        &config.aws,
        &config.state_dir,
        config.timing,
    )
    .await?;
    let wiring::RunParts {
        builds,
        board,
        pulls,
        build_env,
        protection,
    } = wiring::run_parts(&wired, &config).await?;
    // `KIRO_METRICS=emf`: CloudWatch EMF lines on stdout; off by default.
    let cfg = config.engine(build_env, config.metrics.sink());
    tracing::info!(owner = %cfg.owner, max_jobs = cfg.max_jobs, "consumer starting");
    let ports = Ports {
        queue: wired.queue,
        leases: wired.leases,
        builds,
        board,
        pulls,
        clock: wired.clock,
        protection,
    };
    let mut engine = Engine::new(cfg, ports);
    health::spawn_writer(
        config.health_file.clone(),
        engine.heartbeat(),
        cancel.clone(),
    );
    let until = if config.until_idle {
        kiro_consumer::RunUntil::Idle
    } else {
        kiro_consumer::RunUntil::Shutdown
    };
    let stats = engine.run(cancel.clone(), until).await;
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
