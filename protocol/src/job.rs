//! The durable job record.
//!
//! One record per work item, written only by the holder of the project's lease and only
//! while its fence is current (the lease store enforces that). The record is what makes
//! the system crash-safe: the consumer records its intent — the exact build request,
//! idempotency key included — before starting a build and the build id right after, so
//! whoever inherits the project re-attaches to that build (or replays exactly that
//! request, which the runner answers with the same build) instead of starting a second
//! one, and attempts are counted here rather than by the queue's receive count
//! (contention and handoffs never burn the budget).
//!
//! The attempt rule lives in [`JobRecord`]'s methods, nowhere else: an attempt counts when
//! its intent is recorded ([`JobRecord::count_attempt`]) and is given back when its build
//! never started ([`JobRecord::attempt_not_started`]) or failed for a reason that does not
//! burn an attempt ([`JobRecord::end_attempt`], see
//! [`FailureClass::burns_attempt`](crate::FailureClass::burns_attempt)); a new
//! message for the item starts a fresh budget ([`JobRecord::reset_attempts`]).

use crate::clock::Timestamp;
use crate::failure::Failure;
use crate::ids::{BuildId, Fence, ItemId, MessageId, ProjectKey};
use crate::ports::build::BuildRequest;
use crate::trace::TraceContext;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Taken under a lease; no build yet.
    Pending,
    /// The consumer decided to start a build (intent recorded, build id not yet known).
    Starting,
    /// A build is running; `build_id` is set.
    Running,
    /// The owner is shutting down; the build keeps running and the next owner re-attaches.
    Handoff,
    /// An attempt failed and the item waits for its retry.
    Retrying,
    /// Final: the build succeeded and the message was acknowledged.
    Succeeded,
    /// Final: the item was dead-lettered with a reason.
    DeadLettered,
    /// Final: the item was cancelled (moved out of the board's active statuses, or
    /// `kiro-consumer cancel`): its build stopped, its message acknowledged — never
    /// retried, never dead-lettered.
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Handoff => "handoff",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::DeadLettered => "dead-lettered",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::DeadLettered | JobState::Cancelled
        )
    }

    /// States in which a build may be running that a new owner must re-attach to.
    pub fn may_have_build(self) -> bool {
        matches!(
            self,
            JobState::Starting | JobState::Running | JobState::Handoff
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One build attempt of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub fence: Fence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<BuildId>,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// `None` while running or when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// The durable record of one work item's processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub project: ProjectKey,
    pub item: ItemId,
    pub message_id: MessageId,
    /// The fence of the lease under which this record was last written.
    pub fence: Fence,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<BuildId>,
    /// Build attempts started so far (contention and handoffs do not count).
    pub attempts: u32,
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub trace: TraceContext,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Line coverage reported by the last finished build, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// The exact request of the latest build start, recorded with the intent: a consumer
    /// that finds the intent without a build id replays it unchanged (same key, same
    /// fence and trace context in the environment), so the runner answers with the
    /// build it may already have started instead of a parameter mismatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<BuildRequest>,
    /// Agent time the item's builds reported (`WorkerOutcome::agent_seconds`), summed over
    /// the attempts of its current message: the per-item budget is checked against it
    /// before each new attempt. A new message starts it over with the attempts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub agent_seconds: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl JobRecord {
    /// A fresh record for an item taken under `fence`.
    pub fn new(
        project: ProjectKey,
        item: ItemId,
        message_id: MessageId,
        fence: Fence,
        trace: TraceContext,
        now: Timestamp,
    ) -> Self {
        JobRecord {
            project,
            item,
            message_id,
            fence,
            state: JobState::Pending,
            build_id: None,
            attempts: 0,
            history: Vec::new(),
            owner: None,
            trace,
            updated_at: now,
            last_failure: None,
            coverage: None,
            start: None,
            agent_seconds: 0,
        }
    }

    /// Count a new attempt started under `fence` at `now`, and open its entry in
    /// `history` (which also gives its build start a new idempotency key).
    pub fn count_attempt(&mut self, fence: Fence, now: Timestamp) {
        self.attempts += 1;
        self.history.push(AttemptRecord {
            attempt: self.attempts,
            fence,
            build_id: None,
            started_at: now,
            ended_at: None,
            failure: None,
        });
    }

    /// The latest attempt's build ended at `now`: successfully (`failure` is `None`) or
    /// with `failure`. A failure whose class does not burn an attempt (contention, a lost
    /// fence) gives the attempt back.
    pub fn end_attempt(&mut self, failure: Option<&Failure>, now: Timestamp) {
        self.close_attempt(failure.cloned(), now);
        if failure.is_some_and(|f| !f.class.burns_attempt()) {
            self.give_back_attempt();
        }
    }

    /// The latest attempt never started a build (the runner refused its request): it ends
    /// at `now` with `failure` and does not count, whatever the failure's class.
    pub fn attempt_not_started(&mut self, failure: &Failure, now: Timestamp) {
        self.close_attempt(Some(failure.clone()), now);
        self.give_back_attempt();
    }

    /// The latest attempt's build is `id` (just started, or found by a new holder): the
    /// job runs it.
    pub fn attach_build(&mut self, id: BuildId) {
        self.state = JobState::Running;
        if let Some(last) = self.history.last_mut() {
            last.build_id.get_or_insert(id.clone());
        }
        self.build_id = Some(id);
    }

    /// A new message for the item (a replay, or the board re-queued it): a fresh budget.
    /// The history is kept.
    pub fn reset_attempts(&mut self) {
        self.attempts = 0;
        self.agent_seconds = 0;
    }

    /// Whether `budget` (agent seconds across attempts) is spent: no new attempt may start.
    pub fn budget_spent(&self, budget: Option<u64>) -> bool {
        budget.is_some_and(|b| self.agent_seconds >= b)
    }

    fn close_attempt(&mut self, failure: Option<Failure>, now: Timestamp) {
        if let Some(last) = self.history.last_mut() {
            last.ended_at = Some(now);
            last.failure = failure;
        }
    }

    fn give_back_attempt(&mut self) {
        self.attempts = self.attempts.saturating_sub(1);
    }

    /// The idempotency key of the latest build start (one per entry of `history`, so it
    /// never repeats for an item, even when an attempt did not count): a runner given the
    /// same key twice returns the first build instead of starting a second one.
    pub fn idempotency_key(&self) -> String {
        format!("{}-{}-{}", self.project, self.item, self.history.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureClass;

    #[test]
    fn states_serialize_as_words() {
        assert_eq!(
            serde_json::to_string(&JobState::DeadLettered).unwrap(),
            "\"dead-lettered\""
        );
        assert!(JobState::Handoff.may_have_build());
        assert!(!JobState::Retrying.may_have_build());
        assert!(JobState::Succeeded.is_final());
        assert!(JobState::Cancelled.is_final());
        assert!(!JobState::Cancelled.may_have_build());
        assert_eq!(
            serde_json::to_string(&JobState::Cancelled).unwrap(),
            "\"cancelled\""
        );
    }

    #[test]
    fn agent_time_is_summed_per_message_and_checked_against_the_budget() {
        let mut r = record();
        assert!(!r.budget_spent(Some(60)));
        r.agent_seconds = 60;
        assert!(r.budget_spent(Some(60)));
        assert!(!r.budget_spent(Some(61)));
        assert!(!r.budget_spent(None), "no budget is never spent");
        r.reset_attempts();
        assert_eq!(r.agent_seconds, 0, "a new message starts the budget over");
    }

    fn record() -> JobRecord {
        JobRecord::new(
            ProjectKey::parse("p").unwrap(),
            ItemId::parse("i").unwrap(),
            MessageId::new("m"),
            Fence(1),
            TraceContext::default(),
            Timestamp(0),
        )
    }

    #[test]
    fn idempotency_key_changes_per_start() {
        let mut r = record();
        let k1 = r.idempotency_key();
        r.history.push(AttemptRecord {
            attempt: 1,
            fence: Fence(1),
            build_id: None,
            started_at: Timestamp(0),
            ended_at: None,
            failure: None,
        });
        assert_ne!(k1, r.idempotency_key());
    }

    #[test]
    fn a_counted_attempt_opens_its_history_entry() {
        let mut r = record();
        r.count_attempt(Fence(3), Timestamp(10));
        r.count_attempt(Fence(4), Timestamp(20));
        assert_eq!(r.attempts, 2);
        let last = r.history.last().unwrap();
        assert_eq!((last.attempt, last.fence), (2, Fence(4)));
        assert_eq!(last.started_at, Timestamp(20));
        assert_eq!((last.ended_at, &last.failure), (None, &None));
    }

    #[test]
    fn a_build_that_ran_keeps_its_attempt_unless_the_class_never_burns_one() {
        let mut r = record();
        r.count_attempt(Fence(1), Timestamp(0));
        r.end_attempt(None, Timestamp(5));
        assert_eq!(r.attempts, 1, "a success keeps its attempt");
        assert_eq!(r.history[0].ended_at, Some(Timestamp(5)));

        r.count_attempt(Fence(1), Timestamp(6));
        let failed = Failure::new(FailureClass::TestsFailed, "red");
        r.end_attempt(Some(&failed), Timestamp(7));
        assert_eq!(r.attempts, 2, "a failed build burns its attempt");
        assert_eq!(r.history[1].failure, Some(failed));

        for class in [FailureClass::Contention, FailureClass::FenceLost] {
            r.count_attempt(Fence(2), Timestamp(8));
            r.end_attempt(Some(&Failure::new(class, "x")), Timestamp(9));
            assert_eq!(r.attempts, 2, "{class} gives the attempt back");
            assert_eq!(
                r.history.last().unwrap().failure.as_ref().unwrap().class,
                class
            );
        }
        assert_eq!(r.history.len(), 4, "every attempt stays in the history");
    }

    #[test]
    fn an_attempt_that_never_started_does_not_count_whatever_its_class() {
        let mut r = record();
        r.count_attempt(Fence(1), Timestamp(0));
        let refused = Failure::new(FailureClass::PermanentInput, "no such project");
        r.attempt_not_started(&refused, Timestamp(1));
        assert_eq!(r.attempts, 0);
        let last = r.history.last().unwrap();
        assert_eq!(
            (last.ended_at, last.failure.as_ref()),
            (Some(Timestamp(1)), Some(&refused))
        );
        // Never below zero, even for a record found without a counted attempt.
        r.attempt_not_started(&refused, Timestamp(2));
        assert_eq!(r.attempts, 0);
    }

    #[test]
    fn an_attached_build_runs_and_names_its_attempt_once() {
        let mut r = record();
        r.count_attempt(Fence(1), Timestamp(0));
        r.attach_build(BuildId::new("b1"));
        assert_eq!(
            (r.state, r.build_id.clone()),
            (JobState::Running, Some(BuildId::new("b1")))
        );
        assert_eq!(r.history[0].build_id, Some(BuildId::new("b1")));
        // A re-attach names the build the attempt already has.
        r.attach_build(BuildId::new("b1"));
        assert_eq!(r.history.len(), 1);
        assert_eq!(r.history[0].build_id, Some(BuildId::new("b1")));
    }

    #[test]
    fn a_new_message_starts_a_fresh_budget_and_keeps_the_history() {
        let mut r = record();
        r.count_attempt(Fence(1), Timestamp(0));
        r.count_attempt(Fence(1), Timestamp(1));
        r.reset_attempts();
        assert_eq!(r.attempts, 0);
        assert_eq!(r.history.len(), 2);
    }
}
