//! The `WorkQueue` contract suite against `SqsQueue` on moto (SQS FIFO + FIFO DLQ).
//!
//! Time is real here (moto has no time travel): visibility is 2 s and `advance` sleeps.
//! Two moto gaps are covered by the adapter itself, so those checks run on moto too:
//! dedup after delete (moto forgets it; the adapter's dedup ledger answers repeated sends
//! within the window as SQS would) and stale receipts (moto accepts them; the adapter's
//! receipt ledger refuses receipts it has superseded). `dlq_redrive` uses
//! StartMessageMoveTask, which moto answers with HTTP 500, so it is checked on
//! aws-smithy-mocks in `faults.rs` and skipped here; `dedup_expires_after_window` needs 5
//! real minutes and is skipped too.

use async_trait::async_trait;
use kiro_backends::aws::sqs::{SqsQueue, SqsSettings, create_queues};
use kiro_backends::testing::contract::queue::{QueueHarness, message};
use kiro_backends::testing::moto::{config, unique};
use kiro_protocol::{SystemClock, TraceContext, WorkQueue};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct MotoQueues;

pub async fn new_queue() -> SqsQueue {
    let client = aws_sdk_sqs::Client::new(&config().await);
    let (q, dlq) = create_queues(&client, &unique("q"))
        .await
        .expect("create queues");
    let mut s = SqsSettings::new(q, dlq);
    s.visibility_timeout = Duration::from_secs(2);
    s.list_visibility = Duration::from_secs(5);
    SqsQueue::new(client, s, Arc::new(SystemClock))
}

#[async_trait]
impl QueueHarness for MotoQueues {
    async fn queue(&self) -> Arc<dyn WorkQueue> {
        Arc::new(new_queue().await)
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn receive_wait(&self) -> Duration {
        Duration::from_secs(1)
    }
}

kiro_backends::queue_contract!(
    MotoQueues,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    // moto answers StartMessageMoveTask with HTTP 500 (redrive is checked in faults.rs);
    // the dedup window is 5 real minutes.
    skip [redrive_moves_everything, dedup_expires_after_window],
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xray_header_and_standard_attributes_travel() {
    let q = new_queue().await;
    let mut msg = message("alpha", "x-1", "body");
    msg.trace = TraceContext {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        tracestate: Some("k=v".into()),
        xray: Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        ),
    };
    q.send(msg.clone()).await.unwrap();
    let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].trace, msg.trace);
    assert_eq!(
        got[0].attributes.get("kiro.schema").map(String::as_str),
        Some("1")
    );
    assert_eq!(got[0].dedup.as_str(), "x-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_many_receipts_reports_each() {
    let q = new_queue().await;
    for i in 0..12 {
        q.send(message(
            &format!("g{i}"),
            &format!("d{i}"),
            &format!("b{i}"),
        ))
        .await
        .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 12 {
        let batch = q.receive(10, Duration::from_secs(1)).await.unwrap();
        assert!(!batch.is_empty(), "all 12 groups are free");
        got.extend(batch);
    }
    let mut receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
    q.ack(&got[0].receipt).await.unwrap();
    receipts.push(kiro_protocol::Receipt::new("garbage"));
    let res = q.extend(&receipts, Duration::from_secs(30)).await.unwrap();
    assert_eq!(res.len(), 13);
    assert_eq!(
        res[0].as_ref().unwrap_err().class,
        kiro_protocol::FailureClass::FenceLost
    );
    assert!(res[1..12].iter().all(Result::is_ok), "{res:?}");
    assert!(res[12].is_err(), "a garbage receipt fails alone");
}
