//! The build log in CloudWatch Logs, as CodeBuild writes it with the service role: a
//! stream named after the build's uuid in the project's log group, opened when the build
//! starts (`CreateLogStream`) and filled with the build log's lines when it ends
//! (`PutLogEvents`, in batches within the API's limits). Both calls go through the
//! emulator to moto, so they are recorded under the service role.
//!
//! Invariant: logging never changes a build's outcome (CodeBuild's builds do not fail for
//! a log they cannot write); a refused call is visible in the recorded calls only.

use super::run::RunInput;
use crate::aws::Shared;
use serde_json::{Value, json};

/// Most events per `PutLogEvents` (the API allows 10,000).
const BATCH_EVENTS: usize = 1_000;
/// Most bytes per batch (the API allows 1,048,576 including 26 bytes per event).
const BATCH_BYTES: usize = 800_000;
/// Longest message kept per event (the API allows 256 KiB).
const EVENT_BYTES: usize = 200_000;

/// The stream's name: the build id's uuid, as CodeBuild names it.
pub fn stream_name(build_id: &str) -> &str {
    build_id.rsplit(':').next().unwrap_or(build_id)
}

/// Open the build's stream; `None` when the project names no log group or the call failed.
pub(crate) async fn open(shared: &Shared, input: &RunInput) -> Option<String> {
    let group = input.log_group.as_deref()?;
    let stream = stream_name(&input.id).to_owned();
    let body = json!({ "logGroupName": group, "logStreamName": stream });
    let (status, _) = shared
        .call_as(
            &input.service_role,
            "logs",
            "Logs_20140328.CreateLogStream",
            &body,
        )
        .await
        .ok()?;
    (status == 200).then_some(stream)
}

/// Upload the build log's lines to `stream`.
pub(crate) async fn upload(shared: &Shared, input: &RunInput, stream: &str) {
    let Some(group) = input.log_group.as_deref() else {
        return;
    };
    let log = input.dir.join(kiro_local_build::exec::LOG_FILE);
    let text = std::fs::read(&log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut batch: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let lines = text.lines().filter(|l| !l.is_empty());
    for line in lines {
        let mut end = line.len().min(EVENT_BYTES);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let message = &line[..end];
        if batch.len() == BATCH_EVENTS || bytes + message.len() + 26 > BATCH_BYTES {
            put(shared, input, group, stream, std::mem::take(&mut batch)).await;
            bytes = 0;
        }
        bytes += message.len() + 26;
        batch.push(json!({ "timestamp": now, "message": message }));
    }
    if !batch.is_empty() {
        put(shared, input, group, stream, batch).await;
    }
}

async fn put(shared: &Shared, input: &RunInput, group: &str, stream: &str, events: Vec<Value>) {
    let body = json!({ "logGroupName": group, "logStreamName": stream, "logEvents": events });
    let _ = shared
        .call_as(
            &input.service_role,
            "logs",
            "Logs_20140328.PutLogEvents",
            &body,
        )
        .await;
}
