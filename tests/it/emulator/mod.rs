//! The rehearsal's AWS emulator (`kiro_tests::aws`) driven by the project's own CodeBuild
//! adapter (`CodeBuildRunner`, the real aws-sdk-codebuild client), the ECS protection
//! adapter, and raw JSON calls: each CodeBuild semantic the emulator promises, checked
//! here; the other services (secrets, parameters, ECS, recording, faults) in [`services`].

mod services;

use kiro_backends::aws::codebuild::CodeBuildRunner;
use kiro_backends::aws::retry::CallBackoff;
use kiro_backends::aws::settings::{AwsSettings, sdk_config};
use kiro_protocol::{
    BranchName, BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, ItemId, ProjectKey,
};
use kiro_tests::aws::{AwsEmulator, EmulatorConfig, EnvVar, ProjectSpec};
use std::collections::BTreeMap;
use std::time::Duration;

/// The consumer's access key (what `sdk_config` uses against an emulator).
pub const CONSUMER: &str = "consumer-task";

pub struct Fixture {
    pub emu: AwsEmulator,
    pub runner: CodeBuildRunner,
    _dir: tempfile::TempDir,
}

pub async fn fixture(project: ProjectSpec, minute: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = EmulatorConfig::new(dir.path().join("builds"));
    cfg.minute = minute;
    cfg.build_base_env.insert(
        "KIRO_AWS_ENDPOINT_URL".into(),
        kiro_tests::aws::ENDPOINT_PLACEHOLDER.into(),
    );
    cfg.build_base_env.insert(
        "PATH".into(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    let emu = AwsEmulator::start(cfg).await.unwrap();
    // `sdk_config` signs with `test` when no credentials are in the environment.
    emu.add_credentials("test", "test", CONSUMER);
    let name = project.name.clone();
    emu.create_project(project);
    let sdk = sdk_config(&AwsSettings::new("us-east-1").with_endpoint(emu.endpoint())).await;
    let runner = CodeBuildRunner::new(&sdk, name).with_backoff(CallBackoff::none());
    Fixture {
        emu,
        runner,
        _dir: dir,
    }
}

pub fn request(token: &str, env: &[(&str, &str)]) -> BuildRequest {
    BuildRequest {
        project: ProjectKey::parse("calc").unwrap(),
        item: ItemId::parse("CALC-1").unwrap(),
        idempotency_key: token.into(),
        source_version: BranchName::parse("feature/x").unwrap(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        timeout: Some(Duration::from_secs(60 * 60)),
    }
}

pub const SLEEPY: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 30\n";

pub async fn wait_finished(runner: &CodeBuildRunner, id: &BuildId) -> BuildStatus {
    for _ in 0..1500 {
        let s = runner.status(std::slice::from_ref(id)).await.unwrap();
        if let Some(s) = s.into_iter().next()
            && s.state.is_finished()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("build {id} did not finish in 30 s");
}

pub fn unique(prefix: &str) -> String {
    kiro_backends::testing::moto::unique(prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_token_and_parameters_give_the_same_build() {
    let f = fixture(
        ProjectSpec::new("p-same", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    let a = f
        .runner
        .start(&request("tok-1", &[("K", "v")]))
        .await
        .unwrap();
    let b = f
        .runner
        .start(&request("tok-1", &[("K", "v")]))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(f.emu.builds().len(), 1);
    assert!(a.as_str().starts_with("p-same:"), "{a}");
    f.runner.stop(&a).await.unwrap();
}

/// The emulator refuses the same token with other parameters (InvalidInputException,
/// nothing started); the adapter then finds the token's build by its `KIRO_BUILD_KEY`
/// and answers with it, so a replay with a new fence never makes a second build.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_token_with_other_parameters_is_refused_and_starts_nothing() {
    let f = fixture(
        ProjectSpec::new("p-diff", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    let a = f
        .runner
        .start(&request("tok-1", &[("KIRO_FENCE", "1")]))
        .await
        .unwrap();
    let b = f
        .runner
        .start(&request("tok-1", &[("KIRO_FENCE", "2")]))
        .await
        .unwrap();
    assert_eq!(a, b, "the token's build, found by its key");
    let refused: Vec<_> = f
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("StartBuild") && c.status == Some(400))
        .collect();
    assert_eq!(refused.len(), 1, "the second StartBuild was refused");
    let reserved = f
        .runner
        .start(&request("tok-2", &[("CODEBUILD_BUILD_ID", "x")]))
        .await
        .unwrap_err();
    assert!(
        reserved
            .to_string()
            .contains("CODEBUILD_ prefix is reserved"),
        "{reserved}"
    );
    assert_eq!(f.emu.builds().len(), 1);
    f.runner.stop(&a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_forgotten_after_five_minutes() {
    let minute = Duration::from_millis(40);
    let f = fixture(ProjectSpec::new("p-window", "codebuild", SLEEPY), minute).await;
    let a = f.runner.start(&request("tok-1", &[])).await.unwrap();
    tokio::time::sleep(minute * 6).await;
    let b = f
        .runner
        .start(&request("tok-1", &[("OTHER", "x")]))
        .await
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(f.emu.builds().len(), 2);
    for id in [a, b] {
        f.runner.stop(&id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrent_build_limit_refuses_with_account_limit_exceeded() {
    let p = ProjectSpec::new("p-limit", "codebuild", SLEEPY).concurrent_build_limit(1);
    let f = fixture(p, Duration::from_secs(60)).await;
    let a = f.runner.start(&request("tok-a", &[])).await.unwrap();
    let e = f.runner.start(&request("tok-b", &[])).await.unwrap_err();
    assert!(
        e.to_string().contains("AccountLimitExceededException"),
        "{e}"
    );
    assert_eq!(f.emu.builds().len(), 1);
    // Once the first build ends, the next one starts.
    f.runner.stop(&a).await.unwrap();
    assert_eq!(
        wait_finished(&f.runner, &a).await.state,
        BuildState::Stopped
    );
    let b = f.runner.start(&request("tok-b", &[])).await.unwrap();
    assert_ne!(a, b);
    f.runner.stop(&b).await.unwrap();
}

const EXPORTING: &str = "version: 0.2
env:
  variables:
    FROM_SPEC: spec
    OVERRIDDEN_BY_PROJECT: spec
  exported-variables: [X, Y, Z, FROM_SPEC, OVERRIDDEN_BY_PROJECT, SEEN_ID, SEEN_REGION, SEEN_ARN, SEEN_CREDS, SEEN_ENDPOINT, SEEN_PROJECT, SEEN_NUMBER, SEEN_INITIATOR]
phases:
  build:
    commands:
      - export Z=\"$X-$Y\"
      - export SEEN_ID=$CODEBUILD_BUILD_ID SEEN_REGION=$AWS_REGION SEEN_ARN=$CODEBUILD_BUILD_ARN
      - export SEEN_CREDS=$AWS_CONTAINER_CREDENTIALS_FULL_URI SEEN_ENDPOINT=$KIRO_AWS_ENDPOINT_URL
      - export SEEN_PROJECT=$CODEBUILD_PROJECT_ARN SEEN_NUMBER=$CODEBUILD_BUILD_NUMBER SEEN_INITIATOR=$CODEBUILD_INITIATOR
";

#[tokio::test(flavor = "multi_thread")]
async fn overrides_replace_project_variables_and_exported_variables_come_back() {
    let p = ProjectSpec::new("p-env", "codebuild", EXPORTING)
        .env(EnvVar::plain("X", "project"))
        .env(EnvVar::plain("Y", "kept"))
        .env(EnvVar::plain("OVERRIDDEN_BY_PROJECT", "project"));
    let f = fixture(p, Duration::from_secs(60)).await;
    let id = f
        .runner
        .start(&request("tok", &[("X", "override")]))
        .await
        .unwrap();
    let s = wait_finished(&f.runner, &id).await;
    assert_eq!(s.state, BuildState::Succeeded, "{:?}", s.message);
    let get = |k: &str| s.exported.get(k).map(String::as_str);
    assert_eq!(get("Z"), Some("override-kept"));
    assert_eq!(get("FROM_SPEC"), Some("spec"));
    assert_eq!(get("OVERRIDDEN_BY_PROJECT"), Some("project"));
    assert_eq!(get("SEEN_ID"), Some(id.as_str()));
    assert_eq!(get("SEEN_REGION"), Some("us-east-1"));
    let view = f.emu.builds().pop().unwrap();
    assert_eq!(get("SEEN_ARN"), Some(view.arn.as_str()));
    assert_eq!(
        get("SEEN_CREDS"),
        Some(f.emu.credentials_uri("codebuild").as_str())
    );
    assert_eq!(get("SEEN_ENDPOINT"), Some(f.emu.endpoint().as_str()));
    assert_eq!(
        get("SEEN_PROJECT"),
        Some("arn:aws:codebuild:us-east-1:123456789012:project/p-env")
    );
    assert_eq!(get("SEEN_NUMBER"), Some("1"));
    assert_eq!(get("SEEN_INITIATOR"), Some(CONSUMER));
    // The API shows the merged variables: the override replaced X, Y stayed.
    let vars: BTreeMap<&str, &str> = view
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(vars.get("X"), Some(&"override"));
    assert_eq!(vars.get("Y"), Some(&"kept"));
    assert_eq!(view.initiator, CONSUMER);
    assert!(view.log.is_file(), "{}", view.log.display());
    // The next build of the project without an override sees the project's value.
    let id2 = f.runner.start(&request("tok-2", &[])).await.unwrap();
    let s2 = wait_finished(&f.runner, &id2).await;
    assert_eq!(
        s2.exported.get("Z").map(String::as_str),
        Some("project-kept")
    );
    assert_eq!(f.emu.builds()[1].number, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_build_timeout_ends_timed_out() {
    // The adapter overrides the project's 90 minutes with the request's 60: 60 × 40 ms.
    let p = ProjectSpec::new("p-timeout", "codebuild", SLEEPY).timeout_minutes(90);
    let f = fixture(p, Duration::from_millis(40)).await;
    let id = f.runner.start(&request("tok", &[])).await.unwrap();
    let s = wait_finished(&f.runner, &id).await;
    assert_eq!(s.state, BuildState::TimedOut, "{:?}", s.message);
    assert_eq!(f.emu.builds()[0].timeout_in_minutes, 60);
    let m = s.message.unwrap_or_default();
    assert!(m.contains("BUILD TIMED_OUT"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_build_ends_stopped_and_a_finished_build_cannot_be_stopped_again() {
    let f = fixture(
        ProjectSpec::new("p-stop", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    let id = f.runner.start(&request("tok", &[])).await.unwrap();
    f.runner.stop(&id).await.unwrap();
    let s = wait_finished(&f.runner, &id).await;
    assert_eq!(s.state, BuildState::Stopped);
    // The adapter treats CodeBuild's refusal for a finished build as a no-op…
    f.runner.stop(&id).await.unwrap();
    // …which the emulator answered with InvalidInputException.
    let stops: Vec<_> = f
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.action.as_deref() == Some("StopBuild"))
        .collect();
    assert_eq!(stops.len(), 2);
    assert_eq!(stops[0].status, Some(200));
    assert_eq!(stops[1].status, Some(400));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_start_build_has_started_the_build_before_it_answers() {
    let f = fixture(
        ProjectSpec::new("p-hold", "codebuild", SLEEPY),
        Duration::from_secs(60),
    )
    .await;
    let mut hold = f.emu.hold_next_start_build();
    let runner = f.runner.clone();
    let start = tokio::spawn(async move { runner.start(&request("tok", &[])).await });
    let id = hold.started().await.unwrap();
    assert_eq!(f.emu.builds()[0].id, id);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!start.is_finished(), "StartBuild answered while held");
    hold.release();
    let answered = start.await.unwrap().unwrap();
    assert_eq!(answered.as_str(), id);
    f.runner.stop(&answered).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_emulator_kills_its_running_builds() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let spec = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo $$ > {}\n      - sleep 30\n",
        pid_file.display()
    );
    let f = fixture(
        ProjectSpec::new("p-drop", "codebuild", &spec),
        Duration::from_secs(60),
    )
    .await;
    f.runner.start(&request("tok", &[])).await.unwrap();
    let mut pid = None;
    for _ in 0..500 {
        if let Some(p) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            pid = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = pid.expect("the build wrote its shell's pid");
    use kiro_local_build::process::group_exists;
    assert!(group_exists(pid));
    drop(f);
    for _ in 0..250 {
        if !group_exists(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the build's process group {pid} outlived the emulator");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_with_files_record_codebuild_report_calls_as_the_service_role() {
    let spec = "version: 0.2
phases:
  build:
    commands:
      - mkdir -p workspace/t && echo '<testsuites/>' > workspace/t/junit-unit.xml
reports:
  junit:
    base-directory: workspace
    files: ['**/junit*.xml']
  empty:
    files: ['nothing/*.xml']
";
    let f = fixture(
        ProjectSpec::new("p-reports", "codebuild", spec),
        Duration::from_secs(60),
    )
    .await;
    for token in ["tok-1", "tok-2"] {
        let id = f.runner.start(&request(token, &[])).await.unwrap();
        assert_eq!(
            wait_finished(&f.runner, &id).await.state,
            BuildState::Succeeded
        );
    }
    let report_calls: Vec<(String, String)> = f
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.resource().is_some_and(|r| r.contains(":report-group/")))
        .map(|c| {
            assert_eq!(c.role.as_deref(), Some("codebuild"));
            (c.iam_action().unwrap(), c.resources[0].clone())
        })
        .collect();
    let group = "arn:aws:codebuild:us-east-1:123456789012:report-group/p-reports-junit";
    let actions: Vec<&str> = report_calls.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "codebuild:CreateReportGroup",
            "codebuild:CreateReport",
            "codebuild:BatchPutTestCases",
            "codebuild:UpdateReport",
            "codebuild:CreateReport",
            "codebuild:BatchPutTestCases",
            "codebuild:UpdateReport",
        ]
    );
    assert!(report_calls.iter().all(|(_, r)| r == group));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_buildspec_fails_download_source_and_build_lists_come_in_pages() {
    // Version 0.3 does not exist: every build fails in DOWNLOAD_SOURCE, no shell runs.
    let f = fixture(
        ProjectSpec::new("p-pages", "codebuild", "version: 0.3\n"),
        Duration::from_secs(60),
    )
    .await;
    let first = f.runner.start(&request("tok-0", &[])).await.unwrap();
    let s = wait_finished(&f.runner, &first).await;
    assert_eq!(s.state, BuildState::Failed);
    let m = s.message.unwrap_or_default();
    assert!(
        m.starts_with("phase DOWNLOAD_SOURCE FAILED: YAML_FILE_ERROR"),
        "{m}"
    );
    for i in 1..=100 {
        f.runner
            .start(&request(&format!("tok-{i}"), &[]))
            .await
            .unwrap();
    }
    let list = |token: Option<&str>| {
        let mut body = serde_json::json!({"projectName": "p-pages", "sortOrder": "ASCENDING"});
        if let Some(t) = token {
            body["nextToken"] = t.into();
        }
        f.emu.call(
            CONSUMER,
            "codebuild",
            "CodeBuild_20161006.ListBuildsForProject",
            body,
        )
    };
    let (_, page1) = list(None).await.unwrap();
    assert_eq!(page1["ids"].as_array().unwrap().len(), 100);
    assert_eq!(page1["ids"][0], first.as_str());
    let token = page1["nextToken"].as_str().unwrap().to_owned();
    let (_, page2) = list(Some(&token)).await.unwrap();
    assert_eq!(page2["ids"].as_array().unwrap().len(), 1);
    assert!(page2.get("nextToken").is_none());
    let (status, _) = list(Some("nonsense")).await.unwrap();
    assert_eq!(status, 400);
}
