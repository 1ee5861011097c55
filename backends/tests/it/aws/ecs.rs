//! `EcsTaskProtection` against a local task metadata endpoint (wiremock on 127.0.0.1)
//! and scripted `UpdateTaskProtection` answers (aws-smithy-mocks); `NoProtection` and
//! the choice between them.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::operation::update_task_protection::{
    UpdateTaskProtectionInput, UpdateTaskProtectionOutput,
};
use aws_sdk_ecs::types::Failure as EcsFailure;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use kiro_backends::aws::ecs::{EcsTaskProtection, NoProtection, protection_for};
use kiro_backends::aws::retry::CallBackoff;
use kiro_protocol::{FailureClass, TaskProtection};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/kiro";
const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/kiro/0123456789abcdef";

async fn metadata(times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v4/abc-123/task"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "Cluster": CLUSTER,
            "TaskARN": TASK,
            "Family": "kiro-consumer",
            "Revision": "7",
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "Containers": [],
        })))
        .expect(times)
        .mount(&server)
        .await;
    server
}

type Seen = Arc<Mutex<Vec<UpdateTaskProtectionInput>>>;

fn recording(seen: &Seen) -> Rule {
    let seen = seen.clone();
    mock!(Client::update_task_protection).then_compute_output(move |input| {
        seen.lock().unwrap().push(input.clone());
        UpdateTaskProtectionOutput::builder().build()
    })
}

fn protection(server: &MockServer, rules: &[Rule]) -> EcsTaskProtection {
    let refs: Vec<&Rule> = rules.iter().collect();
    let client = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, refs, |c| c
        .retry_config(RetryConfig::disabled()));
    EcsTaskProtection::from_client(client, format!("{}/v4/abc-123", server.uri()))
        .with_expiry(Duration::from_secs(90 * 60))
        .with_backoff(CallBackoff {
            max_retries: 3,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        })
}

#[tokio::test]
async fn protection_names_the_task_from_metadata_and_sets_expiry() {
    let server = metadata(1).await;
    let seen = Seen::default();
    let p = protection(&server, &[recording(&seen)]);
    p.set(true).await.unwrap();
    p.set(true).await.unwrap();
    p.set(false).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for i in seen.iter() {
        assert_eq!(i.cluster(), Some(CLUSTER));
        assert_eq!(i.tasks(), [TASK]);
    }
    assert_eq!(seen[0].protection_enabled(), Some(true));
    assert_eq!(seen[0].expires_in_minutes(), Some(90));
    assert_eq!(seen[2].protection_enabled(), Some(false));
    assert_eq!(seen[2].expires_in_minutes(), None);
    assert_eq!(p.refresh_every(), Some(Duration::from_secs(45 * 60)));
    // `expect(1)`: the metadata was read once for three calls (checked on drop).
    drop(server);
}

#[tokio::test]
async fn throttling_and_5xx_are_retried() {
    let server = metadata(1).await;
    let seen = Seen::default();
    let faults = mock!(Client::update_task_protection)
        .sequence()
        .http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            )
        })
        .http_response(|| HttpResponse::new(StatusCode::try_from(503).unwrap(), SdkBody::empty()))
        .build();
    let p = protection(&server, &[faults.clone(), recording(&seen)]);
    p.set(true).await.unwrap();
    assert_eq!(faults.num_calls(), 2);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_task_or_denied_call_is_an_error_with_its_class() {
    let server = metadata(1).await;
    let refused = mock!(Client::update_task_protection)
        .match_requests(|i| i.protection_enabled() == Some(true))
        .then_output(|| {
            UpdateTaskProtectionOutput::builder()
                .failures(
                    EcsFailure::builder()
                        .arn(TASK)
                        .reason("TASK_NOT_VALID")
                        .detail("the task is not part of a service")
                        .build(),
                )
                .build()
        });
    let denied = mock!(Client::update_task_protection).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(r#"{"__type":"AccessDeniedException","message":"not allowed"}"#),
        )
    });
    let p = protection(&server, &[refused.clone(), denied.clone()]);
    let e = p.set(true).await.unwrap_err();
    assert_eq!(e.class, FailureClass::PermanentInput, "{e}");
    assert!(e.message.contains("TASK_NOT_VALID"), "{e}");
    let e = p.set(false).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Auth, "{e}");
    assert_eq!(denied.num_calls(), 1, "auth failures are not retried");
}

#[tokio::test]
async fn a_failing_metadata_endpoint_is_transient_and_read_again_later() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v4/abc-123/task"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v4/abc-123/task"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"Cluster": CLUSTER, "TaskARN": TASK})),
        )
        .mount(&server)
        .await;
    let seen = Seen::default();
    let p = protection(&server, &[recording(&seen)]);
    let e = p.set(true).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Transient, "{e}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no ECS call without a task"
    );
    p.set(true).await.unwrap();
    assert_eq!(p.task().await.unwrap().task_arn, TASK);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn off_ecs_protection_is_a_no_op() {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let p = protection_for(&sdk, None);
    assert!(format!("{p:?}").contains("NoProtection"), "{p:?}");
    p.set(true).await.unwrap();
    p.set(false).await.unwrap();
    assert_eq!(p.refresh_every(), None);
    assert!(format!("{:?}", protection_for(&sdk, Some(" ".into()))).contains("NoProtection"));
    let on_ecs = protection_for(&sdk, Some("http://169.254.170.2/v4/abc".into()));
    assert!(
        format!("{on_ecs:?}").contains("EcsTaskProtection"),
        "{on_ecs:?}"
    );
    NoProtection::new().set(true).await.unwrap();
}
