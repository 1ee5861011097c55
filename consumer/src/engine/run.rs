//! The run loop: a long-polling receive on its own task beside the timers that supervise
//! and poll the jobs in flight.
//!
//! A receive always waits the full `receive_wait` (20 s on SQS by default): it is never
//! shortened to meet a job's deadline. Supervision (lease renewal, visibility extension,
//! cancellation at `safe_until`), build polling and scale-in protection run when their own
//! deadlines come ([`Engine::attend`]), while the receive is in flight. An idle consumer
//! therefore sends one receive per wait, whatever it is running. Under load a receive
//! returns as soon as a message is there; one that delivered fewer messages than it asked
//! for is followed no sooner than `receive_gap` after its start, so arrivals in between
//! come in one batch (at most one receive per gap, however fast messages arrive; a
//! message waits at most the gap).
//!
//! Invariant: a receive is never dropped while it may still deliver. SQS cannot take back a
//! `ReceiveMessage` whose response nobody reads (the messages it delivered stay invisible
//! for the whole visibility timeout and come back with a higher receive count), and the
//! embedded queue commits a receive's transaction on the blocking pool even when its
//! caller is gone. So the loop never cancels a receive: at shutdown it hands the jobs off
//! first, then awaits the receive in flight (at most its wait plus
//! [`RECEIVE_GRACE`]) and gives back at once whatever it delivered. Only a receive that
//! outlives that bound (a stalled network) is abandoned; what it took returns after its
//! visibility timeout, which loses nothing but time.

use super::{Engine, EngineStats, RunUntil, TickReport};
use kiro_protocol::{Delivery, PortError};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

/// How long past its own wait a receive in flight is awaited at shutdown.
pub(super) const RECEIVE_GRACE: Duration = Duration::from_secs(10);

/// After a failed receive, how long before the next one (the adapter has already retried
/// with backoff; this keeps a persistent failure, e.g. a denied permission, from spinning).
const RECEIVE_RETRY: Duration = Duration::from_secs(5);

/// The shortest time from one empty receive's start to the next one's: keeps a loop
/// configured with a zero wait (a short poll) from spinning.
const MIN_RECEIVE_GAP: Duration = Duration::from_millis(50);

type Receiving = JoinHandle<Result<Vec<Delivery>, PortError>>;

impl Engine {
    /// Receive, dispatch and attend to the jobs until `cancel` fires, then hand every job
    /// off. With [`RunUntil::Idle`], also stop once nothing is in flight here and the
    /// queue is idle (checked before each receive, so no receive is in flight then).
    pub async fn run(&mut self, cancel: CancellationToken, until: RunUntil) -> EngineStats {
        let mut receiving: Option<Receiving> = None;
        let mut receive_after: Option<Instant> = None;
        let mut receive_started = Instant::now();
        let mut asked = 0;
        loop {
            // A stop that came before (or between) the steps starts no new receive.
            if cancel.is_cancelled() {
                break;
            }
            let may_receive = !self.draining
                && self.jobs.len() < self.cfg.max_jobs
                && receive_after.is_none_or(|t| t <= Instant::now());
            if receiving.is_none() && may_receive {
                if until == RunUntil::Idle && self.jobs.is_empty() && self.queue_idle().await {
                    break;
                }
                asked = self.receive_room();
                receiving = Some(self.spawn_receive(asked));
                receive_started = Instant::now();
                receive_after = None;
            }
            let wake = [self.next_deadline(), receive_after]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                got = async { receiving.as_mut().expect("guarded by the branch condition").await },
                    if receiving.is_some() =>
                {
                    receiving = None;
                    let mut report = TickReport::default();
                    match got {
                        Ok(Ok(deliveries)) => {
                            if deliveries.is_empty() {
                                receive_after = Some(receive_started + MIN_RECEIVE_GAP);
                            } else if deliveries.len() < asked {
                                receive_after = Some(receive_started + self.cfg.receive_gap);
                            }
                            report.received = deliveries.len();
                            self.dispatch_all(deliveries, &mut report).await;
                        }
                        Ok(Err(e)) => {
                            warn!(error = %e, "receive failed");
                            receive_after = Some(Instant::now() + RECEIVE_RETRY);
                        }
                        Err(e) => {
                            warn!(error = %e, "the receive task failed");
                            receive_after = Some(Instant::now() + RECEIVE_RETRY);
                        }
                    }
                    self.step_done(report).await;
                }
                () = sleep_until(wake) => {
                    if receive_after.is_some_and(|t| t <= Instant::now()) {
                        receive_after = None;
                    }
                    self.step_done(TickReport::default()).await;
                }
            }
        }
        if cancel.is_cancelled() {
            self.drain().await;
        }
        if let Some(r) = receiving {
            self.give_back(r).await;
        }
        self.stats.clone()
    }

    /// How many messages the next receive asks for: the free slots, at most 10.
    fn receive_room(&self) -> usize {
        (self.cfg.max_jobs - self.jobs.len()).min(super::RECEIVE_BATCH)
    }

    /// One receive of up to `room` messages, waiting the full `receive_wait`, on its own
    /// task.
    fn spawn_receive(&self, room: usize) -> Receiving {
        let queue = self.ports.queue.clone();
        let wait = self.cfg.receive_wait;
        tokio::spawn(async move { queue.receive(room, wait).await }.in_current_span())
    }

    /// Attend to whatever is due, then count the step and beat the heartbeat.
    async fn step_done(&mut self, mut report: TickReport) {
        self.attend(&mut report).await;
        if report != TickReport::default() {
            debug!(?report, "step");
        }
        self.stats.totals.add(&report);
        self.mark_alive();
    }

    async fn queue_idle(&self) -> bool {
        match self.ports.queue.depth().await {
            Ok(d) => d.is_idle(),
            Err(e) => {
                warn!(error = %e, "cannot read queue depth");
                false
            }
        }
    }

    /// Await the receive in flight at shutdown and give back at once what it delivered.
    async fn give_back(&self, mut receiving: Receiving) {
        let bound = self.cfg.receive_wait + RECEIVE_GRACE;
        match tokio::time::timeout(bound, &mut receiving).await {
            Ok(Ok(Ok(deliveries))) => {
                for d in &deliveries {
                    self.release_quietly(d, Duration::ZERO).await;
                }
                if !deliveries.is_empty() {
                    debug!(
                        messages = deliveries.len(),
                        "gave back what the last receive delivered"
                    );
                }
            }
            Ok(Ok(Err(_))) => {}
            Ok(Err(e)) => warn!(error = %e, "the last receive task failed"),
            Err(_) => {
                receiving.abort();
                warn!(
                    "the last receive did not return in time; a message it took comes back after its visibility timeout"
                );
            }
        }
    }
}

/// Sleep until `t`; forever when there is nothing to wake for.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
