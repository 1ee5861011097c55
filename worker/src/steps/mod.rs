//! The pipeline's steps, one module each; `pipeline` runs them in order.
//!
//! Invariant: a step returns a classified [`kiro_protocol::Failure`] (never a panic or an
//! untyped error), and no step reads the environment — everything comes from `Config`,
//! the parsed `Inputs` and the run's resolved [`crate::repo_settings::Settings`].

pub mod agent;
pub mod brief;
pub mod coverage;
pub mod gates;
pub mod git;
pub mod junit;
pub mod partial;
pub mod process;
pub mod report;
pub mod setup;
pub mod spec;
pub mod steering;
pub mod test_run;
pub mod token;
