//! Integration tests of `kiro-local-build`, one binary for the crate: the build contract
//! suite and the runner's own behaviour, on real `kiro-local-build` processes and real
//! SQLite files in temporary directories.

mod build;
mod processes;
mod reattach;
mod support;
