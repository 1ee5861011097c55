//! Test and operator support: create the FIFO queue pair this adapter works on.
//!
//! Invariant: only tests and operators call this; the adapter itself never creates
//! queues (infrastructure code does in production).

use crate::aws::classify::classify;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use kiro_protocol::PortError;

/// Create a FIFO queue and its FIFO DLQ named `<name>.fifo` and `<name>-dlq.fifo`
/// (tests and operators); returns their URLs. The redrive policy's `maxReceiveCount`
/// is a high safety net: dead-lettering is explicit.
pub async fn create_queues(client: &Client, name: &str) -> Result<(String, String), PortError> {
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .map_err(|e| classify("sqs:CreateQueue", &e))?;
    let dlq_url = dlq.queue_url.unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify("sqs:GetQueueAttributes", &e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let policy = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 100});
    let main = client
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .map_err(|e| classify("sqs:CreateQueue", &e))?;
    Ok((main.queue_url.unwrap_or_default(), dlq_url))
}
