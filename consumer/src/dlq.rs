//! The dead-letter console (`kiro-consumer dlq …`): list, show, replay, redrive and
//! purge, for either backend, through the `WorkQueue` port only.
//!
//! Invariants: nothing changes without a confirmation (`--yes`, or a `y` typed on a
//! terminal; with stdin not a terminal and no `--yes` the command refuses before
//! touching anything); replay is one port call for the whole selection (its cost linear
//! in the dead-letter queue's size), in which the port moves one letter at a time, in
//! dead-letter order, and reports each as it lands, so an interrupted replay leaves every
//! message either still dead-lettered or back in its group, and writes one audit line
//! per message on stdout, as it goes. Replay, redrive and
//! purge draw an `indicatif` progress bar on stderr, only when stdout is a terminal
//! (hidden otherwise, so pipes and tests see exactly the audit lines); a line printed
//! while the bar is up goes through `ProgressBar::suspend`, so bar and line never mix.
//! On a terminal, redrive shows progress by polling the dead-letter count while the port
//! call runs and after it returns (SQS moves the letters in the background): the bar
//! only watches, so stopping it (Ctrl-C, or a stall) never stops or loses a move.

use crate::config::DlqCommand;
use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiro_consumer::ops::{self, ShowContext};
use kiro_protocol::{Clock, DeadLetterEntry, DlqSelection, MessageId, ReplayProgress, WorkQueue};
use std::convert::Infallible;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// The most letters any console command reads.
const READ_LIMIT: usize = 100_000;
/// How often a watched redrive asks the queue how many letters are left.
const POLL: Duration = Duration::from_millis(500);
/// A watched redrive stops following the queue's own move after this long without
/// progress (the move itself goes on; the bar only stops watching).
const STALL: Duration = Duration::from_secs(30);

/// Run one `dlq` subcommand.
pub async fn run(
    queue: &dyn WorkQueue,
    clock: &dyn Clock,
    show: &ShowContext,
    command: DlqCommand,
) -> Result<()> {
    match command {
        DlqCommand::List { json, limit } => {
            let listing = queue.dlq_list(limit).await?;
            let now = clock.now();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&ops::dlq_json(&listing, now))?
                );
            } else if listing.entries.is_empty() && listing.is_complete() {
                println!("the dead-letter queue is empty");
            } else {
                print!("{}", ops::dlq_table(&listing.entries, now));
                if let Some(p) = &listing.partial {
                    println!("partial listing: {p}");
                }
            }
        }
        DlqCommand::Show { id, json } => {
            let listing = queue.dlq_list(READ_LIMIT).await?;
            let e = DeadLetterEntry::find(&listing.entries, &id).with_context(|| match &listing
                .partial
            {
                Some(p) => format!("no dead letter {id} among those listed ({p})"),
                None => format!("no dead letter {id}"),
            })?;
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
            let bar = progress(Some(waiting), "redriving");
            let moved = redrive(queue, &bar, waiting, !bar.is_hidden()).await?;
            bar.finish_and_clear();
            println!("redrove {moved} message(s)");
        }
        DlqCommand::Purge { yes } => {
            let waiting = queue.depth().await?.dead_letters;
            confirm(yes, &format!("delete {waiting} dead letter(s) for good"))?;
            let bar = progress(None, &format!("purging {waiting} dead letter(s)"));
            let purged = queue.dlq_purge().await?;
            bar.finish_and_clear();
            println!("purged {purged} dead letter(s)");
        }
    }
    Ok(())
}

/// Replay the selected letters, at most `rate` per second: one listing for the dry run
/// or the confirmation, then one port call that replays the whole selection in a single
/// pass over the dead-letter queue (also reaching letters the listing could not show,
/// behind replayed ones of their group), printing an audit line as each letter lands.
async fn replay(
    queue: &dyn WorkQueue,
    clock: &dyn Clock,
    selection: &DlqSelection,
    dry_run: bool,
    rate: f64,
    yes: bool,
) -> Result<()> {
    let now = clock.now();
    let listing = queue.dlq_list(READ_LIMIT).await?;
    let partial = listing.partial.clone();
    let selected: Vec<DeadLetterEntry> = listing
        .entries
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
        if let Some(p) = partial {
            println!("and perhaps more not listed: {p}");
        }
        return Ok(());
    }
    if selected.is_empty() {
        println!("replayed 0 message(s)");
        if let Some(p) = partial {
            println!("not examined: {p}");
        }
        return Ok(());
    }
    let more = if partial.is_some() {
        " (and those of the selection listed after them)"
    } else {
        ""
    };
    confirm(
        yes,
        &format!("replay {} dead letter(s){more}", selected.len()),
    )?;
    let mut progress = Audit {
        bar: progress(
            Some(u64::try_from(selected.len()).unwrap_or(u64::MAX)),
            "replaying",
        ),
        pause: Duration::from_secs_f64(1.0 / rate),
        replayed: 0,
    };
    let result = queue.dlq_replay_with(selection, false, &mut progress).await;
    progress.bar.finish_and_clear();
    let report =
        result.with_context(|| format!("replaying (after {} replayed)", progress.replayed))?;
    println!("replayed {} message(s)", report.replayed.len());
    if report.unexamined > 0 {
        println!(
            "not examined: about {} dead letter(s) wait behind letters this selection does not \
             match (a FIFO dead-letter queue hands out a group's later letters only once its \
             earlier ones are gone)",
            report.unexamined
        );
    }
    Ok(())
}

/// The console's view of a replay: one pause of `pause` before every letter but the
/// first, and an audit line and a bar step after each.
struct Audit {
    bar: ProgressBar,
    pause: Duration,
    replayed: usize,
}

#[async_trait]
impl ReplayProgress for Audit {
    async fn before(&mut self, _: &DeadLetterEntry) {
        if self.replayed > 0 {
            tokio::time::sleep(self.pause).await;
        }
    }

    fn replayed(&mut self, e: &DeadLetterEntry, new_id: &MessageId) {
        self.replayed += 1;
        // The pass may reach letters the listing did not show.
        if self
            .bar
            .length()
            .is_some_and(|len| self.bar.position() >= len)
        {
            self.bar.inc_length(1);
        }
        self.bar
            .suspend(|| println!("{}", ops::replay_audit_line(e, new_id)));
        self.bar.inc(1);
    }
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

/// A progress bar (with `len`) or a spinner (without) on stderr, labelled `what`: drawn
/// only when stdout is a terminal, hidden (but still counting) otherwise. Dropped
/// without finishing (an error), it clears itself.
fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        let bar = ProgressBar::hidden();
        if let Some(len) = len {
            bar.set_length(len);
        }
        return bar;
    }
    let template = match len {
        Some(_) => "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
        None => "{spinner} {msg} [{elapsed_precise}]",
    };
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr())
        .with_style(ProgressStyle::with_template(template).unwrap_or_else(|_| {
            // The templates above are fixed; a parse failure would be a bug in them.
            ProgressStyle::default_bar()
        }))
        .with_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Redrive everything, `initial` letters as counted just before. With `watch`, the bar
/// shows `initial - remaining` from a poll of the dead-letter count every [`POLL`], run
/// concurrently with the port call and, once it returns, until `moved` letters have left
/// or nothing has moved for [`STALL`] (SQS moves in the background after the call).
/// Poll errors only leave the bar where it is: the redrive is what counts.
async fn redrive(
    queue: &dyn WorkQueue,
    bar: &ProgressBar,
    initial: u64,
    watch: bool,
) -> Result<u64> {
    let moved = tokio::select! {
        moved = queue.dlq_redrive() => moved?,
        never = watch_dead_letters(queue, bar, initial), if watch => match never {},
    };
    bar.set_length(initial.max(moved));
    if !watch || follow_move(queue, bar, initial, moved).await {
        bar.set_position(moved);
    }
    Ok(moved)
}

/// The bar's position from one poll of the dead-letter count, if the poll answered.
async fn poll_moved(queue: &dyn WorkQueue, initial: u64) -> Option<u64> {
    let remaining = queue.depth().await.ok()?.dead_letters;
    Some(initial.saturating_sub(remaining))
}

/// Poll the dead-letter count into the bar, forever (until the caller drops it).
async fn watch_dead_letters(queue: &dyn WorkQueue, bar: &ProgressBar, initial: u64) -> Infallible {
    loop {
        tokio::time::sleep(POLL).await;
        if let Some(done) = poll_moved(queue, initial).await {
            bar.set_position(done);
        }
    }
}

/// After the port call: follow the queue's own move until `moved` letters have left the
/// dead-letter queue (true), or it makes no progress for [`STALL`] (false).
async fn follow_move(queue: &dyn WorkQueue, bar: &ProgressBar, initial: u64, moved: u64) -> bool {
    let target = moved.min(initial);
    let mut best = 0;
    let mut since = tokio::time::Instant::now();
    loop {
        if let Some(done) = poll_moved(queue, initial).await {
            bar.set_position(done);
            if done >= target {
                return true;
            }
            if done > best {
                best = done;
                since = tokio::time::Instant::now();
            }
        }
        if since.elapsed() >= STALL {
            bar.suspend(|| {
                eprintln!(
                    "no progress for {}s: the queue goes on moving the rest in the background",
                    STALL.as_secs()
                )
            });
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{
        DeadLetter, Delivery, Destination, DlqListing, OutgoingMessage, PortError, QueueDepth,
        Receipt, ReplayReport, SendOutcome,
    };
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// A dead-letter queue of `total` letters that a redrive moves at `per_sec`, starting
    /// when `dlq_redrive` is called; the call itself takes `call_takes` (zero: SQS, whose
    /// move task goes on after the call; the whole move: a synchronous queue).
    #[derive(Debug)]
    struct MovingQueue {
        total: u64,
        per_sec: u64,
        call_takes: Duration,
        started: Mutex<Option<Instant>>,
        polls: Mutex<usize>,
    }

    impl MovingQueue {
        fn new(total: u64, per_sec: u64, call_takes: Duration) -> Self {
            MovingQueue {
                total,
                per_sec,
                call_takes,
                started: Mutex::new(None),
                polls: Mutex::new(0),
            }
        }
        fn polls(&self) -> usize {
            *self.polls.lock().unwrap()
        }
    }

    fn unused<T>() -> Result<T, PortError> {
        Err(PortError::input("not part of this fake"))
    }

    #[async_trait]
    impl WorkQueue for MovingQueue {
        fn destination(&self) -> Destination {
            Destination {
                system: "test",
                name: "moving".to_owned(),
            }
        }
        async fn send(&self, _: OutgoingMessage) -> Result<SendOutcome, PortError> {
            unused()
        }
        async fn receive(&self, _: usize, _: Duration) -> Result<Vec<Delivery>, PortError> {
            unused()
        }
        async fn extend(
            &self,
            _: &[Receipt],
            _: Duration,
        ) -> Result<Vec<Result<(), PortError>>, PortError> {
            unused()
        }
        async fn ack(&self, _: &Receipt) -> Result<(), PortError> {
            unused()
        }
        async fn release(&self, _: &Receipt, _: Duration) -> Result<(), PortError> {
            unused()
        }
        async fn dead_letter(&self, _: &Delivery, _: &DeadLetter) -> Result<(), PortError> {
            unused()
        }
        async fn dlq_list(&self, _: usize) -> Result<DlqListing, PortError> {
            unused()
        }
        async fn dlq_replay_with(
            &self,
            _: &DlqSelection,
            _: bool,
            _: &mut dyn ReplayProgress,
        ) -> Result<ReplayReport, PortError> {
            unused()
        }
        async fn dlq_redrive(&self) -> Result<u64, PortError> {
            *self.started.lock().unwrap() = Some(Instant::now());
            tokio::time::sleep(self.call_takes).await;
            Ok(self.total)
        }
        async fn depth(&self) -> Result<QueueDepth, PortError> {
            *self.polls.lock().unwrap() += 1;
            let moved = self
                .started
                .lock()
                .unwrap()
                .map_or(0, |t| t.elapsed().as_secs() * self.per_sec);
            Ok(QueueDepth {
                dead_letters: self.total.saturating_sub(moved),
                ..Default::default()
            })
        }
    }

    fn hidden_bar(len: u64) -> ProgressBar {
        let bar = ProgressBar::hidden();
        bar.set_length(len);
        bar
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_redrive_shows_progress_during_the_call() {
        let q = MovingQueue::new(10, 2, Duration::from_secs(5));
        let bar = hidden_bar(10);
        let probe = async {
            tokio::time::sleep(Duration::from_millis(2_200)).await;
            bar.position()
        };
        let (moved, midway) = tokio::join!(redrive(&q, &bar, 10, true), probe);
        assert_eq!(moved.unwrap(), 10);
        assert_eq!(midway, 4, "2 s in, 2 letters a second have moved");
        assert_eq!(bar.position(), 10);
        assert!(q.polls() >= 9, "polled every 500 ms: {}", q.polls());
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_redrive_follows_a_move_that_outlives_the_call() {
        let q = MovingQueue::new(6, 1, Duration::ZERO);
        let bar = hidden_bar(6);
        let start = Instant::now();
        assert_eq!(redrive(&q, &bar, 6, true).await.unwrap(), 6);
        assert!(
            start.elapsed() >= Duration::from_secs(6),
            "waited for the move"
        );
        assert!(start.elapsed() < Duration::from_secs(7));
        assert_eq!(bar.position(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_move_stops_the_watch_not_the_redrive() {
        let q = MovingQueue::new(3, 0, Duration::ZERO);
        let bar = hidden_bar(3);
        let start = Instant::now();
        assert_eq!(redrive(&q, &bar, 3, true).await.unwrap(), 3);
        assert!(start.elapsed() >= STALL && start.elapsed() < STALL + Duration::from_secs(1));
        assert_eq!(bar.position(), 0, "the bar shows what was seen to move");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unwatched_redrive_only_calls_the_port() {
        let q = MovingQueue::new(4, 1, Duration::from_secs(3));
        let bar = hidden_bar(4);
        assert_eq!(redrive(&q, &bar, 4, false).await.unwrap(), 4);
        assert_eq!(q.polls(), 0);
        assert_eq!(bar.position(), 4);
    }

    /// Replaying N letters on SQS costs calls linear in N: the console lists once and the
    /// port replays the whole selection in one pass (it once cost a listing and a pass
    /// over the DLQ per letter, about 18 calls a letter for 30 of them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replaying_n_letters_on_sqs_costs_calls_linear_in_n() {
        use kiro_backends::aws::sqs::SqsSettings;
        use kiro_backends::testing::contract::queue::{letter, message};
        use kiro_backends::testing::{counted_queue, moto};
        use kiro_protocol::{FailureClass, SystemClock};
        use std::sync::Arc;
        const N: usize = 30;
        let aws = moto::provision("dlq-linear").await;
        let (q, calls) = counted_queue(
            SqsSettings::new(aws.queue_url.clone(), aws.dlq_url.clone()),
            Arc::new(SystemClock),
        )
        .await;
        for i in 0..N {
            let body = format!("letter-{i}");
            q.send(message(&format!("p{}", i % 3), &body, &body))
                .await
                .unwrap();
            let d = q
                .receive(1, Duration::from_secs(1))
                .await
                .unwrap()
                .remove(0);
            q.dead_letter(&d, &letter(FailureClass::TestsFailed, "red"))
                .await
                .unwrap();
        }
        calls.reset();
        let all = DlqSelection {
            all: true,
            ..Default::default()
        };
        replay(&q, &SystemClock, &all, false, 1e6, true)
            .await
            .unwrap();
        let spent = calls.total();
        let depth = q.depth().await.unwrap();
        assert_eq!(
            (depth.visible, depth.dead_letters),
            (N as u64, 0),
            "all replayed"
        );
        assert!(
            spent <= 3 * N + 10,
            "{spent} SQS calls to replay {N} letters: {:?}",
            calls.by_operation()
        );
    }
}
