//! The rehearsal's assertions over an [`Outcome`]: the quick-start items' fates (on the
//! GitHub board and pull requests too), the worker's environment, the collector, the crash
//! and the limit, and IAM measured (the scheduler's rights are checked in [`super::iam`]);
//! what the deployed consumer did on GitHub is in [`github`].
//!
//! Invariant: every assertion message names the item and the seam (which rendered setting,
//! which role, which process), so a failing rehearsal says what to fix.

use super::board::item_id;
use super::env::{self, CODEBUILD_PREFIX, CODEBUILD_PROVIDED};
use super::iam;
use super::scenario::{COVERAGE, GOOD, HOSTILE, Outcome};
use super::tasks::tail;
use kiro_protocol::{FailureClass, JobState};
use kiro_tests::aws::BuildView;
use std::collections::BTreeMap;

pub mod github;

fn builds_of(o: &Outcome, quickstart_id: &str) -> Vec<BuildView> {
    let id = item_id(quickstart_id);
    o.emu
        .builds()
        .into_iter()
        .filter(|b| {
            b.variables
                .iter()
                .any(|v| v.name == "KIRO_ITEM_ID" && v.value == id)
        })
        .collect()
}

fn job<'a>(o: &'a Outcome, quickstart_id: &str) -> &'a kiro_protocol::JobRecord {
    let id = item_id(quickstart_id);
    o.jobs
        .iter()
        .find(|j| j.item.as_str() == id)
        .unwrap_or_else(|| {
            panic!(
                "no job record for {quickstart_id} ({id}) in the table {} of the {} stack",
                o.render.table.name, o.render.stack
            )
        })
}

/// The consumers' warnings and errors (the crashed one's first), at most the last 30.
fn consumer_log(o: &Outcome) -> String {
    let lines: Vec<&str> = o
        .consumer_logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\"") || !l.starts_with('{'))
        .collect();
    format!(
        "consumer warnings and errors:\n{}",
        tail(&lines.join("\n"), 30)
    )
}

/// The three good items: succeeded once, pushed, one sticky report, a check run when the
/// stack configures the App, board Done.
pub fn good_items_succeeded(o: &Outcome) {
    for (item, repo, pr, branch) in GOOD {
        let j = job(o, item);
        assert_eq!(
            j.state,
            JobState::Succeeded,
            "{item}: {:?} after {} attempt(s), last failure {:?}\n{}",
            j.state,
            j.attempts,
            j.last_failure,
            consumer_log(o)
        );
        let bare = git2::Repository::open_bare(o.forge.join(format!("acme/{repo}.git"))).unwrap();
        let tip = bare
            .find_reference(&format!("refs/heads/{branch}"))
            .unwrap()
            .peel_to_commit()
            .unwrap();
        assert_eq!(
            tip.author().name().ok(),
            Some("kiro-worker"),
            "{item}: the tip of {branch} in acme/{repo} is not the worker's commit: {:?}",
            tip.message()
        );
        let full = format!("acme/{repo}");
        let reports: Vec<_> = o.github.with(|s| {
            s.comments
                .iter()
                .filter(|c| {
                    c.repo == full && c.pr == pr && c.body.contains(kiro_github::gh::REPORT_MARKER)
                })
                .cloned()
                .collect()
        });
        assert_eq!(
            reports.len(),
            1,
            "{item}: one sticky report on {full}#{pr}: {reports:?}"
        );
        let status = o.github.item(&item_id(item));
        assert_eq!(
            status.status, "Done",
            "{item}: board status (note {:?})",
            status.note
        );
        if o.app_configured {
            let sha = tip.id().to_string();
            let runs: Vec<_> = o.github.with(|s| {
                s.check_runs
                    .iter()
                    .filter(|c| c.repo == full && c.head_sha == sha)
                    .cloned()
                    .collect()
            });
            assert_eq!(
                runs.len(),
                1,
                "{item}: one check run on {full}@{sha} written with the App's installation token \
                 (the stack configures the App key); refused GitHub calls: {:?}",
                o.github.with(|s| s.refused.clone())
            );
            assert!(
                runs[0].token.starts_with("ghs_"),
                "{item}: check run written with {}",
                runs[0].token
            );
            assert_eq!(runs[0].conclusion.as_deref(), Some("success"), "{item}");
        }
    }
}

/// The coverage item is dead-lettered with its reason, in the SQS DLQ.
pub fn coverage_item_dead_lettered(o: &Outcome) {
    let j = job(o, COVERAGE);
    assert_eq!(
        j.state,
        JobState::DeadLettered,
        "{COVERAGE}: {j:?}\n{}",
        consumer_log(o)
    );
    assert_eq!(
        j.last_failure.as_ref().map(|f| f.class),
        Some(FailureClass::CoverageBelow),
        "{COVERAGE}: {j:?}"
    );
    let letters: Vec<String> = o
        .dead_letters
        .iter()
        .map(|d| format!("{} {} {}", d.group, d.letter.class, d.letter.reason))
        .collect();
    assert_eq!(
        o.dead_letters.len(),
        1,
        "exactly one dead letter ({COVERAGE}) in {}: {letters:?}",
        o.render.dlq.name
    );
    let d = &o.dead_letters[0];
    assert!(
        d.body.contains(&item_id(COVERAGE)),
        "the dead letter is {COVERAGE}'s: {}",
        d.body
    );
    assert_eq!(d.letter.class, FailureClass::CoverageBelow, "{letters:?}");
    assert!(
        d.letter.reason.contains("below"),
        "the reason says why: {}",
        d.letter.reason
    );
}

/// The hostile item is rejected by the producer: board Failed with a note, never enqueued.
pub fn hostile_item_rejected(o: &Outcome) {
    let id = item_id(HOSTILE);
    let item = o.github.item(&id);
    assert_eq!(
        item.status,
        "Failed",
        "{HOSTILE}: board status; producer log:\n{}",
        tail(&o.producer_log, 30)
    );
    assert!(
        item.note.as_deref().unwrap_or_default().contains("branch"),
        "{HOSTILE}: the note names the field: {:?}",
        item.note
    );
    assert!(
        o.jobs.iter().all(|j| j.item.as_str() != id),
        "{HOSTILE} has a job record"
    );
    assert!(builds_of(o, HOSTILE).is_empty(), "{HOSTILE} got a build");
}

/// Exactly one build per item (no duplicate builds), except retried failures.
pub fn one_build_per_item(o: &Outcome) {
    for (item, ..) in GOOD.iter().chain([&(COVERAGE, "", 0, "")]) {
        let builds = builds_of(o, item);
        let ids: Vec<&str> = builds.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            builds.len(),
            1,
            "{item}: exactly one CodeBuild build, got {ids:?}\n{}",
            consumer_log(o)
        );
    }
}

/// The crashed consumer's held build is the only build of its item, and it was adopted.
pub fn reattached_to_the_held_build(o: &Outcome) {
    let held = o.held_build.as_deref().expect("a held build");
    let build = o
        .emu
        .builds()
        .into_iter()
        .find(|b| b.id == held)
        .expect("the held build");
    let item = build
        .variables
        .iter()
        .find(|v| v.name == "KIRO_ITEM_ID")
        .map(|v| v.value.clone())
        .expect("the held build names its item");
    let all: Vec<String> = o
        .emu
        .builds()
        .into_iter()
        .filter(|b| {
            b.variables
                .iter()
                .any(|v| v.name == "KIRO_ITEM_ID" && v.value == item)
        })
        .map(|b| format!("{} {}", b.id, b.status))
        .collect();
    assert_eq!(
        all.len(),
        1,
        "{item}: the consumer that replaced the crashed one started a second build instead of \
         re-attaching to {held}: {all:?}\n{}",
        consumer_log(o)
    );
    let j = o
        .jobs
        .iter()
        .find(|j| j.item.as_str() == item)
        .expect("its job record");
    assert_eq!(
        (j.state, j.build_id.as_ref().map(|b| b.as_str())),
        (JobState::Succeeded, Some(held)),
        "{item}: the consumer that replaced the crashed one did not finish on the held build \
         {held} (attempts {}, last failure {:?})\n{}",
        j.attempts,
        j.last_failure,
        consumer_log(o)
    );
}

/// Builds beyond the project's concurrent build limit waited and succeeded.
pub fn limit_waited(o: &Outcome) {
    let refused = o
        .emu
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some("StartBuild") && c.status == Some(400))
        .count();
    assert!(
        refused > 0,
        "no StartBuild hit the project's concurrent build limit ({}); the rehearsal stack must \
         set it below the number of projects",
        o.render.codebuild.concurrent_build_limit
    );
    // … and none of those items was dead-lettered for it (only the coverage item is).
    coverage_item_dead_lettered(o);
}

/// Every build's shell environment: the project's variables merged with the consumer's
/// overrides, the buildspec's own variables and secrets, what CodeBuild sets, and the
/// listed additions — nothing else.
pub fn worker_environment_exact(o: &Outcome) {
    let spec = &o.render.codebuild.buildspec;
    for b in o.emu.builds() {
        if b.environment.is_empty() {
            continue;
        }
        let mut allowed: BTreeMap<String, String> = BTreeMap::new();
        for v in &b.variables {
            if let Some(actual) = b.environment.get(&v.name) {
                allowed.insert(v.name.clone(), actual.clone());
            } else {
                allowed.insert(v.name.clone(), v.value.clone());
            }
        }
        for (name, _, _) in kiro_tests::aws::codebuild::env::buildspec_references(spec) {
            if let Some(actual) = b.environment.get(&name) {
                allowed.insert(name, actual.clone());
            }
        }
        // The buildspec's own `env.variables` (KIRO_OUTCOME_FILE).
        let doc: serde_json::Value = serde_saphyr::from_str(spec).unwrap_or_default();
        for (k, v) in doc
            .pointer("/env/variables")
            .and_then(|v| v.as_object())
            .into_iter()
            .flatten()
        {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            allowed.insert(k.clone(), v);
        }
        let mut platform: Vec<&str> = CODEBUILD_PROVIDED.to_vec();
        platform.push("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        env::assert_exact(
            &format!("kiro-worker in build {}", b.id),
            &b.environment,
            &allowed,
            &platform,
            &[CODEBUILD_PREFIX],
        );
        // The project's rendered plain variables reach the build as rendered (the collector
        // endpoint as the rehearsal rewrote it): StartBuild overrides none of them.
        for (k, v) in o.render.codebuild.plain_environment() {
            let want = if o.build_collector_rendered.as_deref() == Some(v.as_str()) {
                o.build_collector.uri()
            } else {
                v.clone()
            };
            assert_eq!(
                b.environment.get(&k),
                Some(&want),
                "build {}: the project's {k} is {v:?} in the {} stack, the build got another \
                 value (StartBuild's environmentVariablesOverride replaced it)",
                b.id,
                o.render.stack
            );
        }
    }
}

/// The worker's spans reach the collector the stack configures for builds.
pub async fn worker_spans_reach_the_build_collector(o: &Outcome) {
    let rendered = o.build_collector_rendered.as_deref().unwrap_or_else(|| {
        panic!(
            "the CodeBuild project sets no OTEL_EXPORTER_OTLP_ENDPOINT: the worker's spans have \
             no collector (project variables: {:?})",
            o.render
                .codebuild
                .plain_environment()
                .keys()
                .collect::<Vec<_>>()
        )
    });
    let at_builds = super::collector::spans(&o.build_collector).await;
    let at_task = super::collector::spans(&o.task_collector).await;
    let worker_at_task = at_task.iter().filter(|(s, _)| s == "kiro-worker").count();
    assert_eq!(
        worker_at_task, 0,
        "kiro-worker exported {worker_at_task} span(s) to the consumer task's own collector \
         (the consumer passes its OTEL_EXPORTER_OTLP_ENDPOINT into builds, where it names the \
         build container itself)"
    );
    assert!(
        at_builds.iter().any(|(s, _)| s == "kiro-worker"),
        "no kiro-worker span reached the build collector the stack configures ({rendered}); \
         it received {} span(s)",
        at_builds.len()
    );
}

/// IAM, measured (see [`iam`]).
pub fn iam_measured(o: &Outcome) {
    let m = iam::measure(&o.render, &o.emu.calls(), &o.scheduler_actions);
    m.assert_clean(&o.render);
}

/// Each task's secrets were resolved with its execution role (as ECS does), and no
/// other role read them.
pub fn task_secrets_resolved_by_execution_roles(o: &Outcome) {
    let calls = o.emu.calls();
    for task in [&o.render.tasks.consumer, &o.render.tasks.producer] {
        let exec = super::provision::role_key(&o.render, &task.execution_role_arn);
        for c in &task.containers {
            for (name, arn) in &c.secrets {
                let fetched = calls.iter().any(|call| {
                    call.role.as_deref() == Some(exec.as_str())
                        && call.action.as_deref() == Some("GetSecretValue")
                        && call.request.as_ref().and_then(|r| r["SecretId"].as_str()) == Some(arn)
                        && call.succeeded()
                });
                assert!(
                    fetched,
                    "{}: the container secret {name} ({arn}) was not resolved with the execution role {exec}",
                    task.family
                );
            }
        }
    }
    let task_roles = [
        super::provision::role_key(&o.render, &o.render.tasks.consumer.task_role_arn),
        super::provision::role_key(&o.render, &o.render.tasks.producer.task_role_arn),
    ];
    let leaked: Vec<String> = calls
        .iter()
        .filter(|c| c.action.as_deref() == Some("GetSecretValue"))
        .filter(|c| c.role.as_ref().is_some_and(|r| task_roles.contains(r)))
        .map(|c| format!("{:?} read {:?}", c.role, c.resources))
        .collect();
    assert!(
        leaked.is_empty(),
        "task roles read secrets themselves: {leaked:?}"
    );
}

/// The hostile item never reached the queue: no recorded SendMessage names it.
pub fn hostile_item_never_enqueued(o: &Outcome) {
    let id = item_id(HOSTILE);
    let sent: Vec<String> = o
        .emu
        .calls()
        .iter()
        .filter(|c| {
            c.action
                .as_deref()
                .is_some_and(|a| a.starts_with("SendMessage"))
        })
        .filter(|c| {
            c.request
                .as_ref()
                .is_some_and(|r| r.to_string().contains(&id))
        })
        .map(|c| format!("#{} {:?} by {:?}", c.seq, c.action, c.role))
        .collect();
    assert!(sent.is_empty(), "{HOSTILE} was sent to a queue: {sent:?}");
}

/// Every build runs with the project's timeout (`buildTimeoutMinutes`), not one the
/// consumer imposes on every StartBuild.
pub fn builds_keep_the_project_timeout(o: &Outcome) {
    let want = o.render.codebuild.build_timeout;
    for b in o.emu.builds() {
        assert_eq!(
            b.timeout_in_minutes, want,
            "build {} runs with a {}-minute timeout, the {} stack's project says {want} \
             (StartBuild overrode timeoutInMinutes)",
            b.id, b.timeout_in_minutes, o.render.stack
        );
    }
}

/// The consumer's traces and OTLP metrics reach its collector sidecar: the endpoint the
/// consumer is given is the one the sidecar's configuration listens on, the sidecar has a
/// traces and a metrics pipeline fed by that receiver, and the stand-in sidecar got both.
pub async fn consumer_telemetry_reaches_its_sidecar(o: &Outcome) {
    let consumer = o.render.tasks.consumer.container("consumer");
    let Some(endpoint) = consumer.environment.get("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        panic!("the consumer container sets no OTEL_EXPORTER_OTLP_ENDPOINT");
    };
    let config = o
        .render
        .collector_config
        .as_deref()
        .expect("the consumer task has a collector sidecar with a configuration");
    let config: serde_json::Value = serde_saphyr::from_str(config)
        .unwrap_or_else(|e| panic!("the sidecar's configuration is not YAML: {e}"));
    let listens = config
        .pointer("/receivers/otlp/protocols/http/endpoint")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    };
    assert!(
        !listens.is_empty() && port(listens) == port(endpoint),
        "the consumer exports to {endpoint}, the sidecar's OTLP/HTTP receiver listens on {listens:?}"
    );
    for pipeline in ["traces", "metrics"] {
        let receivers = config
            .pointer(&format!("/service/pipelines/{pipeline}/receivers"))
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        assert!(
            receivers.iter().any(|r| r == "otlp"),
            "the sidecar has no {pipeline} pipeline fed by its otlp receiver: the consumer's {pipeline} are dropped"
        );
    }
    let spans = super::collector::spans(&o.task_collector).await;
    assert!(
        spans.iter().any(|(s, _)| s == "kiro-consumer"),
        "no kiro-consumer span reached the consumer's sidecar ({endpoint})"
    );
    assert!(
        super::collector::metric_exports(&o.task_collector).await > 0,
        "no OTLP metrics export from the consumer reached its sidecar ({endpoint})"
    );
}

/// The consumer held ECS scale-in protection while it had jobs and released it when it
/// had none (the service may then scale it in).
pub fn task_protection_held_then_released(o: &Outcome) {
    let task = o.emu.task_arn(&o.last_consumer);
    let p = o.emu.task_protection(&task).unwrap_or_else(|| {
        panic!(
            "the consumer never set scale-in protection on its task {task} \
             (ECS_CONTAINER_METADATA_URI_V4 names it)"
        )
    });
    assert!(p.updates >= 2, "protection set and released: {p:?}");
    assert!(
        !p.enabled,
        "the idle consumer left its task protected: {p:?}"
    );
}
