//! AWS adapters for the queue, lease, build and task-protection ports.
//!
//! - [`settings`]: one [`settings::AwsSettings`] → one `aws_config::SdkConfig` (region,
//!   endpoint override for every service, test credentials for emulators);
//! - [`classify`]: the ONE place where an AWS SDK error becomes a [`PortError`] class;
//! - [`retry`]: retries with backoff and jitter ([`retry::CallBackoff`]), only for classes
//!   that allow it;
//! - `call`: the one shape of a call — build, send, classify, retry — every adapter uses;
//! - [`sqs`]: `WorkQueue` on an SQS FIFO queue with a FIFO dead-letter queue (and, in
//!   [`sqs::limits`], SQS's limits on one message, checked before every send);
//! - [`dynamo`]: `LeaseStore` on one DynamoDB table (leases and job records);
//! - [`codebuild`]: `BuildRunner` on AWS CodeBuild;
//! - [`ecs`]: `TaskProtection` through the ECS task scale-in protection endpoint.
//!
//! (The moto server the tests of this and other crates share is test support:
//! `crate::testing::moto`.)
//!
//! Invariant: no AWS SDK type crosses this module's public surface except in the
//! constructors that take an `SdkConfig` or a client (so tests can hand in mocked clients);
//! every port method returns [`PortError`]s classified by [`classify`].
//!
//! [`PortError`]: kiro_protocol::PortError

mod call;
pub mod classify;
pub mod codebuild;
pub mod dynamo;
pub mod ecs;
pub mod retry;
pub mod settings;
pub mod sqs;
