//! The metrics vocabulary: one data point ([`Metric`]: name, value, [`Unit`], dimensions),
//! the [`Metrics`] port every sink implements, and the names and namespace the deployed
//! CloudWatch alarms read (`infra-pulumi/src/stack.ts`: `METRICS_NAMESPACE`,
//! `EMF_METRICS`).
//!
//! The sinks are in [`crate::metrics`] (EMF, fan-out, off, in memory) and
//! [`crate::otlp_metrics`] (OTLP). Invariant: this module depends on no sink; a sink's
//! `record` never fails and never blocks on the network.

use std::fmt;

/// The CloudWatch namespace of every metric (`METRICS_NAMESPACE` in the stack).
pub const NAMESPACE: &str = "KiroCodebuildWorker";

/// Metric names. The first four are read by the deployed alarms and stay dimensionless.
pub mod names {
    /// Builds that finished, whatever their outcome (alarm input).
    pub const BUILDS_FINISHED: &str = "BuildsFinished";
    /// Builds that finished with a failure outcome (alarm input).
    pub const BUILDS_FAILED: &str = "BuildsFailed";
    /// Builds whose outcome class was `tests-failed` (alarm input).
    pub const TESTS_FAILED: &str = "TestsFailed";
    /// Duration of each finished build, milliseconds (alarm input).
    pub const BUILD_DURATION: &str = "BuildDuration";
    /// Builds started (a new attempt, not a re-attach).
    pub const BUILDS_STARTED: &str = "BuildsStarted";
    /// Builds that finished successfully.
    pub const BUILDS_SUCCEEDED: &str = "BuildsSucceeded";
    /// Failed builds, with a `FailureClass` dimension.
    pub const BUILDS_FAILED_BY_CLASS: &str = "BuildsFailedByClass";
    /// Message visible → build started, milliseconds (first deliveries only).
    pub const DISPATCH_LATENCY: &str = "DispatchLatency";
    /// Messages returned because another consumer held the project's lease.
    pub const LEASE_CONTENTION: &str = "LeaseContention";
    /// Messages moved to the dead-letter queue.
    pub const DEAD_LETTERS: &str = "DeadLetters";
    /// Line coverage reported by a finished build, percent.
    pub const COVERAGE: &str = "Coverage";
    /// Minutes the agent ran in a finished build (a count of minutes, fractional), with
    /// a [`PROJECT_DIMENSION`](super::PROJECT_DIMENSION): the sum is a project's agent time.
    pub const AGENT_MINUTES: &str = "AgentMinutes";
    /// Items cancelled: moved off the board's active statuses, or `kiro-consumer cancel`.
    pub const ITEMS_CANCELLED: &str = "ItemsCancelled";
}

/// The dimension carrying a project key (on [`names::AGENT_MINUTES`]).
pub const PROJECT_DIMENSION: &str = "Project";

/// The dimension carrying a failure class (on [`names::BUILDS_FAILED_BY_CLASS`]).
pub const FAILURE_CLASS_DIMENSION: &str = "FailureClass";

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Percent,
}

impl Unit {
    /// The unit's name in CloudWatch.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Percent => "Percent",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: Unit,
    /// Dimension name → value (none for the alarm metrics).
    pub dimensions: Vec<(String, String)>,
    /// When it happened, milliseconds since the epoch; `None` means "now" at write time.
    pub at_ms: Option<i64>,
}

impl Metric {
    /// A data point without dimensions.
    pub fn new(name: impl Into<String>, value: f64, unit: Unit) -> Self {
        Metric {
            name: name.into(),
            value,
            unit,
            dimensions: Vec::new(),
            at_ms: None,
        }
    }

    /// A count of `n`.
    pub fn count(name: impl Into<String>, n: u64) -> Self {
        // Counts stay far below 2^53: the conversion is exact.
        Metric::new(name, n as f64, Unit::Count)
    }

    /// A duration in milliseconds.
    pub fn millis(name: impl Into<String>, ms: u64) -> Self {
        Metric::new(name, ms as f64, Unit::Milliseconds)
    }

    /// Add a dimension.
    pub fn with_dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// Set the time of the data point (milliseconds since the epoch).
    pub fn at(mut self, ms: i64) -> Self {
        self.at_ms = Some(ms);
        self
    }
}

/// Where metrics go. Object-safe; implementations never fail.
pub trait Metrics: Send + Sync + fmt::Debug {
    /// Record one data point (never blocks on the network).
    fn record(&self, m: Metric);

    /// Send whatever is buffered (at shutdown); may block the calling thread for a while.
    /// Sinks that write as they record have nothing to do.
    fn flush(&self) {}
}
