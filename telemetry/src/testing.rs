//! **Test support** (feature `testing`): installing a test's own subscriber so that every
//! span it expects reaches it, however many other tests run beside it.
//!
//! tracing-core caches each callsite's interest. While only one dispatcher is live in the
//! process, a callsite registered for the first time takes its interest from the
//! registering thread's default alone — so a test running beside ours without a
//! subscriber can register, say, the engine's `process` span as "never", and ours then
//! never sees it. With a second dispatcher live for the whole process, every registration
//! asks all live dispatchers, ours included. Invariant: [`set_default`] keeps that second
//! dispatcher (interested in nothing) alive, installs the subscriber and recomputes the
//! interest of the callsites registered before it.

use std::sync::LazyLock;
use tracing::Dispatch;
use tracing::subscriber::{DefaultGuard, NoSubscriber};

/// Lives as long as the process: see the module documentation.
static SECOND: LazyLock<Dispatch> = LazyLock::new(|| Dispatch::new(NoSubscriber::default()));

/// Make `subscriber` this thread's default until the guard drops, reliably beside other
/// tests (see the module documentation).
pub fn set_default<S>(subscriber: S) -> DefaultGuard
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    LazyLock::force(&SECOND);
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    guard
}
