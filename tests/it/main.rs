//! End-to-end tests across the binaries on the embedded default: the README's quick
//! start in a temp dir, a consumer SIGKILLed while its builds run, and the fault suite
//! (consumers SIGKILLed at random and redeployed with SIGTERM over many items).
//!
//! They launch the real `kiro-producer`, `kiro-consumer`, `kiro-local-build` and
//! `kiro-worker` binaries from the workspace's target directory; `scripts/test-all.sh`
//! builds them (`cargo build --workspace --bins`) before running the tests.

mod aws;
mod cancel;
mod crash;
mod emulator;
mod fault;
mod logs;
mod otlp;
mod quickstart;
mod rehearsal;
mod repo_settings;
mod support;
mod trace;
