//! The dead-letter console (`kiro-consumer dlq …`): list, show, replay, redrive and
//! purge, for either backend, through the `WorkQueue` port only.
//!
//! Invariants: nothing changes without a confirmation (`--yes`, or a `y` typed on a
//! terminal; with stdin not a terminal and no `--yes` the command refuses before
//! touching anything); replay moves one message per port call, in dead-letter order,
//! so an interrupted replay leaves every message either still dead-lettered or back in
//! its group, and writes one audit line per message on stdout. Progress goes to stderr
//! and only when stdout is a terminal.

use crate::config::DlqCommand;
use anyhow::{Context, Result, bail};
use kiro_consumer::ops::{self, ShowContext};
use kiro_protocol::{Clock, DeadLetterEntry, DlqSelection, MessageId, WorkQueue};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// The most letters any console command reads.
const READ_LIMIT: usize = 100_000;

/// Run one `dlq` subcommand.
pub async fn run(
    queue: &dyn WorkQueue,
    clock: &dyn Clock,
    show: &ShowContext,
    command: DlqCommand,
) -> Result<()> {
    match command {
        DlqCommand::List { json, limit } => {
            let entries = queue.dlq_list(limit).await?;
            let now = clock.now();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&ops::dlq_json(&entries, now))?
                );
            } else if entries.is_empty() {
                println!("the dead-letter queue is empty");
            } else {
                print!("{}", ops::dlq_table(&entries, now));
            }
        }
        DlqCommand::Show { id, json } => {
            let entries = queue.dlq_list(READ_LIMIT).await?;
            let e = DeadLetterEntry::find(&entries, &id)
                .with_context(|| format!("no dead letter {id}"))?;
            let now = clock.now();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&ops::dlq_show_json(e, now, show))?
                );
            } else {
                print!("{}", ops::dlq_show(e, now, show));
            }
        }
        DlqCommand::Replay {
            ids,
            project,
            class,
            older_than,
            all,
            dry_run,
            rate,
            yes,
        } => {
            let selection = DlqSelection {
                ids: ids.into_iter().map(MessageId::new).collect(),
                project,
                class,
                older_than,
                all,
            };
            replay(queue, clock, &selection, dry_run, rate, yes).await?;
        }
        DlqCommand::Redrive { yes } => {
            let waiting = queue.depth().await?.dead_letters;
            if waiting == 0 {
                println!("the dead-letter queue is empty");
                return Ok(());
            }
            confirm(yes, &format!("move {waiting} dead letter(s) back"))?;
            let moved = queue.dlq_redrive().await?;
            println!("redrove {moved} message(s)");
        }
        DlqCommand::Purge { yes } => {
            let waiting = queue.depth().await?.dead_letters;
            confirm(yes, &format!("delete {waiting} dead letter(s) for good"))?;
            let purged = queue.dlq_purge().await?;
            println!("purged {purged} dead letter(s)");
        }
    }
    Ok(())
}

/// Replay the selected letters one at a time, at most `rate` per second.
async fn replay(
    queue: &dyn WorkQueue,
    clock: &dyn Clock,
    selection: &DlqSelection,
    dry_run: bool,
    rate: f64,
    yes: bool,
) -> Result<()> {
    let now = clock.now();
    let selected: Vec<DeadLetterEntry> = queue
        .dlq_list(READ_LIMIT)
        .await?
        .into_iter()
        .filter(|e| selection.matches(e, now))
        .collect();
    if dry_run {
        for e in &selected {
            println!(
                "would replay {} project={} item={} class={}",
                e.id,
                e.group,
                ops::item_of(e),
                e.letter.class
            );
        }
        println!("would replay {} message(s)", selected.len());
        return Ok(());
    }
    if selected.is_empty() {
        println!("replayed 0 message(s)");
        return Ok(());
    }
    confirm(yes, &format!("replay {} dead letter(s)", selected.len()))?;
    let pause = Duration::from_secs_f64(1.0 / rate);
    let progress = Progress::new(selected.len());
    let mut replayed = 0usize;
    for (i, e) in selected.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        let one = DlqSelection {
            ids: vec![e.id.clone()],
            ..Default::default()
        };
        let report = queue
            .dlq_replay(&one, false)
            .await
            .with_context(|| format!("replaying {} (after {replayed} replayed)", e.id))?;
        match report.replayed.first() {
            Some(new_id) => {
                replayed += 1;
                progress.clear();
                println!("{}", ops::replay_audit_line(e, new_id));
            }
            None => {
                progress.clear();
                eprintln!("skipped {}: no longer in the dead-letter queue", e.id);
            }
        }
        progress.show(i + 1);
    }
    progress.clear();
    println!("replayed {replayed} message(s)");
    Ok(())
}

/// Ask before changing anything, unless `yes`. Refuses when stdin is not a terminal.
fn confirm(yes: bool, what: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to {what}: stdin is not a terminal; pass --yes to confirm");
    }
    eprint!("{what}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("not confirmed: nothing changed")
    }
}

/// A `\r` counter on stderr, drawn only when stdout is a terminal.
struct Progress {
    total: usize,
    on: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            on: std::io::stdout().is_terminal(),
        }
    }

    fn show(&self, done: usize) {
        if self.on {
            eprint!("\r{done}/{} ", self.total);
            std::io::stderr().flush().ok();
        }
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
            std::io::stderr().flush().ok();
        }
    }
}
