//! Shared by the benchmarks: enqueue one synthetic work item the way the producer does.

use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::{BoardItem, Clock, Envelope, OutgoingMessage, TraceContext, WorkQueue};

/// Send item `I-<n>` of `project` (a valid item of `acme/bench`).
pub async fn enqueue(queue: &dyn WorkQueue, clock: &dyn Clock, n: usize, project: String) {
    let item = BoardItem {
        id: format!("I-{n}"),
        project,
        title: String::new(),
        repo: "acme/bench".into(),
        branch: "feature/bench".into(),
        spec: "bench".into(),
        pr: "1".into(),
        updated_at: "1".into(),
        conflict: None,
        assignees: Vec::new(),
    }
    .validate()
    .expect("valid item");
    let trace = TraceContext::default();
    queue
        .send(OutgoingMessage {
            body: Envelope::new(item.clone(), trace.clone(), clock.now()).encode(),
            group: item.project.clone(),
            dedup: item.dedup_id(),
            attributes: standard_attributes(&trace),
            trace,
        })
        .await
        .expect("send");
}
