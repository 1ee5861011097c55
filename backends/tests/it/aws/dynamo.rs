//! The `LeaseStore` contract suite against `DynamoLeaseStore` on moto (DynamoDB).
//!
//! Real time (moto has no time travel): sessions last 2 s, the skew bound is 1 s, and
//! `advance` sleeps. Every check gets its own table.

use async_trait::async_trait;
use kiro_backends::aws::dynamo::{DynamoLeaseStore, create_table};
use kiro_backends::testing::contract::lease::LeaseHarness;
use kiro_backends::testing::moto::{config, unique};
use kiro_protocol::{LeaseStore, SystemClock};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct MotoLeases;

pub async fn new_store() -> DynamoLeaseStore {
    let client = aws_sdk_dynamodb::Client::new(&config().await);
    let table = unique("leases");
    create_table(&client, &table).await.expect("create table");
    DynamoLeaseStore::new(client, table, Arc::new(SystemClock), Duration::from_secs(1))
}

#[async_trait]
impl LeaseHarness for MotoLeases {
    async fn store(&self) -> Arc<dyn LeaseStore> {
        Arc::new(new_store().await)
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    fn skew(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
}

kiro_backends::lease_contract!(
    MotoLeases,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
);
