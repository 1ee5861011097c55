//! Contract test suites, one per port, written as reusable async functions so the
//! embedded adapters and the AWS adapters run exactly the same checks.

pub mod build;
pub mod lease;
pub mod queue;
