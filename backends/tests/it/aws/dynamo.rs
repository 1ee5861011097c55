//! The `LeaseStore` contract suite against `DynamoLeaseStore` on moto (DynamoDB), and the
//! session/fence property over random schedules with clock skew (`lease_schedule.rs`).
//!
//! Contract: real time (moto has no time travel): sessions last 2 s, the skew bound is
//! 1 s, and `advance` sleeps. Every check gets its own table. The property test needs no
//! sleep: DynamoDB never judges time (every expiry is compared with values the store
//! sends from its `Clock`), so each consumer's store reads its own manual clock.

use async_trait::async_trait;
use kiro_backends::aws::dynamo::{DynamoLeaseStore, create_table};
use kiro_backends::testing::contract::lease::LeaseHarness;
use kiro_backends::testing::moto::{config, unique};
use kiro_protocol::{LeaseStore, SystemClock};
use proptest::prelude::*;
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

/// The consumers' stores of one schedule: one moto table, one store per consumer clock.
async fn moto_world(offsets: &[u64]) -> crate::lease_schedule::World {
    use crate::lease_schedule::{SKEW_MS, World, clocks};
    let client = aws_sdk_dynamodb::Client::new(&config().await);
    let table = unique("schedule");
    create_table(&client, &table).await.expect("create table");
    let clocks = clocks(1_000_000, offsets);
    let stores = clocks
        .iter()
        .map(|c| {
            Arc::new(DynamoLeaseStore::new(
                client.clone(),
                table.clone(),
                Arc::new(c.clone()),
                Duration::from_millis(SKEW_MS),
            )) as Arc<dyn LeaseStore>
        })
        .collect();
    World {
        stores,
        clocks,
        prefix: String::new(),
    }
}

#[tokio::test]
async fn a_takeover_waits_out_the_skew_window_on_dynamodb() {
    let (offsets, ops) = crate::lease_schedule::skew_window();
    crate::lease_schedule::run(moto_world(&offsets).await, ops).await;
}

proptest! {
    // Each case is a few hundred calls to moto: fewer cases than on SQLite (whose 128
    // cases find a takeover inside the skew window; `a_takeover_waits_out_the_skew_window`
    // walks through it on both stores).
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn sessions_keep_one_believed_holder_per_project_and_fences_safe_on_dynamodb(
        offsets in crate::lease_schedule::offsets(),
        ops in proptest::collection::vec(crate::lease_schedule::op(), 1..80),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let world = moto_world(&offsets).await;
            crate::lease_schedule::run(world, ops).await;
        });
    }
}
