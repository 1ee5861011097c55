//! kiro-consumer: the engine that turns queued work items into builds, and the operator
//! commands around it.
//!
//! - [`defaults`]: the defaults of `kiro-consumer run` and of the engine, stated once;
//! - [`engine`]: dispatch loop, per-job supervision, settle (ack / retry / dead-letter),
//!   re-attach and handoff;
//! - [`policy`]: the retry policy (the only place that decides retry vs dead-letter);
//! - [`clock`]: a wall clock that follows tokio's pausable time;
//! - [`ops`]: operator views (job records, dead letters, reports) as tables or JSON;
//! - [`trace`]: `kiro-consumer trace <item>` (the stored span tree, or the X-Ray link);
//! - [`cancel`]: `kiro-consumer cancel <item>` (record `cancelled`, fence bumped, build
//!   stopped);
//! - [`announce`]: the comment that announces a final failure to the item's assignees.
//!
//! Invariant: the engine reaches the outside world only through the ports of
//! `kiro-protocol`; backends are chosen in the binary's `wiring` module.

pub mod announce;
pub mod cancel;
pub mod clock;
pub mod defaults;
pub mod engine;
pub mod ops;
pub mod policy;
pub mod trace;

pub use engine::{Engine, EngineConfig, EngineStats, Ports, RunUntil, TickReport};
pub use policy::RetryPolicy;
