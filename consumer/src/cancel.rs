//! `kiro-consumer cancel ITEM [--project P]`: cancel one item, queued or running.
//!
//! The item's job record is written `cancelled` through
//! [`LeaseStore::cancel`](kiro_protocol::LeaseStore::cancel), which bumps the project's
//! fence (and releases its lease) in the same atomic write whenever the lease may be
//! working on this item: from that write on, the build's fence is stale and the worker,
//! which checks `build_may_act` before every side effect (push, report, board), can
//! never act again — whether or not the build is stopped. Then the build is stopped when
//! a runner is at hand. The consumer holding the item finds its fence lost and the
//! record cancelled, and acknowledges the message; a message still queued is
//! acknowledged when it is taken (the record is newer than the message).
//!
//! Invariant: nothing is written before the item is identified unambiguously; an item
//! already final is left as it is (a `cancelled` one is written again, harmlessly).

use kiro_protocol::ids::quote_for_display;
use kiro_protocol::{
    BuildId, BuildRunner, Cancellation, Clock, Failure, FailureClass, ItemId, JobRecord, JobState,
    LeaseError, LeaseStore, MessageId, PortError, ProjectKey, TraceContext,
};
use thiserror::Error;

/// Why an item could not be cancelled.
#[derive(Debug, Error)]
pub enum CancelError {
    #[error("invalid item id: {0}")]
    Item(String),
    #[error(
        "item {0} has no job record: no consumer has taken it yet; give its project with --project"
    )]
    NeedProject(String),
    #[error(
        "item {item} has job records in several projects ({projects}); choose one with --project"
    )]
    Ambiguous { item: String, projects: String },
    #[error("item {item} already ended {state}; nothing to cancel")]
    AlreadyFinal { item: String, state: JobState },
    #[error("cannot cancel item {item}: {source}")]
    Store {
        item: String,
        #[source]
        source: LeaseError,
    },
    #[error("cannot read the job records: {0}")]
    Read(#[from] PortError),
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub project: ProjectKey,
    pub item: ItemId,
    /// The state the job was in.
    pub was: Option<JobState>,
    pub written: Cancellation,
    /// The build that was running, and whether stopping it was confirmed.
    pub build: Option<(BuildId, Result<(), String>)>,
}

/// Cancel `item` (of `project`, when given).
pub async fn cancel_item(
    leases: &dyn LeaseStore,
    builds: Option<&dyn BuildRunner>,
    clock: &dyn Clock,
    item: &str,
    project: Option<&ProjectKey>,
) -> Result<Cancelled, CancelError> {
    let shown = quote_for_display(item);
    let item = ItemId::parse(item).map_err(|e| CancelError::Item(e.to_string()))?;
    let existing = match project {
        Some(p) => leases.job(p, &item).await?,
        None => {
            let mut found: Vec<JobRecord> = leases
                .jobs()
                .await?
                .into_iter()
                .filter(|j| j.item == item)
                .collect();
            match found.len() {
                0 => return Err(CancelError::NeedProject(shown)),
                1 => found.pop(),
                _ => {
                    return Err(CancelError::Ambiguous {
                        item: shown,
                        projects: found
                            .iter()
                            .map(|j| j.project.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
    };
    let now = clock.now();
    let was = existing.as_ref().map(|r| r.state);
    if let Some(state) = was
        && state.is_final()
        && state != JobState::Cancelled
    {
        return Err(CancelError::AlreadyFinal { item: shown, state });
    }
    let mut record = match existing {
        Some(r) => r,
        None => {
            let Some(p) = project else {
                return Err(CancelError::NeedProject(shown));
            };
            // Queued, never taken: the consumer that takes its message finds this record,
            // newer than the message, and acknowledges it.
            JobRecord::new(
                p.clone(),
                item.clone(),
                MessageId::new(""),
                kiro_protocol::Fence(0),
                TraceContext::default(),
                now,
            )
        }
    };
    let build = record
        .build_id
        .clone()
        .filter(|_| record.state.may_have_build());
    let failure = Failure::new(
        FailureClass::Stopped,
        "cancelled by an operator (kiro-consumer cancel)",
    );
    if build.is_some() {
        record.end_attempt(Some(&failure), now);
    }
    record.state = JobState::Cancelled;
    record.last_failure = Some(failure);
    record.owner = Some("kiro-consumer cancel".into());
    record.updated_at = now;
    let written = leases
        .cancel(&record)
        .await
        .map_err(|source| CancelError::Store {
            item: shown.clone(),
            source,
        })?;
    let build = match (build, builds) {
        (Some(id), Some(runner)) => {
            let stopped = runner.stop(&id).await.map_err(|e| e.to_string());
            Some((id, stopped))
        }
        (Some(id), None) => Some((id, Err("no build runner configured here".into()))),
        (None, _) => None,
    };
    Ok(Cancelled {
        project: record.project,
        item,
        was,
        written,
        build,
    })
}

/// The lines `kiro-consumer cancel` prints.
pub fn describe(c: &Cancelled) -> String {
    let mut out = format!(
        "cancelled {} in {} (was {}); job record written under fence {}",
        c.item,
        c.project,
        c.was
            .map_or("queued, not taken yet".to_owned(), |s| s.to_string()),
        c.written.fence
    );
    if c.written.bumped {
        out.push_str(" (fence bumped: an earlier holder and its build can no longer act)");
    }
    out.push('\n');
    match &c.build {
        Some((id, Ok(()))) => out.push_str(&format!("build {id}: stop requested\n")),
        Some((id, Err(e))) => out.push_str(&format!(
            "build {id}: not stopped ({e}); its fence is stale, so it cannot push or report, and it fails at its next fence check\n"
        )),
        None => {}
    }
    out
}
