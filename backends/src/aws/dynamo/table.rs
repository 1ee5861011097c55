//! The lease table's schema ([`create_table`]) and the decoding of a job row.
//!
//! Invariant: the schema here is the one `mod.rs` documents and infrastructure creates.

use super::{Item, get_s};
use crate::aws::classify::classify;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use kiro_protocol::{JobRecord, PortError};

pub(super) fn parse_job(row: &Item) -> Result<JobRecord, PortError> {
    let json = get_s(row, "job").ok_or_else(|| PortError::internal("job row without `job`"))?;
    serde_json::from_str(json).map_err(|e| PortError::internal(format!("job record JSON: {e}")))
}

/// Create the lease table `name` (on-demand billing, TTL on `expires_ttl`) for tests and
/// operators. Infrastructure code creates the same schema in production.
pub async fn create_table(client: &Client, name: &str) -> Result<(), PortError> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| PortError::internal(format!("attribute definition: {e}")))
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(|e| PortError::internal(format!("key schema: {e}")))
    };
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| classify("dynamodb:CreateTable", &e))?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_ttl")
                .build()
                .map_err(|e| PortError::internal(format!("ttl spec: {e}")))?,
        )
        .send()
        .await
        .map_err(|e| classify("dynamodb:UpdateTimeToLive", &e))?;
    Ok(())
}
