//! The AWS adapters: contract suites on moto server, faults on aws-smithy-mocks.

mod codebuild;
mod codebuild_tokens;
mod dynamo;
mod ecs;
mod fake_codebuild;
mod faults;
mod sqs;
mod transact;
