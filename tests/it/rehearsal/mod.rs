//! The deployment rehearsal (issue 10): the stack's own rendered configuration, run end to
//! end on one machine.
//!
//! The Pulumi program is rendered under mocks (`infra-pulumi/scripts/render.ts`) for a
//! stack file; the binaries then run **as deployed** — kiro-producer as the schedule starts
//! it and kiro-consumer as the ECS service runs it, with exactly the rendered task
//! environment and the rendered secrets resolved with the execution role; kiro-worker
//! inside emulated CodeBuild builds with exactly the project's environment — against an
//! AWS emulator (moto plus the CodeBuild/ECS emulator of the kiro-tests library) and a
//! stateful GitHub fake. The only additions are the endpoint overrides in
//! [`env::ADDITIONS`], and the rehearsal asserts that every process got exactly that.
//!
//! The emulated build image holds a **stand-in `kiro-cli`** (see [`image`]): it answers
//! `--version` and `whoami` and runs the quick start's SCRIPTED agent for `chat`; it is
//! not Kiro.
//!
//! Rehearsed stacks: `Pulumi.staging.yaml` and `Pulumi.production.yaml` (the quick
//! start's board: three items succeed, one is dead-lettered for coverage and announced to
//! its assignee, one is rejected; and one more, whose card a human moves to Backlog on
//! GitHub once it is queued, is cancelled unbuilt),
//! and `tests/it/rehearsal/Pulumi.rehearsal.yaml` (the same board with a consumer
//! SIGKILLed inside StartBuild, and a concurrent build limit below the projects).
//!
//! - [`render`]: the render's JSON, typed; [`env`]: the additions and the exact check;
//! - [`provision`]: queues, table, secrets, project, credentials from the render;
//! - [`github_fake`] and [`board`]: GitHub; [`image`]: the build image; [`collector`]:
//!   OTLP receivers;
//! - [`tasks`]: processes as ECS runs them; [`scenario`]: one rehearsal;
//!   [`verdict`] and [`iam`]: the assertions.

mod board;
mod collector;
mod env;
mod github_fake;
#[cfg(test)]
mod github_fake_tests;
mod iam;
mod image;
mod provision;
mod render;
mod scenario;
mod tasks;
mod verdict;

use render::Rendered;
use scenario::{Mode, rehearse};
use std::path::{Path, PathBuf};

fn stack_file(name: &str) -> PathBuf {
    render::infra_dir().join(name)
}

fn rehearsal_stack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("it/rehearsal/Pulumi.rehearsal.yaml")
}

/// The quick start as deployed by `stack`: outcomes, environments, collector, IAM.
async fn the_quick_start_as_deployed(stack: &Path) {
    let o = Box::pin(rehearse(stack, Mode::Plain)).await;
    verdict::good_items_succeeded(&o);
    verdict::coverage_item_dead_lettered(&o);
    verdict::hostile_item_rejected(&o);
    verdict::hostile_item_never_enqueued(&o);
    verdict::github::dead_letter_reaches_github(&o);
    verdict::github::moved_card_cancelled(&o);
    verdict::one_build_per_item(&o);
    verdict::builds_keep_the_project_timeout(&o);
    verdict::worker_environment_exact(&o);
    verdict::task_secrets_resolved_by_execution_roles(&o);
    verdict::task_protection_held_then_released(&o);
    verdict::iam_measured(&o);
    verdict::consumer_telemetry_reaches_its_sidecar(&o).await;
    verdict::worker_spans_reach_the_build_collector(&o).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rehearsal_of_the_staging_stack() {
    Box::pin(the_quick_start_as_deployed(&stack_file(
        "Pulumi.staging.yaml",
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rehearsal_of_the_production_stack() {
    Box::pin(the_quick_start_as_deployed(&stack_file(
        "Pulumi.production.yaml",
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rehearsal_of_a_consumer_crash_inside_start_build_and_the_build_limit() {
    let o = Box::pin(rehearse(&rehearsal_stack(), Mode::CrashDuringStartBuild)).await;
    verdict::reattached_to_the_held_build(&o);
    verdict::limit_waited(&o);
    verdict::good_items_succeeded(&o);
    verdict::hostile_item_rejected(&o);
    verdict::hostile_item_never_enqueued(&o);
    verdict::worker_environment_exact(&o);
    verdict::iam_measured(&o);
}

#[test]
fn the_sample_render_has_every_role_and_both_tasks() {
    let r = Rendered::sample();
    for role in [
        "consumer-task",
        "consumer-execution",
        "producer-task",
        "producer-execution",
        "codebuild",
        "scheduler",
    ] {
        assert!(!r.role(role).statements.is_empty(), "{role}");
    }
    let consumer = r.tasks.consumer.container("consumer");
    assert_eq!(consumer.argv(), ["/kiro-consumer", "run"]);
    assert_eq!(
        r.role_by_arn(&r.tasks.consumer.task_role_arn).0,
        "consumer-task"
    );
    assert!(r.codebuild.buildspec.contains(&r.secrets.github_token));
    assert_eq!(r.codebuild.var("KIRO_CLI_VERSION"), Some("2.8.0"));
}

#[test]
fn a_render_with_a_missing_field_is_a_clear_error() {
    let err = Rendered::parse(br#"{"stack":"x"}"#).unwrap_err();
    assert!(err.contains("missing field"), "{err}");
}

#[test]
fn the_sample_scheduler_lacks_tag_resource_and_the_check_says_so() {
    // The sample is main's program (issue 10, defect 4): the check must catch it.
    let r = Rendered::sample();
    let err = std::panic::catch_unwind(|| iam::check_scheduler(&r)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("ecs:TagResource"), "{msg}");
}

#[test]
fn iam_measurement_names_unused_grants_and_refused_calls() {
    let r = Rendered::sample();
    let m = iam::measure(&r, &[], &[]);
    // With no calls, every exercised-only grant is unused, e.g. the producer's SendMessage.
    assert!(
        m.unused["producer-task"].contains(&"sqs:SendMessage".to_owned()),
        "{:?}",
        m.unused
    );
    // Listed paths are not reported.
    assert!(
        !m.unused
            .get("consumer-execution")
            .is_some_and(|u| u.iter().any(|a| a.starts_with("ecr:")))
    );
    assert!(m.table(&r).contains("UNUSED"));
}
