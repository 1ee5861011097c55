//! The fix loop: the agent's rounds and the gates after each.
//!
//! Round 1 prompts the agent with the spec's open tasks (with the previous attempt's
//! failure brief when it starts from a side branch); when the gates then fail with a
//! class the agent can fix ([`fixable`]: `tests-failed`, `coverage-below`), the next
//! round prompts it again with a failure brief ([`brief`]), up to
//! [`Settings::fix_rounds`] more rounds.
//!
//! Invariants:
//! - the agent's time limit is the budget of the whole attempt: every round gets what
//!   the earlier ones left, and no round starts on a spent budget;
//! - every round is recorded (what the agent was told in one line, the outcome, the
//!   duration) for the report, and the agent's time is summed across rounds;
//! - the loop only runs the agent and the gates: it commits and pushes nothing.

use crate::child_env;
use crate::config::{Config, Inputs};
use crate::repo_settings::Settings;
use crate::run_state::RunState;
use crate::steps::brief::{self, FailureBrief, Findings};
use crate::steps::report::Round;
use crate::steps::test_run::TestResult;
use crate::steps::{agent, gates, spec, steering, test_run};
use crate::tasks::{self, Progress};
use kiro_protocol::{Failure, FailureClass};
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, instrument, warn};

/// The failure classes another round may fix.
pub fn fixable(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::TestsFailed | FailureClass::CoverageBelow
    )
}

/// The most lines of the agent's own summary kept for the report.
pub const SUMMARY_LINES: usize = 15;
/// The most characters of one summary line.
const SUMMARY_LINE_CHARS: usize = 300;

/// A round shorter than this is not started: the budget is spent.
const MIN_ROUND: Duration = Duration::from_secs(1);

/// What is left at `now` of the attempt's agent budget ending at `deadline` (none set
/// yet: all of it).
fn budget_left(deadline: Option<Instant>, budget: Duration, now: Instant) -> Duration {
    deadline.map_or(budget, |d| d.saturating_duration_since(now))
}

/// Whether the budget left at `now` allows another round.
fn another_round_fits(deadline: Option<Instant>, budget: Duration, now: Instant) -> bool {
    budget_left(deadline, budget, now) >= MIN_ROUND
}

fn one_line(s: &str, chars: usize) -> String {
    let mut out: String = s.chars().take(chars).collect();
    if s.chars().count() > chars {
        out.push('…');
    }
    out
}

/// Why the gates failed, and what they found for the brief.
struct GateFailure {
    failure: Failure,
    uncovered: Vec<crate::steps::coverage::Uncovered>,
}

/// Run the rounds on the checkout; `Ok` when the gates passed. `st.after` holds the
/// tasks as the checkout has them (on entry: before the first round).
pub(crate) async fn run(
    cfg: &Config,
    inputs: &Inputs,
    checkout: &Path,
    settings: &Settings,
    docs: &spec::SpecDocs,
    st: &mut RunState,
) -> Result<(), Failure> {
    let mut agent: Option<agent::Agent> = None;
    let mut deadline: Option<Instant> = None;
    // A brief from the previous attempt (its side branch) opens the first round.
    let mut brief = st.resume.as_ref().map(|(b, _)| b.clone());
    let secrets = secrets(cfg);
    for n in 1..=settings.fix_rounds.saturating_add(1) {
        let started = Instant::now();
        let open = Progress::of(&st.after).open() > 0;
        let told = if open || brief.is_some() {
            let (prompt, told) =
                prompt_for(settings, inputs, checkout, docs, st, brief.as_ref(), n);
            if agent.is_none() {
                let a = agent::Agent::from_config(cfg, std::env::vars_os())?;
                a.preflight(&cfg.preflight_log()).await?;
                agent = Some(a);
            }
            let a = agent.as_ref().expect("created above");
            // The first round gets the whole budget; each later one what is left.
            let left = match deadline {
                None => {
                    deadline = Some(Instant::now() + settings.agent_timeout);
                    settings.agent_timeout
                }
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            info!(round = n, budget_left = ?left, told = %told, "agent round");
            let run_started = Instant::now();
            // One `agent_step` span per round, under the worker's span.
            let span = info_span!("agent_step", spec = %inputs.spec, round = n);
            let run = a
                .run_with_tail(&prompt, checkout, &inputs.spec, left, &cfg.round_log(n))
                .instrument(span)
                .await;
            st.agent_time += run_started.elapsed();
            st.agent_ran = true;
            st.agent_summary = summary(&run.tail);
            let judged = run
                .result
                .and_then(|()| progress(inputs, checkout, st, n == 1 && brief.is_none()));
            if let Err(f) = judged {
                st.rounds.push(Round {
                    n,
                    told,
                    result: format!("{}: {}", f.class, one_line(&f.reason, 160)),
                    passed: false,
                    duration: started.elapsed(),
                });
                return Err(f);
            }
            told
        } else {
            info!("no required task is open: skipping the agent");
            "nothing: no required task is open".to_owned()
        };
        let gated = gates_round(cfg, settings, checkout, st).await;
        let mut round = Round {
            n,
            told,
            result: "checks passed".to_owned(),
            passed: true,
            duration: started.elapsed(),
        };
        let Err(g) = gated else {
            st.rounds.push(round);
            return Ok(());
        };
        let f = g.failure;
        round.passed = false;
        round.result = format!("{}: {}", f.class, one_line(&f.reason, 160));
        st.rounds.push(round);
        let b = brief::build(
            &Findings {
                failure: &f,
                tests: st.tests.as_ref(),
                test_cmd: &settings.test_command,
                coverage: st.coverage,
                threshold: settings.coverage_threshold,
                uncovered: &g.uncovered,
            },
            &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        st.brief = Some(b.clone());
        if !fixable(f.class) || n > settings.fix_rounds {
            return Err(f);
        }
        if !another_round_fits(deadline, settings.agent_timeout, Instant::now()) {
            warn!(
                round = n,
                "the agent's time limit is spent: no further round"
            );
            return Err(Failure::new(
                f.class,
                format!(
                    "{} (no time left for round {}: the agent's time limit of {} is spent)",
                    f.reason,
                    n + 1,
                    humantime::format_duration(settings.agent_timeout)
                ),
            ));
        }
        info!(round = n, class = %f.class, "the checks failed: another round with the failure brief");
        brief = Some(b);
    }
    unreachable!("the last round returns")
}

/// The prompt of round `n` and what it tells the agent, in one line.
fn prompt_for(
    settings: &Settings,
    inputs: &Inputs,
    checkout: &Path,
    docs: &spec::SpecDocs,
    st: &RunState,
    brief: Option<&FailureBrief>,
    n: u32,
) -> (String, String) {
    let steering_files = steering::read_all(checkout);
    let base = spec::prompt(
        &inputs.spec,
        docs,
        &st.after,
        &steering_files,
        &settings.test_command,
        settings.coverage_threshold,
    );
    let open = Progress::of(&st.after).open();
    match (brief, &st.resume) {
        (None, _) => (base, format!("the spec's {open} open required tasks")),
        (Some(b), Some((_, side))) if n == 1 => (
            brief::resume_prompt(&base, b, side.as_str()),
            format!(
                "the previous attempt's failure brief: {}",
                one_line(b.headline(), 160)
            ),
        ),
        (Some(b), _) => (
            brief::fix_prompt(&base, b, n),
            format!("the failure brief: {}", one_line(b.headline(), 160)),
        ),
    }
}

/// The last lines of the agent's output, bounded (the report redacts them again).
fn summary(tail: &[String]) -> Vec<String> {
    let lines: Vec<&String> = tail.iter().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(SUMMARY_LINES);
    lines[skip..]
        .iter()
        .map(|l| kiro_protocol::redact::redact(&one_line(l, SUMMARY_LINE_CHARS)))
        .collect()
}

/// Judge the agent by the repository: re-read tasks.md into `st.after`. `first`: the
/// first round of an attempt that starts afresh, which must make progress.
fn progress(
    inputs: &Inputs,
    checkout: &Path,
    st: &mut RunState,
    first: bool,
) -> Result<(), Failure> {
    let text = spec::read_doc(checkout, &inputs.spec, spec::TASKS).map_err(|f| {
        Failure::new(
            FailureClass::AgentFailed,
            format!("after the agent ran: {}", f.reason),
        )
    })?;
    let file = format!("{}/{}", inputs.spec, spec::TASKS);
    let after = tasks::parse_checked(&text, &file).map_err(|e| {
        Failure::new(
            FailureClass::AgentFailed,
            format!("after the agent ran: {e}"),
        )
    })?;
    let newly = tasks::newly_done(&st.after, &after);
    info!(done = ?newly, "tasks moved to done");
    let (was, now) = (Progress::of(&st.after), Progress::of(&after));
    if first && now.done <= was.done && now.open() > 0 {
        return Err(Failure::new(
            FailureClass::AgentFailed,
            "agent made no progress",
        ));
    }
    st.after = after;
    Ok(())
}

/// The gates: reports cleared, tests (+ JUnit), coverage. Fills `st.tests` and
/// `st.coverage`.
async fn gates_round(
    cfg: &Config,
    settings: &Settings,
    checkout: &Path,
    st: &mut RunState,
) -> Result<(), GateFailure> {
    let plain = |failure| GateFailure {
        failure,
        uncovered: Vec::new(),
    };
    st.coverage = None;
    // Only what this test run writes counts: no report left by an earlier commit, an
    // earlier round or the agent.
    gates::clear_reports(checkout, settings).map_err(plain)?;
    let started = SystemTime::now();
    let mut tests = tests_step(cfg, settings, checkout).await.map_err(plain)?;
    let run = gates::RunWindow {
        started,
        ended: SystemTime::now(),
    };
    let no_junit = gates::junit(checkout, settings, run, &mut tests);
    info!(passed = tests.passed, summary = %tests.summary, counts = ?tests.counts, "tests finished");
    let failed = tests.failure().or(no_junit);
    st.tests = Some(tests);
    if let Some(f) = failed {
        return Err(plain(f));
    }
    let (result, uncovered) = gates::coverage_and_gaps(checkout, settings, run);
    match result {
        Ok(c) => {
            st.coverage = Some(c);
            Ok(())
        }
        Err((failure, c)) => {
            st.coverage = c;
            Err(GateFailure { failure, uncovered })
        }
    }
}

fn secrets(cfg: &Config) -> Vec<String> {
    cfg.github
        .token
        .iter()
        .chain(cfg.kiro_api_key.iter())
        .map(|s| s.expose().to_owned())
        .collect()
}

#[instrument(skip_all)]
async fn tests_step(
    cfg: &Config,
    settings: &Settings,
    checkout: &Path,
) -> Result<TestResult, Failure> {
    let secrets = secrets(cfg);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let extra = child_env::parse_extra(child_env::TEST_PASS_SETTING, cfg.test_env_pass.as_deref())?;
    let env = child_env::ChildEnv::for_tests(std::env::vars_os(), &extra);
    test_run::run(
        &settings.test_command,
        checkout,
        settings.test_timeout,
        &cfg.test_log(),
        &secrets,
        &env,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failing_tests_and_short_coverage_get_another_round() {
        assert!(fixable(FailureClass::TestsFailed));
        assert!(fixable(FailureClass::CoverageBelow));
        for c in [
            FailureClass::ReportMissing,
            FailureClass::AgentFailed,
            FailureClass::BuildFailed,
            FailureClass::Auth,
            FailureClass::FenceLost,
        ] {
            assert!(!fixable(c), "{c}");
        }
    }

    /// The rounds share one budget: what the earlier rounds used is gone, and no round
    /// starts on less than [`MIN_ROUND`].
    #[test]
    fn the_rounds_share_one_budget() {
        let budget = Duration::from_secs(40 * 60);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(budget_left(None, budget, at(5)), budget);
        assert!(another_round_fits(None, budget, at(5)));
        let deadline = Some(start + budget);
        assert_eq!(
            budget_left(deadline, budget, at(25 * 60)),
            Duration::from_secs(15 * 60)
        );
        assert!(another_round_fits(deadline, budget, at(40 * 60 - 1)));
        let late = at(40 * 60 - 1) + Duration::from_millis(1);
        assert!(!another_round_fits(deadline, budget, late));
        assert_eq!(budget_left(deadline, budget, at(41 * 60)), Duration::ZERO);
    }

    #[test]
    fn the_summary_is_the_bounded_redacted_end_of_the_output() {
        let mut tail: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        tail.push(String::new());
        tail.push(format!(
            "done; key ghp_abcdefghijklmnop {}",
            "x".repeat(1000)
        ));
        let s = summary(&tail);
        assert_eq!(s.len(), SUMMARY_LINES);
        assert_eq!(s[0], "line 16");
        assert!(!s.last().unwrap().contains("ghp_abc"), "{:?}", s.last());
        assert!(s.last().unwrap().chars().count() <= SUMMARY_LINE_CHARS + 1);
    }
}
