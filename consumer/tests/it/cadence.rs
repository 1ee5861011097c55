//! The run loop's cadence: a receive long-polls for its full wait whatever runs beside
//! it (supervision and polling keep their own timers), and a receive still in flight at
//! shutdown gives back what it took at once.

use crate::support::*;
use async_trait::async_trait;
use kiro_backends::embedded::SqliteQueue;
use kiro_backends::testing::Spy;
use kiro_consumer::{Engine, EngineConfig, Ports, RunUntil};
use kiro_protocol::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn engine_on(
    h: &Harness,
    queue: Arc<dyn WorkQueue>,
    builds: Arc<dyn BuildRunner>,
    cfg: EngineConfig,
) -> Engine {
    Engine::new(
        cfg,
        Ports {
            queue,
            leases: h.leases.clone(),
            builds,
            board: None,
            pulls: None,
            clock: h.clock.clone(),
            protection: None,
        },
    )
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(start_paused = true)]
async fn an_idle_consumer_with_running_jobs_sends_one_receive_per_wait() {
    let h = Harness::new();
    let queue = Arc::new(Spy::new(h.queue.clone()));
    let cfg = EngineConfig {
        max_jobs: 16,
        receive_wait: WAIT,
        ..Harness::config("c1")
    };
    let builds = Arc::new(Spy::new(h.runner.clone()));
    let mut e = engine_on(&h, queue.clone(), builds.clone(), cfg);
    let cancel = CancellationToken::new();
    // Ten items arrive 7 s apart and their builds keep running; then ten idle minutes
    // with six slots free.
    let arrivals = 10;
    let idle = Duration::from_secs(600);
    let started = tokio::time::Instant::now();
    let (stats, ()) = tokio::join!(e.run(cancel.clone(), RunUntil::Shutdown), async {
        for i in 0..arrivals {
            tokio::time::sleep(Duration::from_secs(7)).await;
            h.send(&format!("I-{i}"), &format!("p{i}")).await;
        }
        tokio::time::sleep(idle).await;
        cancel.cancel();
    });
    let elapsed = started.elapsed();
    assert_eq!(stats.totals.started, arrivals);
    assert_eq!(
        stats.totals.cancelled, 0,
        "supervision ran on its own timers while the receives waited"
    );
    assert_eq!(h.runner.starts(), arrivals);
    // A receive either waits its full 20 s or returns an arrival; one more may be in
    // flight at shutdown.
    let bound = (elapsed.as_secs() / WAIT.as_secs()) as usize + arrivals + 1;
    let receives = queue.calls("receive");
    assert!(
        receives <= bound,
        "{receives} receives in {elapsed:?} (at most {bound}): the receive was shortened"
    );
    assert!(
        builds.calls("status") > 0 && queue.calls("extend") > 0,
        "the jobs were polled and their messages extended while idle"
    );
}

/// Sixty items arriving a second apart, with the receive gap `gap`: how many receives
/// they took, and the longest dispatch latency (arrival to build start, in ms).
async fn steady_arrivals(gap: Duration) -> (usize, u64) {
    let h = Harness::new();
    let queue = Arc::new(Spy::new(h.queue.clone()));
    let cfg = EngineConfig {
        max_jobs: 100,
        receive_wait: WAIT,
        receive_gap: gap,
        ..Harness::config("c1")
    };
    let mut e = engine_on(&h, queue.clone(), h.runner.clone(), cfg);
    let cancel = CancellationToken::new();
    let arrivals = 60;
    let (stats, ()) = tokio::join!(e.run(cancel.clone(), RunUntil::Shutdown), async {
        for i in 0..arrivals {
            tokio::time::sleep(Duration::from_secs(1)).await;
            h.send(&format!("I-{i}"), &format!("p{i}")).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        cancel.cancel();
    });
    assert_eq!(stats.totals.started, arrivals, "every arrival started");
    let latency = stats.dispatch_latency_ms.iter().copied().max().unwrap_or(0);
    (queue.calls("receive"), latency)
}

#[tokio::test(start_paused = true)]
async fn under_load_a_receive_gathers_the_arrivals_of_its_gap() {
    // Without a gap every arrival ends a long poll: one receive per message.
    let (each, _) = steady_arrivals(Duration::ZERO).await;
    assert!(each >= 60, "{each} receives for 60 arrivals without a gap");
    // With a 5 s gap one receive takes about five arrivals, and none waits longer than
    // the gap for its build.
    let gap = Duration::from_secs(5);
    let (gathered, latency) = steady_arrivals(gap).await;
    assert!(
        gathered <= 60 / 5 + 3,
        "{gathered} receives for 60 arrivals a second apart with a 5 s gap"
    );
    assert!(
        latency <= gap.as_millis() as u64 + 100,
        "an arrival waited {latency} ms for its build (gap {gap:?})"
    );
}

/// The embedded queue with a receive whose answer is still on its way (as an SQS
/// response can be) when it has already taken its messages.
#[derive(Debug)]
struct SlowAnswer {
    inner: Arc<SqliteQueue>,
    latency: Duration,
    /// Every receive fails at once (e.g. a denied permission).
    failing: bool,
}

#[async_trait]
impl WorkQueue for SlowAnswer {
    fn destination(&self) -> Destination {
        self.inner.destination()
    }
    async fn send(&self, msg: OutgoingMessage) -> Result<SendOutcome, PortError> {
        self.inner.send(msg).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        if self.failing {
            return Err(PortError::new(FailureClass::Auth, "access denied"));
        }
        let got = self.inner.receive(max, wait).await?;
        if !got.is_empty() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(got)
    }
    async fn extend(
        &self,
        receipts: &[Receipt],
        visibility: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.extend(receipts, visibility).await
    }
    async fn ack(&self, receipt: &Receipt) -> Result<(), PortError> {
        self.inner.ack(receipt).await
    }
    async fn ack_batch(
        &self,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.ack_batch(receipts).await
    }
    async fn release(&self, receipt: &Receipt, delay: Duration) -> Result<(), PortError> {
        self.inner.release(receipt, delay).await
    }
    async fn dead_letter(&self, delivery: &Delivery, letter: &DeadLetter) -> Result<(), PortError> {
        self.inner.dead_letter(delivery, letter).await
    }
    async fn dlq_list(&self, limit: usize) -> Result<DlqListing, PortError> {
        self.inner.dlq_list(limit).await
    }
    async fn dlq_replay_with(
        &self,
        selection: &DlqSelection,
        dry_run: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        self.inner
            .dlq_replay_with(selection, dry_run, progress)
            .await
    }
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.inner.dlq_redrive().await
    }
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.inner.dlq_purge().await
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.inner.depth().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_receive_in_flight_at_shutdown_gives_its_message_back_at_once() {
    let h = Harness::new();
    let queue = Arc::new(SlowAnswer {
        inner: h.queue.clone(),
        latency: Duration::from_secs(2),
        failing: false,
    });
    let cfg = EngineConfig {
        receive_wait: WAIT,
        ..Harness::config("c1")
    };
    let mut e = engine_on(&h, queue, h.runner.clone(), cfg);
    let cancel = CancellationToken::new();
    // The message arrives during a long poll, which takes it; shutdown comes while the
    // answer is on its way.
    let (stats, ()) = tokio::join!(e.run(cancel.clone(), RunUntil::Shutdown), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        h.send("A-1", "alpha").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
    });
    assert_eq!(stats.totals.started, 0, "nothing started after shutdown");
    let depth = h.depth().await;
    assert_eq!(
        (depth.visible, depth.in_flight),
        (1, 0),
        "the message is visible again now, not after its visibility timeout"
    );
    assert_eq!(h.runner.starts(), 0);
}

/// Calls a spy saw, with when.
type Log = Arc<std::sync::Mutex<Vec<(&'static str, usize, tokio::time::Instant)>>>;

fn logging<P: ?Sized>(inner: Arc<P>, log: &Log) -> Arc<Spy<P>> {
    let log = log.clone();
    Arc::new(Spy::new(inner).with_observer(move |c| {
        log.lock()
            .unwrap()
            .push((c.method, c.items, tokio::time::Instant::now()));
    }))
}

#[tokio::test(start_paused = true)]
async fn staggered_jobs_are_extended_on_one_beat_and_polled_in_one_round() {
    let h = Harness::new();
    let log = Log::default();
    let queue = logging(h.queue.clone(), &log);
    let builds = logging(h.runner.clone(), &log);
    let cfg = EngineConfig {
        max_jobs: 32,
        receive_wait: WAIT,
        ..Harness::config("c1")
    };
    let (visibility, poll_every) = (cfg.visibility, cfg.poll_every);
    let mut e = engine_on(&h, queue, builds, cfg);
    let cancel = CancellationToken::new();
    // 25 items arrive 3 s apart (every job has its own phase), then five minutes pass.
    let jobs = 25;
    let t0 = tokio::time::Instant::now();
    let (stats, ()) = tokio::join!(e.run(cancel.clone(), RunUntil::Shutdown), async {
        for i in 0..jobs {
            tokio::time::sleep(Duration::from_secs(3)).await;
            h.send(&format!("I-{i}"), &format!("p{i}")).await;
        }
        tokio::time::sleep(Duration::from_secs(300)).await;
        cancel.cancel();
    });
    assert_eq!(stats.totals.started, jobs);
    assert_eq!(stats.totals.cancelled, 0);
    // Once every receipt has been through a beat (one visibility timeout after the last
    // arrival), until the shutdown.
    let from = t0 + Duration::from_secs(3 * jobs as u64) + visibility;
    let to = t0 + Duration::from_secs(3 * jobs as u64 + 300);
    let steady: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, t)| *t >= from && *t < to)
        .copied()
        .collect();
    let of = |m: &str| -> Vec<(usize, tokio::time::Instant)> {
        steady
            .iter()
            .filter(|(method, _, _)| *method == m)
            .map(|(_, n, t)| (*n, *t))
            .collect()
    };
    let window = to - from;
    // Visibility: every beat carries all 25 receipts (⌈25/10⌉ = 3 batch calls on SQS), one
    // beat per two thirds of the visibility timeout.
    let beat = visibility * 2 / 3;
    let extends = of("extend");
    assert!(
        extends.iter().all(|(n, _)| *n == jobs),
        "every extension carries every receipt: {extends:?}"
    );
    let beats = (window.as_secs_f64() / beat.as_secs_f64()) as usize;
    assert!(
        extends.len().abs_diff(beats) <= 1,
        "{} beats in {window:?}, expected about {beats}",
        extends.len()
    );
    for w in extends.windows(2) {
        assert_eq!(w[1].1 - w[0].1, beat, "beats are evenly spaced");
    }
    // Build status: one round of all 25 ids per poll interval.
    let polls = of("status");
    assert!(
        polls.iter().all(|(n, _)| *n == jobs),
        "every round polls every build: {polls:?}"
    );
    let rounds = (window.as_secs_f64() / poll_every.as_secs_f64()) as usize;
    assert!(
        polls.len().abs_diff(rounds) <= 1,
        "{} rounds in {window:?}, expected about {rounds}",
        polls.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_receive_is_tried_again_after_a_pause() {
    let h = Harness::new();
    let queue = Arc::new(Spy::new(Arc::new(SlowAnswer {
        inner: h.queue.clone(),
        latency: Duration::ZERO,
        failing: true,
    })));
    let cfg = EngineConfig {
        receive_wait: WAIT,
        ..Harness::config("c1")
    };
    let mut e = engine_on(&h, queue.clone(), h.runner.clone(), cfg);
    let cancel = CancellationToken::new();
    tokio::join!(e.run(cancel.clone(), RunUntil::Shutdown), async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        cancel.cancel();
    });
    let receives = queue.calls("receive");
    assert!(
        (10..=13).contains(&receives),
        "{receives} receives in a minute: one every 5 s after a failure"
    );
}
