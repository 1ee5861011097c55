//! Adapters for the queue, lease and build ports, and the contract suites they all pass.
//!
//! - [`embedded`]: the one-machine default — SQLite queue and leases, a local buildspec
//!   runner — needing no cloud account.
//! - [`contract`]: reusable test suites, one per port; every adapter runs them unchanged.
//!
//! Invariant: callers only ever see the ports of `kiro-protocol` and [`PortError`]s;
//! no SQLite (or, later, AWS SDK) type leaks out of this crate.
//!
//! [`PortError`]: kiro_protocol::PortError

pub mod aws;
pub mod contract;
pub mod embedded;
pub mod noop;
