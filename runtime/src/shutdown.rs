//! The shutdown signal of the long-running binaries: SIGTERM (ECS, the quick start) or
//! SIGINT (a terminal) cancels a [`CancellationToken`].
//!
//! Invariant: the first of the two signals cancels the token, once; what the binary does
//! then (stop ticking, hand jobs off) is its own. `kiro-worker` keeps its own SIGTERM
//! handling: it must still write its outcome when stopped.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT, which is logged with `action` (what
/// the binary does now, e.g. "handing jobs off"). Call inside a Tokio runtime.
pub fn on_signal(action: &'static str) -> std::io::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: {action}"),
            _ = int.recv() => tracing::info!("SIGINT: {action}"),
        }
        token.cancel();
    });
    Ok(cancel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sigint_cancels_the_token() {
        let cancel = on_signal("stopping").unwrap();
        assert!(!cancel.is_cancelled());
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT)
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), cancel.cancelled())
            .await
            .expect("cancelled by SIGINT");
    }
}
