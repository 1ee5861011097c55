//! Shutdown: hand every job off instead of waiting for its build.
//!
//! Invariant: a handed-off build keeps running; its job record says `handoff` (under the
//! current fence) before its message is made visible and its lease released, so the next
//! consumer re-attaches to it at once.

use super::{ActiveJob, Engine, Ports};
use futures::future::join_all;
use kiro_protocol::JobState;
use kiro_telemetry::otel::keys;
use opentelemetry::KeyValue;
use std::time::Duration;
use tracing::{Instrument, info, instrument, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

impl Engine {
    /// Hand every job off: record `handoff`, make the message visible now, release the
    /// lease; then end the session. Builds keep running; the next consumer re-attaches at
    /// once.
    #[instrument(skip_all, fields(jobs = self.jobs.len()))]
    pub async fn drain(&mut self) {
        self.draining = true;
        let jobs: Vec<ActiveJob> = self.jobs.drain().map(|(_, j)| j).collect();
        let ports = &self.ports;
        join_all(jobs.into_iter().map(|job| {
            let span = job.held.span.clone();
            hand_off(ports, job).instrument(span)
        }))
        .await;
        self.end_session().await;
        self.release_protection().await;
    }
}

/// Hand one job off (inside its `process` span): record `handoff`, make its message
/// visible now, release its lease.
async fn hand_off(ports: &Ports, job: ActiveJob) {
    let ActiveJob {
        held: mut job,
        build_id,
        ..
    } = job;
    job.span.add_event(
        "handoff",
        vec![KeyValue::new(keys::BUILD_ID, build_id.to_string())],
    );
    job.record.state = JobState::Handoff;
    job.record.owner = None;
    job.record.updated_at = ports.clock.now();
    match ports.leases.record(&job.lease, &job.record).await {
        Ok(()) => {
            if let Err(e) = ports
                .queue
                .release(&job.delivery.receipt, Duration::ZERO)
                .await
            {
                warn!(error = %e, "cannot make the message visible; it returns after its visibility timeout");
            }
            if let Err(e) = ports.leases.release(&job.lease).await {
                warn!(error = %e, "cannot release the lease; it expires by itself");
            }
            info!(project = %job.item.project, build = %build_id, "handed off");
        }
        Err(e) => {
            warn!(project = %job.item.project, error = %e, "handoff not recorded; the lease expires by itself")
        }
    }
}
