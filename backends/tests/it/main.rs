//! Integration tests of `kiro-backends`, one binary for the crate: the contract suites
//! run against the embedded adapters on real SQLite files in temporary directories,
//! plus restart, multi-process and property (state-machine) tests.

mod aws;
mod builds;
mod lease;
mod queue;
