//! `FakeCodeBuild`: a small in-memory CodeBuild behind the SDK's mock interceptor
//! (aws-smithy-mocks), for what moto's CodeBuild does not do.
//!
//! A build is QUEUED when started, IN_PROGRESS at its first `BatchGetBuilds`, and ends at
//! the second as its [`BuildScript`] says (or when stopped). Idempotency tokens behave as
//! CodeBuild documents them: for 5 minutes a repeat of the same request returns the first
//! build and the same token with any other parameter is refused (`InvalidInputException`,
//! parameter mismatch); after 5 minutes the token starts a new build. Each build carries
//! its request's environment, and `ListBuildsForProject` lists the builds newest first in
//! pages of 100 (optionally hiding the newest, as an eventually consistent list would).
//!
//! Invariant: every answer has CodeBuild's shape; fault rules placed before the fake's
//! rules inject throttling and 5xx answers.

use aws_sdk_codebuild::Client;
use aws_sdk_codebuild::config::retry::RetryConfig;
use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
use aws_sdk_codebuild::operation::list_builds_for_project::ListBuildsForProjectOutput;
use aws_sdk_codebuild::operation::start_build::{StartBuildInput, StartBuildOutput};
use aws_sdk_codebuild::operation::stop_build::StopBuildOutput;
use aws_sdk_codebuild::types::{
    Build, BuildPhase, BuildPhaseType, ComputeType, EnvironmentType, ExportedEnvironmentVariable,
    LogsLocation, PhaseContext, ProjectEnvironment, SortOrderType, StatusType,
};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response as HttpResponse, StatusCode};
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use kiro_backends::testing::contract::build::{BuildScript, ScriptEnd};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const PROJECT: &str = "kiro-worker";

#[derive(Debug)]
struct FakeBuild {
    script: BuildScript,
    polls: u32,
    stopped: bool,
    /// The request that started it (its environment is the build's).
    input: StartBuildInput,
    /// Start order (1, 2, …): newer builds list first.
    seq: usize,
}

/// An in-memory CodeBuild: see the module documentation.
#[derive(Debug, Default)]
pub struct FakeState {
    /// How each idempotency token's build behaves (set by the harness).
    pub scripts: HashMap<String, BuildScript>,
    /// Per token: the build, when it started, and the request (a repeat must match it).
    by_token: HashMap<String, (String, Instant, StartBuildInput)>,
    builds: BTreeMap<String, FakeBuild>,
    /// Builds really started.
    pub starts: usize,
    /// Every StartBuild input seen (retries included).
    pub start_inputs: Vec<StartBuildInput>,
    /// The number of ids of every BatchGetBuilds call.
    pub batch_sizes: Vec<usize>,
    pub stop_calls: usize,
    /// Apply the next N starts, then answer HTTP 500 anyway (an ambiguous write).
    pub apply_then_fail_starts: usize,
    /// Refusals of a token repeated with other parameters.
    pub mismatches: usize,
    /// `ListBuildsForProject` calls.
    pub list_calls: usize,
    /// Builds `ListBuildsForProject` does not show yet (eventual consistency).
    pub unlisted: usize,
}

/// `ListBuildsForProject` page size.
const LIST_PAGE: usize = 100;

pub type Shared = Arc<Mutex<FakeState>>;

pub fn http(status: u16, body: &str) -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(status).expect("status"),
        SdkBody::from(body.to_owned()),
    )
}

pub fn throttled() -> HttpResponse {
    http(
        400,
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    )
}

pub fn unavailable() -> HttpResponse {
    http(
        503,
        r#"{"__type":"ServiceUnavailableException","message":"try later"}"#,
    )
}

fn render(id: &str, b: &FakeBuild) -> Build {
    let environment = ProjectEnvironment::builder()
        .r#type(EnvironmentType::LinuxContainer)
        .image("aws/codebuild/standard:7.0")
        .compute_type(ComputeType::BuildGeneral1Small)
        .set_environment_variables(b.input.environment_variables_override.clone())
        .build()
        .expect("environment");
    let started = i64::try_from(b.seq).unwrap_or(0) * 1_000;
    let running = Build::builder()
        .id(id)
        .environment(environment)
        .arn(format!(
            "arn:aws:codebuild:us-east-1:000000000000:build/{id}"
        ))
        .project_name(PROJECT)
        .start_time(DateTime::from_millis(started))
        .logs(
            LogsLocation::builder()
                .deep_link(format!(
                    "https://console.aws.amazon.com/cloudwatch/logs/{id}"
                ))
                .build(),
        );
    let submitted = BuildPhase::builder()
        .phase_type(BuildPhaseType::Submitted)
        .phase_status(StatusType::Succeeded)
        .build();
    if b.polls == 0 && !b.stopped {
        return running
            .build_status(StatusType::InProgress)
            .current_phase("QUEUED")
            .phases(submitted)
            .build();
    }
    let end = if b.stopped {
        Some(StatusType::Stopped)
    } else if b.polls >= 2 {
        match b.script.end {
            ScriptEnd::Succeed => Some(StatusType::Succeeded),
            ScriptEnd::Fail => Some(StatusType::Failed),
            ScriptEnd::RunUntilStopped => None,
        }
    } else {
        None
    };
    let Some(end) = end else {
        return running
            .build_status(StatusType::InProgress)
            .current_phase("BUILD")
            .phases(submitted)
            .build();
    };
    let mut build_phase = BuildPhase::builder()
        .phase_type(BuildPhaseType::Build)
        .phase_status(end.clone());
    if end == StatusType::Failed {
        build_phase = build_phase.contexts(
            PhaseContext::builder()
                .status_code("COMMAND_EXECUTION_ERROR")
                .message("Error while executing command: kiro-worker run. Reason: exit status 1")
                .build(),
        );
    }
    let mut out = running
        .build_status(end)
        .build_complete(true)
        .current_phase("COMPLETED")
        .end_time(DateTime::from_millis(61_000))
        .phases(submitted)
        .phases(build_phase.build());
    if !b.stopped {
        for (k, v) in &b.script.exports {
            out = out.exported_environment_variables(
                ExportedEnvironmentVariable::builder()
                    .name(k)
                    .value(v)
                    .build(),
            );
        }
    }
    out.build()
}

/// The fake's rules (StartBuild, BatchGetBuilds, StopBuild), to go after any fault rules.
pub fn fake_rules(state: &Shared) -> Vec<Rule> {
    let s = state.clone();
    let start = mock!(Client::start_build).then_compute_response(move |input| {
        let mut st = s.lock().unwrap();
        st.start_inputs.push(input.clone());
        let token = input.idempotency_token().unwrap_or_default().to_owned();
        let now = Instant::now();
        let existing = st
            .by_token
            .get(&token)
            .filter(|(_, at, _)| now.duration_since(*at) < Duration::from_secs(300))
            .map(|(id, _, first)| (id.clone(), first == input));
        let id = match existing {
            Some((id, true)) => id,
            Some((_, false)) => {
                // CodeBuild: "If you repeat the StartBuild request with the same token,
                // but change a parameter, CodeBuild returns a parameter mismatch error."
                st.mismatches += 1;
                return MockResponse::Http(http(
                    400,
                    r#"{"__type":"InvalidInputException","message":"Parameter mismatch for idempotency token"}"#,
                ));
            }
            None => {
                st.starts += 1;
                let id = format!("{PROJECT}:{:08}-fake", st.starts);
                let script = st
                    .scripts
                    .get(&token)
                    .cloned()
                    .unwrap_or_else(|| BuildScript::succeed(BTreeMap::new()));
                let seq = st.starts;
                st.builds.insert(
                    id.clone(),
                    FakeBuild {
                        script,
                        polls: 0,
                        stopped: false,
                        input: input.clone(),
                        seq,
                    },
                );
                st.by_token.insert(token, (id.clone(), now, input.clone()));
                id
            }
        };
        if st.apply_then_fail_starts > 0 {
            st.apply_then_fail_starts -= 1;
            return MockResponse::Http(http(500, r#"{"__type":"InternalFailure"}"#));
        }
        let build = render(&id, &st.builds[&id]);
        MockResponse::Output(StartBuildOutput::builder().build_value(build).build())
    });
    let s = state.clone();
    let batch = mock!(Client::batch_get_builds).then_compute_output(move |input| {
        let mut st = s.lock().unwrap();
        st.batch_sizes.push(input.ids().len());
        let mut out = BatchGetBuildsOutput::builder();
        for id in input.ids() {
            match st.builds.get_mut(id) {
                Some(b) => {
                    b.polls += 1;
                    out = out.builds(render(id, b));
                }
                None => out = out.builds_not_found(id),
            }
        }
        out.build()
    });
    let s = state.clone();
    let stop = mock!(Client::stop_build).then_compute_response(move |input| {
        let mut st = s.lock().unwrap();
        st.stop_calls += 1;
        let id = input.id().unwrap_or_default().to_owned();
        let Some(b) = st.builds.get_mut(&id) else {
            return MockResponse::Http(http(
                400,
                r#"{"__type":"ResourceNotFoundException","message":"Build not found"}"#,
            ));
        };
        let finished = b.stopped || (b.polls >= 2 && b.script.end != ScriptEnd::RunUntilStopped);
        if finished {
            return MockResponse::Http(http(
                400,
                r#"{"__type":"InvalidInputException","message":"Build is already completed"}"#,
            ));
        }
        b.stopped = true;
        let build = render(&id, b);
        MockResponse::Output(StopBuildOutput::builder().build_value(build).build())
    });
    let s = state.clone();
    let list = mock!(Client::list_builds_for_project).then_compute_output(move |input| {
        let mut st = s.lock().unwrap();
        st.list_calls += 1;
        let mut all: Vec<(usize, String)> = st
            .builds
            .iter()
            .map(|(id, b)| (b.seq, id.clone()))
            .collect();
        all.sort();
        let shown = all.len().saturating_sub(st.unlisted);
        all.truncate(shown);
        if input.sort_order() != Some(&SortOrderType::Ascending) {
            all.reverse();
        }
        let from: usize = input.next_token().and_then(|t| t.parse().ok()).unwrap_or(0);
        let page: Vec<String> = all
            .iter()
            .skip(from)
            .take(LIST_PAGE)
            .map(|(_, id)| id.clone())
            .collect();
        let next = (from + LIST_PAGE < all.len()).then(|| (from + LIST_PAGE).to_string());
        ListBuildsForProjectOutput::builder()
            .set_ids(Some(page))
            .set_next_token(next)
            .build()
    });
    vec![start, batch, stop, list]
}

/// A mocked CodeBuild client: `faults` first (each used until exhausted), then the fake.
pub fn client(state: &Shared, faults: &[Rule]) -> Client {
    let mut rules: Vec<Rule> = faults.to_vec();
    rules.extend(fake_rules(state));
    let refs: Vec<&Rule> = rules.iter().collect();
    mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, refs, |c| c
        .retry_config(RetryConfig::disabled()))
}
