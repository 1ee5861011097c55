//! OpenTelemetry attribute keys: the messaging conventions and the project's own.
//!
//! Every span attribute the project sets or reads is named here once: [`crate::otel`]
//! writes them, the span store ([`crate::spans`]) and `kiro-consumer trace` read them.
//! Invariant: constants only; this module imports nothing.

pub const MESSAGING_SYSTEM: &str = "messaging.system";
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
pub const MESSAGING_BATCH_MESSAGE_COUNT: &str = "messaging.batch.message_count";
/// The SQS FIFO message group (the project).
pub const MESSAGING_GROUP: &str = "messaging.aws.sqs.message_group_id";
pub const PROJECT: &str = "kiro.project";
pub const ITEM: &str = "kiro.item";
pub const FENCE: &str = "kiro.fence";
pub const BUILD_ID: &str = "kiro.build_id";
pub const FAILURE_CLASS: &str = "kiro.failure_class";
pub const ATTEMPT: &str = "kiro.attempt";
