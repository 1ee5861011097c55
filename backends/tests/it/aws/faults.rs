//! Fault injection on aws-smithy-mocks: what moto cannot do.
//!
//! - throttling and HTTP 5xx on the SQS and DynamoDB call sites: retried with backoff
//!   and classified (tokio paused time, so backoff costs nothing);
//! - `ReceiveRequestAttemptId`: the same id after a 5xx, a new one after throttling;
//! - an ambiguous lease write (HTTP 500, or an attempt timeout, although the write was
//!   applied): the consistent re-read concludes success without writing again;
//! - `dlq_redrive` through `StartMessageMoveTask` (moto answers it with HTTP 500).

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::operation::delete_message::DeleteMessageOutput;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::operation::receive_message::{ReceiveMessageError, ReceiveMessageOutput};
use aws_sdk_sqs::operation::send_message::{SendMessageError, SendMessageOutput};
use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskOutput;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_backends::aws::sqs::{SqsQueue, SqsSettings};
use kiro_backends::testing::contract::queue::message;
use kiro_protocol::{
    FailureClass, Fence, LeaseStore, ManualClock, ProjectKey, Receipt, Session, Timestamp,
    WorkQueue,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn throttled_send() -> SendMessageError {
    SendMessageError::generic(ErrorMetadata::builder().code("ThrottlingException").build())
}

fn queue(client: Sqs) -> SqsQueue {
    SqsQueue::new(
        client,
        SqsSettings::new("https://sqs/q.fifo", "https://sqs/q-dlq.fifo"),
        Arc::new(ManualClock::new(Timestamp(1_000_000))),
    )
}

fn no_retry_sqs(c: aws_sdk_sqs::config::Builder) -> aws_sdk_sqs::config::Builder {
    c.retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
}

#[tokio::test(start_paused = true)]
async fn send_is_retried_after_throttling_and_5xx() {
    let rule = mock!(Sqs::send_message)
        .sequence()
        .error(throttled_send)
        .http_status(500, None)
        .output(|| SendMessageOutput::builder().message_id("m-1").build())
        .build();
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::Sequential,
        &[&rule],
        no_retry_sqs
    ));
    let out = q.send(message("alpha", "d1", "b")).await.unwrap();
    assert_eq!(out.message_id.as_str(), "m-1");
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_send_sqs_would_refuse_is_refused_before_it_is_sent() {
    // moto accepts a 145-character deduplication id; SQS allows 128.
    let rule = mock!(Sqs::send_message)
        .then_output(|| SendMessageOutput::builder().message_id("m-1").build());
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        &[&rule],
        no_retry_sqs
    ));
    let err = q
        .send(message("alpha", &"d".repeat(145), "b"))
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert!(
        err.message.contains("message deduplication id") && err.message.contains("128"),
        "{err}"
    );
    let big = "x".repeat(kiro_backends::aws::sqs::limits::MAX_MESSAGE_BYTES + 1);
    let err = q.send(message("alpha", "d1", &big)).await.unwrap_err();
    assert!(err.message.contains("bytes"), "{err}");
    assert_eq!(rule.num_calls(), 0, "nothing reached SQS");
}

#[tokio::test(start_paused = true)]
async fn persistent_throttling_is_classified_after_the_budget() {
    let rule = mock!(Sqs::send_message)
        .sequence()
        .error(throttled_send)
        .repeatedly()
        .build();
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::Sequential,
        &[&rule],
        no_retry_sqs
    ));
    let err = q.send(message("alpha", "d1", "b")).await.unwrap_err();
    assert_eq!(err.class, FailureClass::Throttled);
    assert_eq!(rule.num_calls(), 5, "1 attempt + 4 retries");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let rule = mock!(Sqs::delete_message).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
            aws_smithy_types::body::SdkBody::from(
                r#"{"__type":"com.amazonaws.sqs#InvalidAddress","message":"bad"}"#,
            ),
        )
    });
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::Sequential,
        &[&rule],
        no_retry_sqs
    ));
    let err = q.ack(&Receipt::new("r")).await.unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn ack_and_depth_survive_5xx() {
    let del = mock!(Sqs::delete_message)
        .sequence()
        .http_status(503, None)
        .output(|| DeleteMessageOutput::builder().build())
        .build();
    let attrs = mock!(Sqs::get_queue_attributes)
        .sequence()
        .http_status(500, None)
        .output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, "3")
                .build()
        })
        .repeatedly()
        .build();
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::Sequential,
        &[&del, &attrs],
        no_retry_sqs
    ));
    q.ack(&Receipt::new("r")).await.unwrap();
    assert_eq!(del.num_calls(), 2);
    let d = q.depth().await.unwrap();
    assert_eq!(d.visible, 3);
    assert_eq!(d.dead_letters, 3);
}

#[tokio::test(start_paused = true)]
async fn receive_attempt_id_is_kept_after_5xx_and_renewed_after_throttling() {
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = ids.clone();
    let rule = mock!(Sqs::receive_message)
        .match_requests(move |r| {
            let id = r
                .receive_request_attempt_id()
                .unwrap_or_default()
                .to_owned();
            let mut v = seen.lock().unwrap();
            if v.last() != Some(&id) {
                v.push(id);
            }
            true
        })
        .sequence()
        .error(|| {
            ReceiveMessageError::generic(
                ErrorMetadata::builder().code("ThrottlingException").build(),
            )
        })
        .http_status(500, None)
        .output(|| ReceiveMessageOutput::builder().build())
        .build();
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::Sequential,
        &[&rule],
        no_retry_sqs
    ));
    let got = q.receive(10, Duration::from_secs(1)).await.unwrap();
    assert!(got.is_empty());
    assert_eq!(rule.num_calls(), 3);
    let ids = ids.lock().unwrap().clone();
    assert_eq!(
        ids.len(),
        2,
        "a new id after throttling, the same one after the 5xx: {ids:?}"
    );
    assert!(ids.iter().all(|i| !i.is_empty()));
}

#[tokio::test(start_paused = true)]
async fn redrive_starts_a_message_move_task_from_the_dlq() {
    let count = mock!(Sqs::get_queue_attributes)
        .match_requests(|r| {
            r.attribute_names()
                .contains(&QueueAttributeName::ApproximateNumberOfMessages)
        })
        .then_output(|| {
            GetQueueAttributesOutput::builder()
                .attributes(QueueAttributeName::ApproximateNumberOfMessages, "2")
                .build()
        });
    let arn_rule = |url: &'static str, arn: &'static str| {
        mock!(Sqs::get_queue_attributes)
            .match_requests(move |r| {
                r.attribute_names().contains(&QueueAttributeName::QueueArn)
                    && r.queue_url() == Some(url)
            })
            .then_output(move || {
                GetQueueAttributesOutput::builder()
                    .attributes(QueueAttributeName::QueueArn, arn)
                    .build()
            })
    };
    let arn_dlq = arn_rule(
        "https://sqs/q-dlq.fifo",
        "arn:aws:sqs:us-east-1:1:q-dlq.fifo",
    );
    let arn_main = arn_rule("https://sqs/q.fifo", "arn:aws:sqs:us-east-1:1:q.fifo");
    let start = mock!(Sqs::start_message_move_task)
        .match_requests(|r| {
            r.source_arn() == Some("arn:aws:sqs:us-east-1:1:q-dlq.fifo")
                && r.destination_arn() == Some("arn:aws:sqs:us-east-1:1:q.fifo")
        })
        .sequence()
        .http_status(500, None)
        .output(|| {
            StartMessageMoveTaskOutput::builder()
                .task_handle("t-1")
                .build()
        })
        .build();
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        &[&count, &arn_dlq, &arn_main, &start],
        no_retry_sqs
    ));
    assert_eq!(q.dlq_redrive().await.unwrap(), 2);
    assert_eq!(start.num_calls(), 2, "the 500 was retried");
}

fn no_retry_ddb(c: aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder {
    c.retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
}

fn lease_row(owner: &str, fence: u64, expires_at: i64) -> GetItemOutput {
    GetItemOutput::builder()
        .item("pk", AttributeValue::S("alpha".into()))
        .item("sk", AttributeValue::S("LEASE".into()))
        .item("owner", AttributeValue::S(owner.into()))
        .item("fence", AttributeValue::N(fence.to_string()))
        .item("expires_at", AttributeValue::N(expires_at.to_string()))
        .build()
}

fn session_row(id: &str, expires_at: i64) -> GetItemOutput {
    GetItemOutput::builder()
        .item("pk", AttributeValue::S(id.into()))
        .item("sk", AttributeValue::S("SESSION".into()))
        .item("expires_at", AttributeValue::N(expires_at.to_string()))
        .build()
}

fn session(expires_at: i64) -> Session {
    Session {
        id: "owner-a".into(),
        expires_at: Timestamp(expires_at),
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_renewal_answered_500_but_applied_is_concluded_by_a_consistent_reread() {
    let now = 5_000_000;
    let update = mock!(aws_sdk_dynamodb::Client::update_item).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(500).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        )
    });
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|r| r.consistent_read() == Some(true))
        .then_output(move || session_row("owner-a", now + 30_000));
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        &[&update, &read],
        no_retry_ddb
    );
    let store = DynamoLeaseStore::new(
        client,
        "t",
        Arc::new(ManualClock::new(Timestamp(now))),
        Duration::from_secs(1),
    );
    let renewed = store
        .renew_session(&session(now + 1_000), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, Timestamp(now + 30_000));
    assert_eq!(update.num_calls(), 1, "an applied write is not repeated");
    assert_eq!(read.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_renewal_answered_500_and_not_applied_is_written_again() {
    let now = 5_000_000;
    let update = mock!(aws_sdk_dynamodb::Client::update_item)
        .sequence()
        .http_status(500, None)
        .output(|| UpdateItemOutput::builder().build())
        .build();
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_output(move || session_row("owner-a", now + 1_000));
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        &[&update, &read],
        no_retry_ddb
    );
    let store = DynamoLeaseStore::new(
        client,
        "t",
        Arc::new(ManualClock::new(Timestamp(now))),
        Duration::from_secs(1),
    );
    let renewed = store
        .renew_session(&session(now + 1_000), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, Timestamp(now + 30_000));
    assert_eq!(update.num_calls(), 2);
    assert_eq!(read.num_calls(), 1, "re-read once before writing again");
}

#[tokio::test(start_paused = true)]
async fn lease_reads_are_retried_when_throttled() {
    let read = mock!(aws_sdk_dynamodb::Client::get_item)
        .sequence()
        .error(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemError::generic(
                ErrorMetadata::builder()
                    .code("ProvisionedThroughputExceededException")
                    .build(),
            )
        })
        .output(|| lease_row("owner-a", 7, 1))
        .build();
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        &[&read],
        no_retry_ddb
    );
    let store = DynamoLeaseStore::new(
        client,
        "t",
        Arc::new(ManualClock::new(Timestamp(0))),
        Duration::ZERO,
    );
    let view = store
        .get(&ProjectKey::parse("alpha").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.fence, Fence(7));
    assert_eq!(read.num_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn acks_go_out_in_batches_of_ten_with_per_entry_results() {
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, DeleteMessageBatchResultEntry};
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = sizes.clone();
    let rule = mock!(Sqs::delete_message_batch)
        .match_requests(move |req| {
            seen.lock().unwrap().push(req.entries().len());
            true
        })
        .then_output(|| {
            DeleteMessageBatchOutput::builder()
                .successful(
                    DeleteMessageBatchResultEntry::builder()
                        .id("0")
                        .build()
                        .unwrap(),
                )
                .failed(
                    BatchResultErrorEntry::builder()
                        .id("1")
                        .code("ReceiptHandleIsInvalid")
                        .sender_fault(true)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        });
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        &[&rule],
        no_retry_sqs
    ));
    let receipts: Vec<Receipt> = (0..15).map(|i| Receipt::new(format!("r-{i}"))).collect();
    let results = q.ack_batch(&receipts).await.unwrap();
    assert_eq!(
        *sizes.lock().unwrap(),
        [10, 5],
        "⌈15/10⌉ DeleteMessageBatch calls"
    );
    assert_eq!(results.len(), 15);
    // Entry 1 of each call failed with a stale receipt: fence-lost, the others are acked.
    for (i, r) in results.iter().enumerate() {
        if i == 1 || i == 11 {
            assert_eq!(
                r.as_ref().unwrap_err().class,
                FailureClass::FenceLost,
                "{i}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
}

/// A DynamoDB HTTP client whose first request never answers (the SDK's attempt timeout
/// fires) and whose later requests get `reply` — a write that timed out on the wire
/// although the table applied it.
fn first_call_hangs(reply: &'static str) -> (aws_sdk_dynamodb::Client, Arc<Mutex<Vec<String>>>) {
    use aws_smithy_runtime_api::client::http::{
        HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    #[derive(Debug)]
    struct Connector {
        calls: Arc<Mutex<Vec<String>>>,
        reply: &'static str,
    }
    impl aws_smithy_runtime_api::client::http::HttpConnector for Connector {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let target = request
                .headers()
                .get("x-amz-target")
                .unwrap_or_default()
                .to_owned();
            let mut calls = self.calls.lock().unwrap();
            calls.push(target);
            let first = calls.len() == 1;
            let reply = self.reply;
            HttpConnectorFuture::new(async move {
                if first {
                    std::future::pending::<()>().await;
                }
                let mut resp = aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(200).unwrap(),
                    aws_smithy_types::body::SdkBody::from(reply),
                );
                resp.headers_mut()
                    .insert("content-type", "application/x-amz-json-1.0");
                Ok(resp)
            })
        }
    }
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let connector = SharedHttpConnector::new(Connector {
        calls: calls.clone(),
        reply,
    });
    let http = http_client_fn(move |_, _| connector.clone());
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .http_client(http)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    (aws_sdk_dynamodb::Client::from_conf(config), calls)
}

#[tokio::test(start_paused = true)]
async fn a_session_renewal_that_times_out_but_was_applied_is_concluded_by_a_consistent_reread() {
    let now = 5_000_000;
    // The consistent re-read finds the write applied: the lease already runs to now + 30 s.
    let reply =
        r#"{"Item":{"pk":{"S":"owner-a"},"sk":{"S":"SESSION"},"expires_at":{"N":"5030000"}}}"#;
    let (client, calls) = first_call_hangs(reply);
    let store = DynamoLeaseStore::new(
        client,
        "t",
        Arc::new(ManualClock::new(Timestamp(now))),
        Duration::from_secs(1),
    );
    let renewed = store
        .renew_session(&session(now + 1_000), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, Timestamp(now + 30_000));
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["DynamoDB_20120810.UpdateItem", "DynamoDB_20120810.GetItem"],
        "the timed-out write is re-read, not repeated"
    );
}

/// A replay that held a letter past its list visibility may see SQS refuse that letter's
/// old receipt when giving it back: the replay still succeeds (the letter is in the DLQ
/// either way, visible when its visibility ends).
#[tokio::test(start_paused = true)]
async fn a_refused_give_back_does_not_fail_a_replay() {
    use aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchOutput;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, Message, MessageSystemAttributeName};
    let letter = |id: &str, group: &str| {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("r-{id}"))
            .body("{}")
            .attributes(MessageSystemAttributeName::MessageGroupId, group)
            .build()
    };
    let (a, b) = (letter("dl-a", "alpha"), letter("dl-b", "beta"));
    let receive = mock!(Sqs::receive_message)
        .sequence()
        .output(move || {
            ReceiveMessageOutput::builder()
                .messages(a.clone())
                .messages(b.clone())
                .build()
        })
        .output(|| ReceiveMessageOutput::builder().build())
        .build();
    let size = mock!(Sqs::get_queue_attributes).then_output(|| {
        GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::ApproximateNumberOfMessages, "2")
            .build()
    });
    let send = mock!(Sqs::send_message)
        .then_output(|| SendMessageOutput::builder().message_id("new-a").build());
    let delete = mock!(Sqs::delete_message).then_output(|| DeleteMessageOutput::builder().build());
    let give_back = mock!(Sqs::change_message_visibility_batch).then_output(|| {
        ChangeMessageVisibilityBatchOutput::builder()
            .set_successful(Some(Vec::new()))
            .failed(
                BatchResultErrorEntry::builder()
                    .id("0")
                    .code("MessageNotInflight")
                    .sender_fault(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    });
    let q = queue(mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        &[&receive, &size, &send, &delete, &give_back],
        no_retry_sqs
    ));
    let alpha = kiro_protocol::DlqSelection {
        project: Some(ProjectKey::parse("alpha").unwrap()),
        ..Default::default()
    };
    let report = q.dlq_replay(&alpha, false).await.unwrap();
    assert_eq!(report.replayed, [kiro_protocol::MessageId::new("new-a")]);
    assert_eq!(
        give_back.num_calls(),
        1,
        "the held beta letter was given back"
    );
    assert_eq!(report.unexamined, 0);
}
