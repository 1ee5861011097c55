//! The pipeline: the steps in order, and the bookkeeping that turns their results into
//! a report, a board status and a [`WorkerOutcome`].
//!
//! Invariants:
//! - nothing is pushed to the pull request's branch unless the tests passed, coverage met
//!   the threshold (in any round of the fix loop, [`rounds`]) and the fence was current
//!   right before the push; only reports this test run wrote count, and reports and test
//!   artefacts are never committed ([`gates`]);
//! - work the gates did not accept after the last round (or left by an agent that
//!   failed) is never thrown away: it goes to the side branch `kiro/partial/<branch>`
//!   ([`partial`]) with its failure brief, under the same fence check, and the next
//!   attempt starts from it when it descends from the branch's tip; an attempt that
//!   pushes deletes the side branch it started from (a failure to delete only warns);
//! - the report and the board are touched only while the fence is current; a run that
//!   lost its fence touches nothing more;
//! - on failure the board is left as it is (the consumer decides retry or dead letter),
//!   but the report shows the failure;
//! - [`run`] never panics on bad input and always returns an outcome.

use crate::config::{Config, Inputs};
use crate::fence::check_fence;
use crate::outcome_file;
use crate::repo_settings::{self, Settings};
use crate::rounds;
use crate::run_state::{RunState, blocking, exclusions};
use crate::side_branch;
use crate::steps::partial;
use crate::steps::report::{self, ReportData};
use crate::steps::steering::{self, SteeringSource, SyncReport};
use crate::steps::token::{self, TokenSource};
use crate::steps::{git, setup, spec};
use crate::tasks::{self, Progress, Task};
use crate::wiring::Ports;
use kiro_protocol::TraceContext;
use kiro_protocol::{
    CheckReport, Failure, FailureClass, ItemStatus, OutcomeStatus, Report, StatusChange,
    WorkerOutcome,
};
use std::path::Path;
use tracing::{Instrument, error, info, info_span, instrument, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Run the whole pipeline for the item in `cfg`. Never panics; always an outcome.
pub async fn run(cfg: &Config, ports: &Ports) -> WorkerOutcome {
    let inputs = match Inputs::parse(cfg) {
        Ok(i) => i,
        Err(f) => {
            error!(class = %f.class, reason = %f.reason, "bad item");
            return WorkerOutcome::failure(f);
        }
    };
    // The build continues the item's trace under the consumer's `process` span, whose
    // context the consumer passed as `TRACEPARENT` (validated before use).
    let span = info_span!(
        parent: None,
        "worker",
        trace_id = tracing::field::Empty,
        kiro.item = %inputs.item,
        kiro.project = %inputs.project,
        kiro.attempt = inputs.attempt,
        kiro.fence = %inputs.fence,
    );
    let parent = cfg
        .traceparent
        .as_deref()
        .and_then(TraceContext::from_traceparent)
        .unwrap_or_default();
    kiro_telemetry::otel::continue_trace(&span, &parent);
    let outcome = run_item(cfg, ports, &inputs).instrument(span.clone()).await;
    if let Some(f) = &outcome.failure {
        span.set_status(opentelemetry::trace::Status::error(format!(
            "{}: {}",
            f.class, f.reason
        )));
        span.set_attribute(kiro_telemetry::otel::keys::FAILURE_CLASS, f.class.as_str());
    }
    outcome
}

/// Run, then write the outcome file. `Err` only when the file could not be written.
pub async fn run_and_write(cfg: &Config, ports: &Ports) -> std::io::Result<WorkerOutcome> {
    let outcome = run(cfg, ports).await;
    outcome_file::write(&cfg.outcome_path(), &outcome)?;
    Ok(outcome)
}

async fn run_item(cfg: &Config, ports: &Ports, inputs: &Inputs) -> WorkerOutcome {
    let mut st = RunState::default();
    let mut result = steps(cfg, ports, inputs, &mut st).await;
    let fence_lost = matches!(&result, Err(f) if f.class == FailureClass::FenceLost);
    if !fence_lost {
        match publish(cfg, ports, inputs, &st, result.as_ref().err()).await {
            Ok(()) => {}
            Err(f) if result.is_ok() => result = Err(f),
            Err(f) => warn!(reason = %f.reason, "could not report the failure"),
        }
    }
    let before = Progress::of(&st.before);
    let after = Progress::of(&st.after);
    let mut outcome = match result {
        Ok(()) => WorkerOutcome::success(),
        Err(f) => {
            error!(class = %f.class, reason = %f.reason, "item failed");
            WorkerOutcome::failure(f)
        }
    };
    outcome.coverage = st.coverage;
    outcome.tasks_done_before = before.done;
    outcome.tasks_done_after = after.done;
    outcome.tasks_total = after.total.max(before.total);
    outcome.commit = st.commit.clone().filter(|_| st.pushed);
    // The agent's time across the rounds, rounded up to whole seconds, when it ran.
    outcome.agent_seconds = st
        .agent_ran
        .then(|| u64::try_from(st.agent_time.as_millis().div_ceil(1000)).unwrap_or(u64::MAX));
    if outcome.status == OutcomeStatus::Succeeded {
        info!(commit = ?outcome.commit, "item succeeded");
    }
    outcome
}

async fn steps(
    cfg: &Config,
    ports: &Ports,
    inputs: &Inputs,
    st: &mut RunState,
) -> Result<(), Failure> {
    // A build whose fence is already stale must not even start the agent.
    check_fence(cfg, ports, inputs, "run").await?;
    mark_in_progress(ports, inputs).await;
    let tokens = token::from_config(cfg)?;
    info!(kind = tokens.kind(), "git token source");
    let checkout = cfg.checkout_dir();
    checkout_step(cfg, inputs, &checkout, tokens.as_ref()).await?;
    // The repository's settings, read once, before the agent or anything it holds runs.
    let settings = repo_settings::resolve(cfg, &inputs.repo, &checkout)?;
    st.settings = Some(settings.clone());
    let docs = validate_step(ports, inputs, &checkout).await?;
    let tasks_file = format!("{}/{}", inputs.spec, spec::TASKS);
    st.before = tasks::parse_checked(&docs.tasks, &tasks_file)
        .map_err(|e| Failure::new(FailureClass::PermanentInput, e.to_string()))?;
    st.after = st.before.clone();
    let side = partial::side_branch(&inputs.branch)
        .inspect_err(|f| warn!(reason = %f.reason, "no side branch for partial work"))
        .ok();
    if let Some(side) = &side {
        side_branch::pick_up(inputs, &checkout, side, tokens.as_ref(), st).await?;
    }
    st.steering = steering_step(cfg, &checkout).await?;
    setup::step(cfg, &settings, &checkout).await?;
    if let Err(f) = rounds::run(cfg, inputs, &checkout, &settings, &docs, st).await {
        if f.class != FailureClass::FenceLost
            && st.agent_ran
            && let Some(side) = &side
        {
            side_branch::keep(cfg, ports, inputs, &checkout, side, tokens.as_ref(), st, &f).await?;
        }
        return Err(f);
    }
    check_fence(cfg, ports, inputs, "push").await?;
    st.commit = commit_step(cfg, &settings, inputs, &checkout, &st.before, &st.after).await?;
    if st.commit.is_some() {
        push_step(inputs, &checkout, tokens.as_ref()).await?;
        st.pushed = true;
    } else if Progress::of(&st.after).open() == 0 {
        // Nothing new and every task done: the branch's tip is the work (pushed by an
        // earlier attempt whose report was lost). Name it; never redo it.
        let dir = checkout.clone();
        let tip = blocking(move || git::head(&dir)).await?;
        info!(commit = %tip, "the work is already on the branch");
        st.commit = Some(tip.to_string());
        st.pushed = true;
    }
    if st.pushed {
        side_branch::drop_merged(cfg, ports, inputs, &checkout, tokens.as_ref(), st).await?;
    }
    Ok(())
}

#[instrument(skip_all)]
async fn mark_in_progress(ports: &Ports, inputs: &Inputs) {
    // Only from an active status: a card a human moved away stays where it is.
    let to = ItemStatus::InProgress;
    match ports
        .board
        .set_status_from(inputs.item.as_str(), to.moved_from(), to, None)
        .await
    {
        Ok(StatusChange::Moved) => {}
        Ok(StatusChange::Elsewhere(at)) => {
            warn!(now = ?at, "the board item is not in an active status; left where it is")
        }
        Err(e) => warn!(error = %e, "could not move the board item to In Progress"),
    }
}

#[instrument(skip_all, fields(branch = %inputs.branch))]
async fn checkout_step(
    cfg: &Config,
    inputs: &Inputs,
    dir: &Path,
    tokens: &dyn TokenSource,
) -> Result<(), Failure> {
    let url = cfg.clone_url(&inputs.repo);
    let branch = inputs.branch.clone();
    let token = tokens.token().await?;
    let dir = dir.to_owned();
    let head = blocking(move || git::checkout(&url, &dir, &branch, token.as_ref())).await?;
    info!(%head, "checked out");
    Ok(())
}

#[instrument(skip_all, fields(spec = %inputs.spec, pr = %inputs.pr))]
async fn validate_step(
    ports: &Ports,
    inputs: &Inputs,
    checkout: &Path,
) -> Result<spec::SpecDocs, Failure> {
    let docs = spec::load(checkout, &inputs.spec)?;
    let pr = ports
        .pulls
        .get(&inputs.repo, inputs.pr)
        .await?
        .ok_or_else(|| {
            Failure::new(
                FailureClass::PermanentInput,
                format!("pull request {} not found in {}", inputs.pr, inputs.repo),
            )
        })?;
    if !pr.open {
        return Err(Failure::new(
            FailureClass::PermanentInput,
            format!("pull request {} in {} is not open", inputs.pr, inputs.repo),
        ));
    }
    if pr.head_branch != inputs.branch.as_str() {
        return Err(Failure::new(
            FailureClass::PermanentInput,
            format!(
                "pull request {} is for branch {}, not {}",
                inputs.pr,
                kiro_protocol::ids::quote_for_display(&pr.head_branch),
                inputs.branch
            ),
        ));
    }
    Ok(docs)
}

/// Sync the central steering files into the checkout, when a source is configured.
#[instrument(skip_all)]
async fn steering_step(cfg: &Config, checkout: &Path) -> Result<Option<SyncReport>, Failure> {
    let Some(raw) = cfg.steering_source.as_deref() else {
        return Ok(None);
    };
    let source = SteeringSource::parse(raw)?;
    let dir = checkout.to_owned();
    let report = blocking(move || steering::sync(&source, &dir)).await?;
    Ok(Some(report))
}

#[instrument(skip_all)]
async fn commit_step(
    cfg: &Config,
    settings: &Settings,
    inputs: &Inputs,
    checkout: &Path,
    before: &[Task],
    after: &[Task],
) -> Result<Option<String>, Failure> {
    let done = tasks::newly_done(before, after);
    let message = commit_message(inputs, &done);
    let exclude = exclusions(cfg, settings, checkout);
    let dir = checkout.to_owned();
    let name = cfg.git_author_name.clone();
    let email = cfg.git_author_email.clone();
    let oid = blocking(move || git::commit_all(&dir, &message, &name, &email, &exclude)).await?;
    match &oid {
        Some(o) => info!(commit = %o, "committed"),
        None => info!("nothing to commit"),
    }
    Ok(oid.map(|o| o.to_string()))
}

/// `feat(subtract): complete tasks 1, 2.1 of .kiro/specs/subtract`
pub fn commit_message(inputs: &Inputs, done: &[String]) -> String {
    let feature = inputs.spec.feature();
    let subject = match done {
        [] => format!("feat({feature}): work on {}", inputs.spec),
        [one] => format!("feat({feature}): complete task {one} of {}", inputs.spec),
        many => format!(
            "feat({feature}): complete tasks {} of {}",
            many.join(", "),
            inputs.spec
        ),
    };
    format!(
        "{subject}\n\nKiro-Item: {}\nKiro-Attempt: {}\nKiro-Fence: {}\n",
        inputs.item, inputs.attempt, inputs.fence
    )
}

#[instrument(skip_all, fields(branch = %inputs.branch))]
async fn push_step(
    inputs: &Inputs,
    checkout: &Path,
    tokens: &dyn TokenSource,
) -> Result<(), Failure> {
    let dir = checkout.to_owned();
    let branch = inputs.branch.clone();
    // Asked again right before the push: an App token then has nearly its hour left.
    let token = tokens.token().await?;
    blocking(move || git::push(&dir, &branch, token.as_ref())).await?;
    info!("pushed");
    Ok(())
}

/// One line for the check run: the failure, or tasks and coverage.
fn check_title(st: &RunState, threshold: f64, failure: Option<&Failure>) -> String {
    if let Some(f) = failure {
        let reason: String = f.reason.chars().take(120).collect();
        return kiro_protocol::redact::redact(&format!("{}: {reason}", f.class));
    }
    let coverage = st
        .coverage
        .map(|c| format!("coverage {c:.1}% (threshold {threshold:.0}%)"))
        .unwrap_or_else(|| "coverage not measured".to_owned());
    format!("tasks done, {coverage}")
}

/// Report on the pull request and, on success, move the board item to Done — both only
/// while the fence is current.
#[instrument(skip_all, fields(pr = %inputs.pr))]
async fn publish(
    cfg: &Config,
    ports: &Ports,
    inputs: &Inputs,
    st: &RunState,
    failure: Option<&Failure>,
) -> Result<(), Failure> {
    check_fence(cfg, ports, inputs, "report").await?;
    let threshold = st
        .settings
        .as_ref()
        .map_or(cfg.coverage_threshold, |s| s.coverage_threshold);
    let markdown = report::render(&ReportData {
        inputs,
        before: &st.before,
        after: &st.after,
        tests: st.tests.as_ref(),
        coverage: st.coverage,
        threshold,
        commit: st.commit.as_deref(),
        pushed: st.pushed,
        steering: st.steering.as_ref(),
        failure,
        rounds: &st.rounds,
        agent_time: st.agent_time,
        agent_summary: &st.agent_summary,
        side_notes: &st.side_notes,
        build_url: cfg.build_url.as_deref(),
    });
    let markdown = keep_full_report(cfg, &kiro_protocol::redact::redact(&markdown));
    let check = CheckReport {
        item: inputs.item.clone(),
        success: failure.is_none(),
        title: check_title(st, threshold, failure),
        summary: markdown.clone(),
    };
    ports
        .pulls
        .upsert_report(
            &inputs.repo,
            inputs.pr,
            &Report {
                item: inputs.item.clone(),
                markdown,
            },
        )
        .await?;
    // The check run is a courtesy on top of the report (GitHub App only): never fatal.
    if let Err(e) = ports
        .pulls
        .publish_check(&inputs.repo, inputs.pr, &check)
        .await
    {
        warn!(error = %e, "cannot publish the check run");
    }
    if failure.is_none() {
        // Only from In Progress: a card a human moved away stays where it is.
        let to = ItemStatus::Done;
        if let StatusChange::Elsewhere(at) = ports
            .board
            .set_status_from(inputs.item.as_str(), to.moved_from(), to, None)
            .await?
        {
            warn!(now = ?at, "the board item is not In Progress; left where it is");
        }
    }
    Ok(())
}

/// Write the whole report to the build's report file and return what is posted: the
/// report cut to GitHub's limit, naming the file (and the build's page) when cut.
fn keep_full_report(cfg: &Config, markdown: &str) -> String {
    let file = cfg.report_file();
    let _ = std::fs::create_dir_all(&cfg.build_dir);
    if let Err(e) = std::fs::write(&file, markdown) {
        warn!(file = %file.display(), error = %e, "cannot keep the full report");
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let full_at = match cfg.build_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => format!("`{name}` in the directory of [the build]({})", url.trim()),
        None => format!("`{name}` in the build's directory"),
    };
    report::cap(markdown, &full_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages_name_spec_and_tasks() {
        let i = Inputs::sample(1);
        let m = commit_message(&i, &["1".into(), "2.1".into()]);
        assert!(m.starts_with(
            "feat(subtract): complete tasks 1, 2.1 of .kiro/specs/subtract\n\nKiro-Item: CALC-1\n"
        ));
        assert!(
            commit_message(&i, &["2".into()]).starts_with("feat(subtract): complete task 2 of")
        );
    }
}
