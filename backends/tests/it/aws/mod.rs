//! The AWS adapters: contract suites on moto server, faults on aws-smithy-mocks.

mod codebuild;
mod dynamo;
mod ecs;
mod faults;
mod sqs;
mod transact;
