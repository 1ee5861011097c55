//! The ports: small, object-safe async traits used as `Arc<dyn …>`.
//!
//! Every port has an embedded implementation and a cloud implementation, and both pass the
//! same contract suite (in `kiro_backends::testing::contract` for the queue, lease and build
//! ports).
//! Errors are [`crate::PortError`]s already classified by the adapter.

pub mod board;
pub mod build;
pub mod lease;
pub mod protection;
pub mod pulls;
pub mod queue;
