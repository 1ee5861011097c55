//! Scale-in protection: held while jobs run and re-armed on its interval, given up when
//! the last job ends or on drain; a failing protection call never stops a job and is
//! retried after a back-off.

use crate::support::*;
use kiro_protocol::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `TaskProtection` stand-in that records every call and can be made to fail.
#[derive(Debug, Default)]
struct RecordingProtection {
    calls: Mutex<Vec<bool>>,
    fail: Mutex<bool>,
}

#[async_trait::async_trait]
impl TaskProtection for RecordingProtection {
    async fn set(&self, protected: bool) -> Result<(), PortError> {
        self.calls.lock().unwrap().push(protected);
        if *self.fail.lock().unwrap() {
            return Err(PortError::transient("scripted: ECS unreachable"));
        }
        Ok(())
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
}

fn protected_engine(h: &Harness, protection: Arc<RecordingProtection>) -> kiro_consumer::Engine {
    kiro_consumer::Engine::new(
        Harness::config("c1"),
        kiro_consumer::Ports {
            queue: h.queue.clone(),
            leases: h.leases.clone(),
            builds: h.runner.clone(),
            board: None,
            pulls: None,
            clock: h.clock.clone(),
            protection: Some(protection),
        },
    )
}

#[tokio::test(start_paused = true)]
async fn scale_in_protection_is_held_while_jobs_run_and_re_armed() {
    let h = Harness::new();
    let p = Arc::new(RecordingProtection::default());
    let mut e = protected_engine(&h, p.clone());
    e.tick(Duration::ZERO).await;
    assert!(
        p.calls.lock().unwrap().is_empty(),
        "idle: nothing to protect"
    );
    h.send("A-1", "alpha").await;
    h.send("B-1", "beta").await;
    e.tick(Duration::ZERO).await;
    assert_eq!(*p.calls.lock().unwrap(), [true], "on once for 0 → 2 jobs");
    // Ticks while the jobs run: no call until the re-arm interval (60 s) passes.
    for _ in 0..11 {
        pass(Duration::from_secs(5)).await;
        e.tick(Duration::ZERO).await;
    }
    assert_eq!(*p.calls.lock().unwrap(), [true], "no call before re-arm");
    pass(Duration::from_secs(5)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(*p.calls.lock().unwrap(), [true, true], "re-armed at 60 s");
    // One job ends: still protected, no call.
    h.runner.succeed("A-1");
    pass(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
    assert_eq!(p.calls.lock().unwrap().len(), 2);
    // The last one ends: off.
    h.runner.succeed("B-1");
    pass(Duration::from_secs(5)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
    assert_eq!(*p.calls.lock().unwrap(), [true, true, false]);
    pass(Duration::from_secs(120)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(p.calls.lock().unwrap().len(), 3, "idle: no re-arm");
}

#[tokio::test(start_paused = true)]
async fn a_failing_protection_never_stops_jobs_and_is_retried() {
    let h = Harness::new();
    let p = Arc::new(RecordingProtection::default());
    *p.fail.lock().unwrap() = true;
    let mut e = protected_engine(&h, p.clone());
    h.send("A-1", "alpha").await;
    let r = e.tick(Duration::ZERO).await;
    assert_eq!(r.started, 1, "{r:?}");
    assert_eq!(p.calls.lock().unwrap().len(), 1);
    // A failed call is not repeated on every tick...
    pass(Duration::from_secs(5)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(
        p.calls.lock().unwrap().len(),
        1,
        "backs off after a failure"
    );
    // ...but tried again later, and then it holds.
    *p.fail.lock().unwrap() = false;
    pass(Duration::from_secs(15)).await;
    e.tick(Duration::ZERO).await;
    assert_eq!(*p.calls.lock().unwrap(), [true, true]);
    assert_eq!(e.active_count(), 1, "the job kept running throughout");
    // Drain gives protection up after handing off.
    e.drain().await;
    assert_eq!(*p.calls.lock().unwrap(), [true, true, false]);
    assert_eq!(h.job("alpha", "A-1").await.state, JobState::Handoff);
}
