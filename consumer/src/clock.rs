//! A wall clock driven by tokio's clock.
//!
//! [`TokioClock`] reads the system time once at creation and then advances with
//! `tokio::time::Instant`, so under `#[tokio::test(start_paused = true)]` lease expiry
//! (wall time, through the `Clock` port) and the engine's deadlines (monotonic tokio
//! time) move together, and tests never sleep for real.

use kiro_protocol::{Clock, SystemClock, Timestamp};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct TokioClock {
    base: Timestamp,
    start: Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            base: SystemClock.now(),
            start: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base.plus(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let c = TokioClock::new();
        let t0 = c.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now().since(t0), Duration::from_secs(3600));
    }
}
