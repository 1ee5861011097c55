//! The failure taxonomy.
//!
//! Every adapter maps its errors to a [`FailureClass`] once, where the error happens;
//! only the consumer's retry policy decides what a class means (retry with backoff, wait
//! for the holder, or dead-letter). The class names are stable strings: they travel in
//! messages, job records, build variables and metrics.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Why something failed, as one stable word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// A network error, a timeout, a 5xx: try again soon.
    Transient,
    /// The service asked us to slow down.
    Throttled,
    /// Someone else holds the project's lease: wait for it; never burns an attempt.
    Contention,
    /// The item itself is bad (a field fails validation, an unknown schema version, a
    /// missing spec or pull request): retrying cannot help.
    PermanentInput,
    /// Credentials are missing or rejected.
    Auth,
    /// The build failed for a reason the worker did not classify (a buildspec command,
    /// an infrastructure fault).
    BuildFailed,
    /// The build hit its time limit.
    TimedOut,
    /// The repository's tests failed.
    TestsFailed,
    /// Tests passed but line coverage is below the threshold.
    CoverageBelow,
    /// Tests ran but a report the gates read (coverage, JUnit) was not written by this
    /// run: missing, or older than the run. The setting naming it, or the test command
    /// writing it, is wrong; retrying the same item cannot help.
    ReportMissing,
    /// The agent failed, hung or made no progress on the spec's tasks.
    AgentFailed,
    /// The push was rejected because the branch moved.
    PushConflict,
    /// This process lost its lease (its fence is no longer current).
    FenceLost,
    /// The build was stopped.
    Stopped,
    /// The item's agent-minutes budget across attempts is spent (`--item-agent-budget`):
    /// no new attempt is started.
    BudgetSpent,
    /// A bug or an impossible state in this system.
    Internal,
}

impl FailureClass {
    pub const ALL: [FailureClass; 16] = [
        FailureClass::Transient,
        FailureClass::Throttled,
        FailureClass::Contention,
        FailureClass::PermanentInput,
        FailureClass::Auth,
        FailureClass::BuildFailed,
        FailureClass::TimedOut,
        FailureClass::TestsFailed,
        FailureClass::CoverageBelow,
        FailureClass::ReportMissing,
        FailureClass::AgentFailed,
        FailureClass::PushConflict,
        FailureClass::FenceLost,
        FailureClass::Stopped,
        FailureClass::BudgetSpent,
        FailureClass::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Throttled => "throttled",
            FailureClass::Contention => "contention",
            FailureClass::PermanentInput => "permanent-input",
            FailureClass::Auth => "auth",
            FailureClass::BuildFailed => "build-failed",
            FailureClass::TimedOut => "timed-out",
            FailureClass::TestsFailed => "tests-failed",
            FailureClass::CoverageBelow => "coverage-below",
            FailureClass::ReportMissing => "report-missing",
            FailureClass::AgentFailed => "agent-failed",
            FailureClass::PushConflict => "push-conflict",
            FailureClass::FenceLost => "fence-lost",
            FailureClass::Stopped => "stopped",
            FailureClass::BudgetSpent => "budget-spent",
            FailureClass::Internal => "internal",
        }
    }

    /// Whether retrying the same item could succeed. The consumer's policy still decides
    /// how many times; a non-retryable class is dead-lettered on its first occurrence.
    pub fn is_retryable(self) -> bool {
        match self {
            FailureClass::Transient
            | FailureClass::Throttled
            | FailureClass::Contention
            | FailureClass::BuildFailed
            | FailureClass::TimedOut
            | FailureClass::TestsFailed
            | FailureClass::AgentFailed
            | FailureClass::PushConflict
            | FailureClass::FenceLost
            | FailureClass::Stopped => true,
            FailureClass::PermanentInput
            | FailureClass::Auth
            | FailureClass::CoverageBelow
            | FailureClass::ReportMissing
            | FailureClass::BudgetSpent
            | FailureClass::Internal => false,
        }
    }

    /// Whether a failure of this class counts against the item's attempt budget.
    /// Contention and lost fences (handoffs, takeovers) never do.
    pub fn burns_attempt(self) -> bool {
        !matches!(self, FailureClass::Contention | FailureClass::FenceLost)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown failure-class word.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "unknown failure class {0:?}; expected one of transient, throttled, contention, permanent-input, auth, build-failed, timed-out, tests-failed, coverage-below, report-missing, agent-failed, push-conflict, fence-lost, stopped, budget-spent, internal"
)]
pub struct UnknownClass(pub String);

impl FromStr for FailureClass {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, UnknownClass> {
        FailureClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

/// A classified failure with a human-readable reason (never containing a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[error("{class}: {reason}")]
pub struct Failure {
    pub class: FailureClass,
    pub reason: String,
}

impl Failure {
    pub fn new(class: FailureClass, reason: impl Into<String>) -> Self {
        Failure {
            class,
            reason: reason.into(),
        }
    }
}

/// The error every port returns: a class and a message. Adapters build it where the
/// underlying error is understood, so callers never see an SDK or SQLite type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{class}: {message}")]
pub struct PortError {
    pub class: FailureClass,
    pub message: String,
}

impl PortError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        PortError {
            class,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        PortError::new(FailureClass::Transient, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        PortError::new(FailureClass::Internal, message)
    }

    pub fn input(message: impl Into<String>) -> Self {
        PortError::new(FailureClass::PermanentInput, message)
    }
}

impl From<PortError> for Failure {
    fn from(e: PortError) -> Self {
        Failure {
            class: e.class,
            reason: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_words_round_trip() {
        for c in FailureClass::ALL {
            assert_eq!(c.as_str().parse::<FailureClass>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!("nope".parse::<FailureClass>().is_err());
    }

    #[test]
    fn contention_never_burns_attempts_and_bad_input_never_retries() {
        assert!(!FailureClass::Contention.burns_attempt());
        assert!(!FailureClass::FenceLost.burns_attempt());
        assert!(FailureClass::TestsFailed.burns_attempt());
        assert!(!FailureClass::PermanentInput.is_retryable());
        assert!(!FailureClass::CoverageBelow.is_retryable());
        assert!(!FailureClass::ReportMissing.is_retryable());
        assert!(FailureClass::PushConflict.is_retryable());
    }
}
