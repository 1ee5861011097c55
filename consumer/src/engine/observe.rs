//! What the engine tells the outside about its work: metrics and the spans of an item's
//! processing (`process` with its `settle` children) and their attributes.
//!
//! Invariant: observation never changes what the engine does; a missing metrics sink or
//! tracing subscriber only makes these calls cheap no-ops.

use super::{Engine, HeldJob};
use kiro_protocol::{BuildId, Delivery, Failure, FailureClass, Lease};
use kiro_telemetry::metrics::{FAILURE_CLASS_DIMENSION, Metric, Unit, names};
use kiro_telemetry::otel::{self, keys};
use tracing::{Span, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

impl Engine {
    /// Report one data point, stamped with the engine's clock.
    pub(super) fn metric(&self, m: Metric) {
        if let Some(sink) = &self.cfg.metrics {
            sink.record(m.at(self.ports.clock.now().millis()));
        }
    }

    /// The metrics of a finished build: the alarm inputs (dimensionless), success or
    /// failure by class, duration since the attempt started, and coverage.
    pub(super) fn finished_metrics(
        &self,
        job: &HeldJob,
        failure: Option<&Failure>,
        coverage: Option<f64>,
    ) {
        if self.cfg.metrics.is_none() {
            return;
        }
        self.metric(Metric::count(names::BUILDS_FINISHED, 1));
        if let Some(started) = job.record.history.last().map(|a| a.started_at) {
            let ms = self.ports.clock.now().since(started).as_millis();
            self.metric(Metric::millis(
                names::BUILD_DURATION,
                u64::try_from(ms).unwrap_or(u64::MAX),
            ));
        }
        match failure {
            None => self.metric(Metric::count(names::BUILDS_SUCCEEDED, 1)),
            Some(f) => {
                self.metric(Metric::count(names::BUILDS_FAILED, 1));
                self.metric(
                    Metric::count(names::BUILDS_FAILED_BY_CLASS, 1)
                        .with_dimension(FAILURE_CLASS_DIMENSION, f.class.as_str()),
                );
                if f.class == FailureClass::TestsFailed {
                    self.metric(Metric::count(names::TESTS_FAILED, 1));
                }
            }
        }
        if let Some(c) = coverage {
            self.metric(Metric::new(names::COVERAGE, c, Unit::Percent));
        }
    }

    /// The `process` span of a delivery: a child of the producer's `send` span (whose
    /// context the message carries) and linked to it, as the messaging conventions ask.
    pub(super) fn process_span(&self, d: &Delivery, trace: &kiro_protocol::TraceContext) -> Span {
        let span = info_span!(
            parent: None,
            "process",
            otel.name = %format!("process {}", self.dest.name),
            otel.kind = "consumer",
            trace_id = tracing::field::Empty,
            kiro.project = %d.group,
            kiro.item = tracing::field::Empty,
        );
        otel::continue_trace(&span, trace);
        otel::set_messaging(&span, &self.dest, "process", "process");
        span.set_attribute(keys::MESSAGING_MESSAGE_ID, d.message_id.to_string());
        span.set_attribute(keys::MESSAGING_GROUP, d.group.to_string());
        span.set_attribute(
            "messaging.aws.sqs.receive_count",
            i64::from(d.receive_count),
        );
        span
    }

    /// A `settle` span under `process`: how the message was settled (`ack`, `retry`,
    /// `dead_letter`).
    pub(super) fn settle_span(&self, process: &Span, how: &'static str) -> Span {
        let span = process.in_scope(|| {
            info_span!(
                "settle",
                otel.name = %format!("settle {}", self.dest.name),
                kiro.settle = how,
            )
        });
        otel::set_messaging(&span, &self.dest, "settle", how);
        span
    }
}

/// A fence as a span attribute value.
pub(super) fn fence_value(lease: &Lease) -> i64 {
    i64::try_from(lease.fence.0).unwrap_or(i64::MAX)
}

/// Put the build id and the fence on the current (`process`) span.
pub(super) fn record_build(id: &BuildId, lease: &Lease) {
    let span = Span::current();
    span.set_attribute(keys::BUILD_ID, id.to_string());
    span.set_attribute(keys::FENCE, fence_value(lease));
}
