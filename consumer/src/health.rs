//! The container health check, answered by the binary itself (no shell, no HTTP port).
//!
//! `run` writes the wall-clock time of the engine's last completed step into a small file
//! every few seconds; `kiro-consumer health` reads it and succeeds only if it is recent.
//! Invariant: a consumer whose loop is stuck (not merely busy) turns unhealthy within
//! `max_age`, while one whose jobs run for hours stays healthy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the heartbeat file is rewritten.
const WRITE_EVERY: Duration = Duration::from_secs(5);

/// Write `heartbeat` (ms since the epoch) to `file` every few seconds until cancelled.
pub fn spawn_writer(file: PathBuf, heartbeat: Arc<AtomicI64>, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let ms = heartbeat.load(Ordering::Relaxed);
            if ms > 0 {
                let tmp = file.with_extension("tmp");
                let written = std::fs::write(&tmp, ms.to_string())
                    .and_then(|()| std::fs::rename(&tmp, &file));
                if let Err(e) = written {
                    tracing::debug!(error = %e, file = %file.display(), "cannot write the heartbeat");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(WRITE_EVERY) => {}
            }
        }
    });
}

/// Whether the heartbeat in `file` is at most `max_age` old at `now_ms`.
pub fn is_healthy(file: &Path, max_age: Duration, now_ms: i64) -> Result<bool, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let beat: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{} holds no heartbeat", file.display()))?;
    let age = now_ms.saturating_sub(beat);
    Ok(age >= 0 && u128::try_from(age).unwrap_or(u128::MAX) <= max_age.as_millis())
}

/// The `health` command.
pub fn check(file: &Path, max_age: Duration) -> ExitCode {
    use kiro_protocol::Clock;
    match is_healthy(file, max_age, kiro_protocol::SystemClock.now().millis()) {
        Ok(true) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!(
                "unhealthy: the consumer loop made no progress for over {}",
                humantime::format_duration(max_age)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_heartbeats_are_healthy_and_stale_or_missing_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hb");
        assert!(is_healthy(&f, Duration::from_secs(60), 1_000).is_err());
        std::fs::write(&f, "1000").unwrap();
        assert_eq!(is_healthy(&f, Duration::from_secs(60), 61_000), Ok(true));
        assert_eq!(is_healthy(&f, Duration::from_secs(60), 61_001), Ok(false));
        std::fs::write(&f, "garbage").unwrap();
        assert!(is_healthy(&f, Duration::from_secs(60), 1_000).is_err());
    }
}
