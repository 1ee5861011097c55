//! `TransactWriteItems` cancelled with `TransactionCanceledException`: the cancellation
//! reasons decide the class (aws-smithy-mocks; moto never cancels for a conflict or for
//! throttling). A conflict or a throttled item is retried and the retried write succeeds;
//! a failed condition is a lost fence and is never retried. And a takeover transaction
//! whose answer is lost is settled by a re-read.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use kiro_backends::aws::dynamo::DynamoLeaseStore;
use kiro_protocol::{
    FailureClass, Fence, ItemId, JobRecord, Lease, LeaseError, LeaseStore, ManualClock, MessageId,
    ProjectKey, Session, Timestamp, TraceContext,
};
use std::sync::Arc;
use std::time::Duration;

const NOW: i64 = 5_000_000;

/// A `TransactionCanceledException` as DynamoDB sends it: one reason per item of the
/// transaction (the lease update, then the job put).
fn cancelled(reasons: &[&str]) -> HttpResponse {
    let list: Vec<String> = reasons
        .iter()
        .map(|c| format!(r#"{{"Code":"{c}","Message":"reason {c}"}}"#))
        .collect();
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [{}]","CancellationReasons":[{}]}}"#,
        reasons.join(", "),
        list.join(",")
    );
    HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::from(body))
}

fn lease() -> Lease {
    Lease {
        project: ProjectKey::parse("alpha").unwrap(),
        owner: "owner-a".into(),
        fence: Fence(3),
    }
}

fn job() -> JobRecord {
    JobRecord::new(
        ProjectKey::parse("alpha").unwrap(),
        ItemId::parse("A-1").unwrap(),
        MessageId::new("m-1"),
        Fence(3),
        TraceContext::default(),
        Timestamp(NOW),
    )
}

fn lease_row(owner: &str, fence: u64) -> GetItemOutput {
    GetItemOutput::builder()
        .item("pk", AttributeValue::S("alpha".into()))
        .item("sk", AttributeValue::S("LEASE".into()))
        .item("owner", AttributeValue::S(owner.into()))
        .item("fence", AttributeValue::N(fence.to_string()))
        .item("expires_at", AttributeValue::N((NOW + 30_000).to_string()))
        .build()
}

fn store(rules: &[&Rule]) -> DynamoLeaseStore {
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
    DynamoLeaseStore::new(
        client,
        "t",
        Arc::new(ManualClock::new(Timestamp(NOW))),
        Duration::from_secs(1),
    )
}

/// The first transaction is cancelled for `reasons`, the second goes through.
async fn cancelled_once_then_written(reasons: &'static [&'static str]) -> usize {
    let tx = mock!(Client::transact_write_items)
        .sequence()
        .http_response(move || cancelled(reasons))
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let s = store(&[&tx]);
    s.record(&lease(), &job())
        .await
        .unwrap_or_else(|e| panic!("{reasons:?}: the retried write must succeed: {e}"));
    tx.num_calls()
}

#[tokio::test(start_paused = true)]
async fn a_transaction_conflict_is_retried_and_the_retry_succeeds() {
    assert_eq!(
        cancelled_once_then_written(&["None", "TransactionConflict"]).await,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_transaction_is_retried_and_the_retry_succeeds() {
    for reasons in [
        &["ThrottlingError", "None"][..],
        &["None", "ProvisionedThroughputExceeded"][..],
        &["RequestLimitExceeded", "None"][..],
    ] {
        // `'static` slices for the mock's closure.
        let reasons: &'static [&'static str] = Box::leak(reasons.to_vec().into_boxed_slice());
        assert_eq!(cancelled_once_then_written(reasons).await, 2, "{reasons:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn persistent_cancellations_are_classified_by_their_reasons() {
    for (reasons, class) in [
        (
            &["None", "TransactionConflict"][..],
            FailureClass::Transient,
        ),
        (&["ThrottlingError", "None"][..], FailureClass::Throttled),
        (
            &["None", "ProvisionedThroughputExceeded"][..],
            FailureClass::Throttled,
        ),
        (
            &["RequestLimitExceeded", "None"][..],
            FailureClass::Throttled,
        ),
        (
            &["None", "ValidationError"][..],
            FailureClass::PermanentInput,
        ),
    ] {
        let reasons: &'static [&'static str] = Box::leak(reasons.to_vec().into_boxed_slice());
        let tx = mock!(Client::transact_write_items)
            .sequence()
            .http_response(move || cancelled(reasons))
            .repeatedly()
            .build();
        let err = store(&[&tx]).record(&lease(), &job()).await.unwrap_err();
        let LeaseError::Port(p) = &err else {
            panic!("{reasons:?}: expected a port error, got {err:?}");
        };
        assert_eq!(p.class, class, "{reasons:?}: {p}");
        let calls = if class == FailureClass::PermanentInput {
            1
        } else {
            5
        };
        assert_eq!(tx.num_calls(), calls, "{reasons:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_condition_is_a_lost_fence_and_never_retried() {
    let tx = mock!(Client::transact_write_items)
        .then_http_response(|| cancelled(&["ConditionalCheckFailed", "None"]));
    let read = mock!(Client::get_item).then_output(|| lease_row("owner-b", 4));
    let err = store(&[&tx, &read])
        .record(&lease(), &job())
        .await
        .unwrap_err();
    match err {
        LeaseError::FenceLost { mine, current, .. } => {
            assert_eq!((mine, current), (Fence(3), Some(Fence(4))));
        }
        other => panic!("expected a lost fence, got {other:?}"),
    }
    assert_eq!(tx.num_calls(), 1);
}

/// A takeover whose transaction is answered 500 but was applied: the consistent re-read
/// finds the acquire token on the lease row, so the takeover stands (fence + 1) and the
/// transaction is not sent again.
#[tokio::test(start_paused = true)]
async fn a_takeover_answered_500_but_applied_is_concluded_by_a_reread() {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_types::error::ErrorMetadata;
    use std::sync::Mutex;

    let expired = (NOW - 10_000).to_string();
    let held = lease_row("old-consumer", 3);
    let mut held_row = held.item().cloned().unwrap_or_default();
    held_row.insert("expires_at".into(), AttributeValue::N(expired.clone()));
    let refused = mock!(Client::update_item).then_error(move || {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .set_item(Some(held_row.clone()))
                .meta(
                    ErrorMetadata::builder()
                        .code("ConditionalCheckFailedException")
                        .build(),
                )
                .build(),
        )
    });
    let holder_session = mock!(Client::get_item).then_output(move || {
        GetItemOutput::builder()
            .item("pk", AttributeValue::S("old-consumer".into()))
            .item("sk", AttributeValue::S("SESSION".into()))
            .item("expires_at", AttributeValue::N(expired.clone()))
            .build()
    });
    let token: Arc<Mutex<String>> = Arc::default();
    let seen = token.clone();
    let tx = mock!(Client::transact_write_items)
        .match_requests(move |r| {
            let tok = r.transact_items()[0]
                .update()
                .and_then(|u| u.expression_attribute_values())
                .and_then(|v| v.get(":tok"))
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            *seen.lock().unwrap() = tok;
            true
        })
        .then_http_response(|| {
            HttpResponse::new(StatusCode::try_from(500).unwrap(), SdkBody::empty())
        });
    let reread = mock!(Client::get_item).then_output(move || {
        let mut out = lease_row("me", 4);
        out.item.get_or_insert_with(Default::default).insert(
            "acquire_token".into(),
            AttributeValue::S(token.lock().unwrap().clone()),
        );
        out
    });
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        &[&refused, &holder_session, &tx, &reread],
        |c| c.retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
    );
    let store = DynamoLeaseStore::new(
        client,
        "t",
        Arc::new(ManualClock::new(Timestamp(NOW))),
        Duration::from_secs(1),
    );
    let me = Session {
        id: "me".into(),
        expires_at: Timestamp(NOW + 30_000),
    };
    let lease = store
        .acquire(&ProjectKey::parse("alpha").unwrap(), &me)
        .await
        .unwrap_or_else(|e| panic!("the applied takeover stands: {e}"));
    assert_eq!((lease.owner.as_str(), lease.fence), ("me", Fence(4)));
    assert_eq!(tx.num_calls(), 1, "an applied takeover is not repeated");
    assert_eq!(reread.num_calls(), 1);
}
