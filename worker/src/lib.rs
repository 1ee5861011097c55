//! `kiro-worker`: the pipeline that runs inside a build for one work item.
//!
//! checkout → the repository's settings (`.kiro/codebuild-worker.toml` over the
//! deployment's defaults, [`repo_settings`]) → validate spec and pull request → the
//! previous attempt's side branch, if any → steering sync → setup commands → agent
//! preflight (`kiro-cli whoami`) → agent on the open tasks → reports cleared → tests (+
//! JUnit counts) → coverage gate (lcov, Cobertura, Clover, Istanbul, llvm-cov,
//! coverage.py, Go, JaCoCo; only reports this run wrote) → on failing tests or short
//! coverage, the agent again with a failure brief (the fix loop, up to `fix_rounds` more
//! rounds) → fence check → commit (never reports or test artefacts) and push (or, when
//! the gates still fail, the work to the side branch) → fence check → report on the pull
//! request → board status; and, whatever happened, the outcome file that the build
//! exports for the consumer.
//!
//! Invariant: every value that came from the board is re-parsed with the protocol's
//! newtypes before use; every fenced side effect (push, report, board) happens only
//! after checking the build's fence is still current; the outcome file is always
//! written and carries the failure — the process itself exits 0 when it could write it,
//! except for a bad setting ([`ranges`]), which also exits 2.

pub mod checkout_fs;
pub mod child_env;
pub mod config;
mod fence;
pub mod outcome_file;
pub mod pipeline;
pub mod ranges;
pub mod repo_settings;
pub mod rounds;
mod run_state;
mod side_branch;
pub mod steps;
pub mod tasks;
pub mod wiring;

pub use config::{Cli, Command, Config, Inputs};
pub use pipeline::{run, run_and_write};
pub use wiring::Ports;
