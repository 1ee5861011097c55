//! Integration tests of `kiro-backends`, one binary for the crate: the contract suites
//! run against the embedded adapters on real SQLite files in temporary directories (plus
//! restart, multi-process and property (state-machine) tests), against the AWS adapters
//! on moto and scripted SDK responses, and against the tests' in-memory build runner.

mod aws;
mod builds;
mod lease;
mod lease_schedule;
mod queue;
