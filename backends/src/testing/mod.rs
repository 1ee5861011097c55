//! TEST SUPPORT, compiled only for tests (`cfg(test)`) and with the `testing` feature,
//! which only `[dev-dependencies]` turn on: release binaries contain none of it (as
//! object_store gates its `integration` module).
//!
//! - [`contract`]: one reusable suite per port, and the macros that make a test of each
//!   check (`queue_contract!`, `lease_contract!`, `build_contract!`);
//! - [`builds`]: [`InMemoryBuilds`], the one in-memory build runner (ends builds at once,
//!   when the test says, or as a task says);
//! - [`spy`]: [`Spy`], any port adapter with its calls counted, every method forwarded;
//! - [`moto`]: one moto server (the AWS API emulator) per test binary;
//! - [`sqs_calls`]: an SQS queue on moto with every SQS call counted.
//!
//! Invariant: nothing outside this module depends on it; it uses only the crate's public
//! API and the ports.

pub mod builds;
pub mod contract;
pub mod moto;
pub mod spy;
pub mod sqs_calls;

pub use builds::{BuildTask, Ending, Finished, InMemoryBuild, InMemoryBuilds};
pub use spy::{Call, Spy, Tally};
pub use sqs_calls::{SqsCalls, counted_queue};
