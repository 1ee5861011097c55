//! The emulator's other services: Secrets Manager and Parameter Store variables resolved
//! as the service role, the credentials and task-metadata endpoints, ECS task protection,
//! call recording, and injected faults.

use super::{CONSUMER, SLEEPY, fixture, request, unique, wait_finished};
use kiro_backends::aws::codebuild::CodeBuildRunner;
use kiro_backends::aws::ecs::EcsTaskProtection;
use kiro_backends::aws::retry::CallBackoff;
use kiro_backends::aws::settings::{AwsSettings, sdk_config};
use kiro_protocol::{BuildRunner, BuildState, TaskProtection};
use kiro_tests::aws::{AwsEmulator, EmulatorConfig, EnvVar, ProjectSpec};
use serde_json::json;
use std::time::Duration;
#[tokio::test(flavor = "multi_thread")]
async fn secrets_resolve_from_moto_as_the_service_role() {
    let secret = unique("kiro/app");
    let token = unique("kiro/token");
    let dir = tempfile::tempdir().unwrap();
    let emu = AwsEmulator::start(EmulatorConfig::new(dir.path()))
        .await
        .unwrap();
    for (name, value) in [
        (
            &secret,
            json!({"private_key": "PEM-DATA", "app_id": 7}).to_string(),
        ),
        (&token, "ghp_plain".to_owned()),
    ] {
        let (status, answer) = emu
            .call(
                "admin",
                "secretsmanager",
                "secretsmanager.CreateSecret",
                json!({"Name": name, "SecretString": value}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    let spec = format!(
        "version: 0.2\nenv:\n  secrets-manager:\n    TOKEN: {token}\n  exported-variables: [TOKEN, KEY, APP]\n\
         phases:\n  build:\n    commands:\n      - 'true'\n"
    );
    emu.create_project(
        ProjectSpec::new("p-secrets", "codebuild", &spec)
            .env(EnvVar::secret("KEY", &format!("{secret}:private_key")))
            .env(EnvVar::secret("APP", &format!("{secret}:app_id"))),
    );
    emu.add_credentials("test", "test", CONSUMER);
    let sdk = sdk_config(&AwsSettings::new("us-east-1").with_endpoint(emu.endpoint())).await;
    let runner = CodeBuildRunner::new(&sdk, "p-secrets").with_backoff(CallBackoff::none());
    let id = runner.start(&request("tok", &[])).await.unwrap();
    let s = wait_finished(&runner, &id).await;
    assert_eq!(s.state, BuildState::Succeeded, "{:?}", s.message);
    assert_eq!(
        s.exported.get("TOKEN").map(String::as_str),
        Some("ghp_plain")
    );
    assert_eq!(s.exported.get("KEY").map(String::as_str), Some("PEM-DATA"));
    assert_eq!(s.exported.get("APP").map(String::as_str), Some("7"));
    let reads: Vec<_> = emu
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("GetSecretValue"))
        .collect();
    assert_eq!(reads.len(), 3, "{reads:#?}");
    for c in &reads {
        assert_eq!(c.role.as_deref(), Some("codebuild"), "{c:?}");
        assert_eq!(c.status, Some(200));
        assert!(
            c.response_arn
                .as_deref()
                .is_some_and(|a| a.starts_with("arn:aws:secretsmanager:"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unresolvable_secret_fails_the_build_in_provisioning() {
    let p = ProjectSpec::new("p-nosecret", "codebuild", SLEEPY)
        .env(EnvVar::secret("KIRO_API_KEY", &unique("missing/secret")));
    let f = fixture(p, Duration::from_secs(60)).await;
    let id = f.runner.start(&request("tok", &[])).await.unwrap();
    let s = wait_finished(&f.runner, &id).await;
    assert_eq!(s.state, BuildState::Failed);
    let m = s.message.unwrap_or_default();
    assert!(m.starts_with("phase PROVISIONING FAILED"), "{m}");
    assert!(m.contains("Secrets Manager Error"), "{m}");
    assert!(m.contains("KIRO_API_KEY"), "{m}");
    assert!(f.emu.builds()[0].environment.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_recorded_with_role_action_and_resource() {
    let f = fixture(
        ProjectSpec::new("p-rec", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    let id = f.runner.start(&request("tok", &[])).await.unwrap();
    f.runner.status(std::slice::from_ref(&id)).await.unwrap();
    let queue = unique("rehearsal-q");
    let (status, answer) = f
        .emu
        .call(
            "producer-task",
            "sqs",
            "AmazonSQS.CreateQueue",
            json!({"QueueName": queue}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let (ids_status, ids) = f
        .emu
        .call(
            CONSUMER,
            "codebuild",
            "CodeBuild_20161006.ListBuildsForProject",
            json!({"projectName": "p-rec"}),
        )
        .await
        .unwrap();
    assert_eq!(ids_status, 200);
    assert_eq!(ids["ids"], json!([id.as_str()]));
    assert!(ids.get("nextToken").is_none());
    f.runner.stop(&id).await.unwrap();

    let calls = f.emu.calls();
    let start = &calls[0];
    assert_eq!(start.iam_action().as_deref(), Some("codebuild:StartBuild"));
    assert_eq!(start.role.as_deref(), Some(CONSUMER));
    assert_eq!(start.access_key_id.as_deref(), Some("test"));
    assert_eq!(start.resources, ["p-rec"]);
    assert_eq!(start.status, Some(200));
    assert_eq!(calls[1].action.as_deref(), Some("BatchGetBuilds"));
    assert_eq!(calls[1].resources, ["p-rec"]);
    let create = &calls[2];
    assert_eq!(create.iam_action().as_deref(), Some("sqs:CreateQueue"));
    assert_eq!(create.role.as_deref(), Some("producer-task"));
    assert_eq!(create.answered_by, kiro_tests::aws::Answerer::Moto);
    assert_eq!(create.resources, [queue.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn task_protection_and_metadata_work_through_the_ecs_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let emu = AwsEmulator::start(EmulatorConfig::new(dir.path()))
        .await
        .unwrap();
    emu.add_credentials("test", "test", CONSUMER);
    let sdk = sdk_config(&AwsSettings::new("us-east-1").with_endpoint(emu.endpoint())).await;
    let p = EcsTaskProtection::new(&sdk, emu.metadata_endpoint("task-1"));
    let task = p.task().await.unwrap().clone();
    assert_eq!(task.task_arn, emu.task_arn("task-1"));
    assert!(task.cluster.ends_with(":cluster/kiro"), "{}", task.cluster);
    p.set(true).await.unwrap();
    let on = emu.task_protection(&task.task_arn).unwrap();
    assert!(on.enabled);
    assert!(on.expiration.is_some());
    p.set(false).await.unwrap();
    let off = emu.task_protection(&task.task_arn).unwrap();
    assert!(!off.enabled);
    assert_eq!(off.updates, 2);
    // An unknown task is a failure ECS reports, which the adapter surfaces.
    let (status, answer) = emu
        .call(
            CONSUMER,
            "ecs",
            "AmazonEC2ContainerServiceV20141113.UpdateTaskProtection",
            json!({"cluster": "kiro", "tasks": ["nope"], "protectionEnabled": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(answer["failures"][0]["reason"], "MISSING");
    let recorded = emu
        .calls()
        .into_iter()
        .filter(|c| c.iam_action().as_deref() == Some("ecs:UpdateTaskProtection"))
        .count();
    assert_eq!(recorded, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn parameter_store_variables_resolve_and_the_credentials_endpoint_serves_the_role() {
    let param = format!("/{}", unique("kiro/param"));
    let dir = tempfile::tempdir().unwrap();
    let emu = AwsEmulator::start(EmulatorConfig::new(dir.path()))
        .await
        .unwrap();
    let (status, answer) = emu
        .call(
            "admin",
            "ssm",
            "AmazonSSM.PutParameter",
            json!({"Name": param, "Value": "from-ssm", "Type": "SecureString"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let spec = format!(
        "version: 0.2\nenv:\n  parameter-store:\n    FROM_SPEC: {param}\n  exported-variables: [FROM_SPEC, FROM_PROJECT]\n\
         phases:\n  build:\n    commands:\n      - 'true'\n"
    );
    emu.create_project(
        ProjectSpec::new("p-ssm", "codebuild", &spec)
            .env(EnvVar::parameter("FROM_PROJECT", &param)),
    );
    let (status, answer) = emu
        .call(
            CONSUMER,
            "codebuild",
            "CodeBuild_20161006.StartBuild",
            json!({"projectName": "p-ssm"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let id = answer["build"]["id"].as_str().unwrap().to_owned();
    let b = emu
        .wait_for_build(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.status, "SUCCEEDED", "{:?}", b.phases);
    assert_eq!(
        b.exported.get("FROM_SPEC").map(String::as_str),
        Some("from-ssm")
    );
    assert_eq!(
        b.exported.get("FROM_PROJECT").map(String::as_str),
        Some("from-ssm")
    );
    let gets: Vec<_> = emu
        .calls()
        .into_iter()
        .filter(|c| c.iam_action().as_deref() == Some("ssm:GetParameter"))
        .collect();
    assert_eq!(gets.len(), 2);
    assert!(gets.iter().all(|c| c.role.as_deref() == Some("codebuild")));

    // The container-credentials document the SDK's provider reads.
    let url = emu.credentials_uri("codebuild");
    let (_, path) = url.split_once("127.0.0.1").unwrap();
    let port_path = path.trim_start_matches(':');
    let (port, path) = port_path.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let body: serde_json::Value =
        serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let creds = emu.credentials_for("codebuild");
    assert_eq!(body["AccessKeyId"], creds.access_key_id.as_str());
    assert_eq!(body["SecretAccessKey"], creds.secret_access_key.as_str());
    assert!(body["Token"].as_str().is_some_and(|t| !t.is_empty()));
    let expires = body["Expiration"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(expires).is_ok(), "{expires}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_start_build_answer_is_retried_onto_the_same_build() {
    let f = fixture(
        ProjectSpec::new("p-lost", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    f.emu
        .inject_fault(kiro_tests::aws::Fault::lost_answer("StartBuild"));
    // The adapter's default policy retries the 500 with the same token.
    let runner = f.runner.clone().with_backoff(CallBackoff::default());
    let id = runner.start(&request("tok", &[])).await.unwrap();
    assert_eq!(f.emu.builds().len(), 1);
    assert_eq!(f.emu.builds()[0].id, id.as_str());
    let statuses: Vec<_> = f
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("StartBuild"))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
    f.runner.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_call_is_not_handled() {
    let f = fixture(
        ProjectSpec::new("p-throttled", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    f.emu
        .inject_fault(kiro_tests::aws::Fault::throttled("StartBuild"));
    let e = f.runner.start(&request("tok-1", &[])).await.unwrap_err();
    assert!(e.to_string().contains("ThrottlingException"), "{e}");
    assert!(
        f.emu.builds().is_empty(),
        "a throttled StartBuild started a build"
    );
    let a = f.runner.start(&request("tok-1", &[])).await.unwrap();
    assert_eq!(f.emu.builds().len(), 1);
    f.runner.stop(&a).await.unwrap();
}

async fn account_emulator(
    limit: u32,
    minute: Duration,
    queued_timeout: u32,
) -> (AwsEmulator, [CodeBuildRunner; 2], tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::new(dir.path());
    cfg.account_concurrent_build_limit = Some(limit);
    cfg.minute = minute;
    let emu = AwsEmulator::start(cfg).await.unwrap();
    emu.add_credentials("test", "test", CONSUMER);
    for name in ["p-acct-1", "p-acct-2"] {
        let mut p = ProjectSpec::new(name, "codebuild", SLEEPY);
        p.queued_timeout_in_minutes = queued_timeout;
        emu.create_project(p);
    }
    let sdk = sdk_config(&AwsSettings::new("us-east-1").with_endpoint(emu.endpoint())).await;
    let runners = ["p-acct-1", "p-acct-2"]
        .map(|p| CodeBuildRunner::new(&sdk, p).with_backoff(CallBackoff::none()));
    (emu, runners, dir)
}

async fn state_of(runner: &CodeBuildRunner, id: &kiro_protocol::BuildId) -> BuildState {
    runner.status(std::slice::from_ref(id)).await.unwrap()[0].state
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_account_limit_builds_queue_up_to_five_times_the_limit() {
    let (emu, [one, two], _dir) = account_emulator(1, Duration::from_secs(60), 480).await;
    let a = one.start(&request("tok-a", &[])).await.unwrap();
    let b = two.start(&request("tok-b", &[])).await.unwrap();
    assert_eq!(state_of(&two, &b).await, BuildState::Queued);
    // b leaves the queue once a ends.
    one.stop(&a).await.unwrap();
    for _ in 0..500 {
        if state_of(&two, &b).await == BuildState::InProgress {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state_of(&two, &b).await, BuildState::InProgress);
    // Five may wait; the sixth is refused.
    let mut waiting = Vec::new();
    for i in 0..5 {
        waiting.push(
            one.start(&request(&format!("tok-q{i}"), &[]))
                .await
                .unwrap(),
        );
    }
    let e = one.start(&request("tok-q5", &[])).await.unwrap_err();
    assert!(
        e.to_string().contains("AccountLimitExceededException"),
        "{e}"
    );
    assert!(
        e.to_string().contains("5 builds in queue for the account"),
        "{e}"
    );
    assert_eq!(emu.builds().len(), 7);
    for id in waiting.iter().chain([&b]) {
        let runner = if id == &b { &two } else { &one };
        runner.stop(id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_queued_past_its_queued_timeout_times_out_in_queued() {
    // Queued timeout 5 minutes of 20 ms; the running build's 60-minute timeout is 1.2 s.
    let (emu, [one, two], _dir) = account_emulator(1, Duration::from_millis(20), 5).await;
    let a = one.start(&request("tok-a", &[])).await.unwrap();
    let b = two.start(&request("tok-b", &[])).await.unwrap();
    let s = wait_finished(&two, &b).await;
    assert_eq!(s.state, BuildState::TimedOut, "{:?}", s.message);
    let m = s.message.unwrap_or_default();
    assert!(m.starts_with("phase QUEUED TIMED_OUT"), "{m}");
    assert_eq!(state_of(&one, &a).await, BuildState::InProgress);
    assert!(emu.builds()[1].environment.is_empty());
    one.stop(&a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_build_log_goes_to_the_project_log_group_as_the_service_role() {
    let group = format!("/aws/codebuild/{}", unique("p-logs"));
    let dir = tempfile::tempdir().unwrap();
    let emu = AwsEmulator::start(EmulatorConfig::new(dir.path()))
        .await
        .unwrap();
    let (status, answer) = emu
        .call(
            "admin",
            "logs",
            "Logs_20140328.CreateLogGroup",
            json!({"logGroupName": group}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hello-from-build\n";
    emu.create_project(ProjectSpec::new("p-logs", "codebuild", spec).log_group(&group));
    let (_, started) = emu
        .call(
            CONSUMER,
            "codebuild",
            "CodeBuild_20161006.StartBuild",
            json!({"projectName": "p-logs"}),
        )
        .await
        .unwrap();
    assert_eq!(started["build"]["logs"]["groupName"], group.as_str());
    let id = started["build"]["id"].as_str().unwrap().to_owned();
    let b = emu
        .wait_for_build(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(b.status, "SUCCEEDED");
    let stream = id.rsplit(':').next().unwrap();
    let (status, events) = emu
        .call(
            "admin",
            "logs",
            "Logs_20140328.GetLogEvents",
            json!({"logGroupName": group, "logStreamName": stream, "startFromHead": true}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{events}");
    let lines: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(lines.contains(&"hello-from-build"), "{lines:?}");
    let by_build: Vec<_> = emu
        .calls()
        .into_iter()
        .filter(|c| c.service.as_deref() == Some("logs") && c.role.as_deref() == Some("codebuild"))
        .filter_map(|c| c.iam_action())
        .collect();
    assert_eq!(by_build, ["logs:CreateLogStream", "logs:PutLogEvents"]);
}
