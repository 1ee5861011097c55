//! The worker's outcome, as it crosses the build boundary.
//!
//! The worker runs inside a build and can only talk back through the build's exported
//! environment variables (CodeBuild's `exportedEnvironmentVariables`, or the local
//! runner's equivalent). This module is the one place that turns an outcome into those
//! variables and back. A missing or garbled outcome is read as a build failure, never
//! as success.

use crate::failure::{Failure, FailureClass};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Exported variable names.
pub mod vars {
    pub const OUTCOME: &str = "KIRO_OUTCOME";
    pub const FAILURE_CLASS: &str = "KIRO_FAILURE_CLASS";
    pub const FAILURE_REASON: &str = "KIRO_FAILURE_REASON";
    pub const COVERAGE: &str = "KIRO_COVERAGE";
    pub const TASKS_BEFORE: &str = "KIRO_TASKS_DONE_BEFORE";
    pub const TASKS_AFTER: &str = "KIRO_TASKS_DONE_AFTER";
    pub const TASKS_TOTAL: &str = "KIRO_TASKS_TOTAL";
    pub const COMMIT: &str = "KIRO_COMMIT";
    pub const AGENT_SECONDS: &str = "KIRO_AGENT_SECONDS";
    /// All of them, in the order buildspec.yml lists them.
    pub const ALL: [&str; 9] = [
        OUTCOME,
        FAILURE_CLASS,
        FAILURE_REASON,
        COVERAGE,
        TASKS_BEFORE,
        TASKS_AFTER,
        TASKS_TOTAL,
        COMMIT,
        AGENT_SECONDS,
    ];
}

/// Whether the worker did its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    Succeeded,
    Failed,
}

/// What the worker reports at the end of a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerOutcome {
    pub status: OutcomeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    #[serde(default)]
    pub tasks_done_before: u32,
    #[serde(default)]
    pub tasks_done_after: u32,
    #[serde(default)]
    pub tasks_total: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Wall-clock seconds the agent ran in this build (`None`: it never ran). The
    /// consumer adds it to the item's job record, where the per-item budget is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_seconds: Option<u64>,
}

impl WorkerOutcome {
    pub fn success() -> Self {
        WorkerOutcome {
            status: OutcomeStatus::Succeeded,
            failure: None,
            coverage: None,
            tasks_done_before: 0,
            tasks_done_after: 0,
            tasks_total: 0,
            commit: None,
            agent_seconds: None,
        }
    }

    pub fn failure(failure: Failure) -> Self {
        WorkerOutcome {
            status: OutcomeStatus::Failed,
            failure: Some(failure),
            ..Self::success()
        }
    }

    /// The exported variables that carry this outcome. Reasons are flattened to one line
    /// and cut to 1,000 characters.
    pub fn to_vars(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let status = match self.status {
            OutcomeStatus::Succeeded => "succeeded",
            OutcomeStatus::Failed => "failed",
        };
        m.insert(vars::OUTCOME.into(), status.into());
        if let Some(f) = &self.failure {
            m.insert(vars::FAILURE_CLASS.into(), f.class.as_str().into());
            let one_line: String = f
                .reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(1000)
                .collect();
            m.insert(vars::FAILURE_REASON.into(), one_line);
        }
        if let Some(c) = self.coverage {
            m.insert(vars::COVERAGE.into(), format!("{c:.2}"));
        }
        m.insert(
            vars::TASKS_BEFORE.into(),
            self.tasks_done_before.to_string(),
        );
        m.insert(vars::TASKS_AFTER.into(), self.tasks_done_after.to_string());
        m.insert(vars::TASKS_TOTAL.into(), self.tasks_total.to_string());
        if let Some(c) = &self.commit {
            m.insert(vars::COMMIT.into(), c.clone());
        }
        if let Some(s) = self.agent_seconds {
            m.insert(vars::AGENT_SECONDS.into(), s.to_string());
        }
        m
    }

    /// Read an outcome back from a finished build's exported variables. A build that
    /// exported nothing usable is a `build-failed` failure (the worker never reported).
    pub fn from_vars(v: &BTreeMap<String, String>) -> WorkerOutcome {
        let num = |k: &str| {
            v.get(k)
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        let coverage = v
            .get(vars::COVERAGE)
            .and_then(|s| s.trim().parse::<f64>().ok());
        let base = WorkerOutcome {
            coverage,
            tasks_done_before: num(vars::TASKS_BEFORE),
            tasks_done_after: num(vars::TASKS_AFTER),
            tasks_total: num(vars::TASKS_TOTAL),
            commit: v.get(vars::COMMIT).filter(|s| !s.is_empty()).cloned(),
            agent_seconds: v
                .get(vars::AGENT_SECONDS)
                .and_then(|s| s.trim().parse::<u64>().ok()),
            ..WorkerOutcome::success()
        };
        match v.get(vars::OUTCOME).map(|s| s.trim()) {
            Some("succeeded") => base,
            Some("failed") => {
                let class = v
                    .get(vars::FAILURE_CLASS)
                    .and_then(|c| c.trim().parse::<FailureClass>().ok())
                    .unwrap_or(FailureClass::BuildFailed);
                let reason = v
                    .get(vars::FAILURE_REASON)
                    .cloned()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "the worker reported a failure without a reason".into());
                WorkerOutcome {
                    status: OutcomeStatus::Failed,
                    failure: Some(Failure::new(class, reason)),
                    ..base
                }
            }
            other => WorkerOutcome {
                status: OutcomeStatus::Failed,
                failure: Some(Failure::new(
                    FailureClass::BuildFailed,
                    match other {
                        None => {
                            "the build exported no outcome (the worker did not finish)".to_owned()
                        }
                        Some(s) => format!("the build exported an unknown outcome {s:?}"),
                    },
                )),
                ..base
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_round_trip() {
        let mut o = WorkerOutcome::failure(Failure::new(
            FailureClass::CoverageBelow,
            "72.5% < 80%\nline",
        ));
        o.coverage = Some(72.5);
        o.tasks_done_before = 1;
        o.tasks_done_after = 3;
        o.tasks_total = 4;
        o.agent_seconds = Some(754);
        let back = WorkerOutcome::from_vars(&o.to_vars());
        assert_eq!(back.status, OutcomeStatus::Failed);
        assert_eq!(
            back.failure.as_ref().unwrap().class,
            FailureClass::CoverageBelow
        );
        assert!(!back.failure.as_ref().unwrap().reason.contains('\n'));
        assert_eq!(back.coverage, Some(72.5));
        assert_eq!(
            (
                back.tasks_done_before,
                back.tasks_done_after,
                back.tasks_total
            ),
            (1, 3, 4)
        );
        assert_eq!(back.agent_seconds, Some(754));
        let garbled = BTreeMap::from([(vars::AGENT_SECONDS.to_string(), "soon".to_string())]);
        assert_eq!(WorkerOutcome::from_vars(&garbled).agent_seconds, None);
    }

    #[test]
    fn missing_outcome_is_a_build_failure_not_success() {
        let o = WorkerOutcome::from_vars(&BTreeMap::new());
        assert_eq!(o.status, OutcomeStatus::Failed);
        assert_eq!(o.failure.unwrap().class, FailureClass::BuildFailed);
        let mut v = BTreeMap::new();
        v.insert(vars::OUTCOME.to_string(), "failed".to_string());
        v.insert(vars::FAILURE_CLASS.to_string(), "bogus".to_string());
        assert_eq!(
            WorkerOutcome::from_vars(&v).failure.unwrap().class,
            FailureClass::BuildFailed
        );
    }
}
