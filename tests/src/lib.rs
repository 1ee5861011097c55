//! Test support for the end-to-end tests in `it/` (this crate is `publish = false` and
//! never part of a release binary).
//!
//! - [`aws`]: the AWS emulator of the deployment rehearsal — one local endpoint that
//!   emulates CodeBuild and ECS task protection, forwards everything else to moto, and
//!   records every call with the role that made it; plus an IAM evaluator.
//!
//! The end-to-end tests across the binaries live in `it/`.

pub mod aws;
