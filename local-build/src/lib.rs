//! The local build runner: executes `buildspec.yml` on this machine the way CodeBuild
//! would, in detached processes recorded in the state database.
//!
//! - [`buildspec`]: the version 0.2 parser;
//! - [`exec`]: runs the phases (one shell per phase, environment carried between phases,
//!   time limit, logs);
//! - [`runner`]: [`LocalBuildRunner`], the [`BuildRunner`](kiro_protocol::BuildRunner)
//!   over the `builds` table, and [`run_recorded_build`], run by the `kiro-local-build`
//!   process it launches;
//! - [`process`]: signals and process liveness;
//! - `src/main.rs`: the `kiro-local-build` binary, thin glue over [`run_recorded_build`].
//!
//! It is an adapter of the `BuildRunner` port next to `kiro-backends` (not inside it):
//! it shares only the state database ([`kiro_statedb`]) with the embedded adapters.
//!
//! Invariant: a build is a row in `builds` plus one process; the row is the truth any
//! runner on the same database reports, so builds outlive (and are re-attached by) the
//! consumer that started them, and a build whose process vanished is reported FAULT
//! instead of running forever.

pub mod buildspec;
pub mod exec;
pub mod process;
pub mod runner;

pub use buildspec::{BuildSpec, BuildSpecError, OnFailure, Phase, PhaseName};
pub use runner::{LocalBuildConfig, LocalBuildRunner, SCHEMA, locate_launcher, run_recorded_build};
