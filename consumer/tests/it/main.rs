//! Integration tests of the consumer engine on the real embedded queue and lease store
//! (SQLite in a temp dir), with tokio's paused time driving leases, visibility and retries.

mod announce;
mod cadence;
mod cancel;
mod cli;
mod console;
mod dlq;
mod engine;
mod hostile;
mod metrics;
mod protection;
mod reattach;
mod session;
mod shutdown;
mod spans;
mod standing;
mod supervise;
mod support;
mod takeover;
