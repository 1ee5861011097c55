//! The adapters of the queue, lease, build, board and pull-request ports, except GitHub
//! (`kiro-github`) and the local build runner (`kiro-local-build`).
//!
//! - [`embedded`]: the one-machine default on the shared SQLite state database — the
//!   FIFO queue with its dead-letter queue, the leases and job records, and the board and
//!   pull requests of a human-editable board file — needing no cloud account;
//! - [`aws`]: SQS, DynamoDB, CodeBuild and ECS task protection;
//! - `testing` (feature `testing`, for tests only): the contract suites every adapter
//!   runs, the in-memory build runner, the forwarding spy and the moto launcher.
//!
//! Invariant: callers only ever see the ports of `kiro-protocol` and [`PortError`]s;
//! no SQLite or AWS SDK type leaks out of this crate (the AWS constructors that take an
//! SDK config or client aside).
//!
//! [`PortError`]: kiro_protocol::PortError

pub mod aws;
pub mod embedded;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
