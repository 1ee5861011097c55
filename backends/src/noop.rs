//! `NoopBuildRunner`: a stand-in [`BuildRunner`] for benchmarks and engine tests.
//!
//! It is NOT a real runner: nothing is executed. Every build "finishes" the moment it
//! is started, in a configurable final state (default SUCCEEDED) with a configurable
//! set of exported variables (default: those of [`WorkerOutcome::success`]).
//! Invariant: like every runner, one build per idempotency key — a second start with
//! the same key returns the first id and does not count as a start.

use async_trait::async_trait;
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, Clock, PortError, SystemClock,
    WorkerOutcome,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct NoopState {
    by_key: BTreeMap<String, BuildId>,
    builds: BTreeMap<BuildId, BuildStatus>,
    starts: usize,
}

/// An in-memory runner whose builds end immediately; see the module documentation.
#[derive(Debug, Clone)]
pub struct NoopBuildRunner {
    state: Arc<Mutex<NoopState>>,
    exported: BTreeMap<String, String>,
    final_state: BuildState,
    clock: Arc<dyn Clock>,
}

impl Default for NoopBuildRunner {
    fn default() -> Self {
        NoopBuildRunner::new()
    }
}

impl NoopBuildRunner {
    /// Builds succeed and export [`WorkerOutcome::success`]'s variables.
    pub fn new() -> Self {
        NoopBuildRunner {
            state: Arc::default(),
            exported: WorkerOutcome::success().to_vars(),
            final_state: BuildState::Succeeded,
            clock: Arc::new(SystemClock),
        }
    }

    /// Export these variables from every build instead.
    pub fn with_exported(mut self, exported: BTreeMap<String, String>) -> Self {
        self.exported = exported;
        self
    }

    /// End every build in `state` instead of SUCCEEDED (an unfinished state is treated
    /// as SUCCEEDED: noop builds always finish).
    pub fn with_final_state(mut self, state: BuildState) -> Self {
        self.final_state = if state.is_finished() {
            state
        } else {
            BuildState::Succeeded
        };
        self
    }

    /// Timestamps from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many builds were started (repeated idempotency keys excluded).
    pub fn starts(&self) -> usize {
        self.lock().map(|s| s.starts).unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, NoopState>, PortError> {
        self.state
            .lock()
            .map_err(|_| PortError::internal("noop build runner lock poisoned"))
    }
}

#[async_trait]
impl BuildRunner for NoopBuildRunner {
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError> {
        let now = self.clock.now();
        let mut s = self.lock()?;
        if let Some(id) = s.by_key.get(&req.idempotency_key) {
            return Ok(id.clone());
        }
        s.starts += 1;
        let id = BuildId::new(format!("noop:{}:{}", req.project, s.starts));
        s.by_key.insert(req.idempotency_key.clone(), id.clone());
        s.builds.insert(
            id.clone(),
            BuildStatus {
                id: id.clone(),
                state: self.final_state,
                phase: Some("COMPLETED".into()),
                started_at: now,
                ended_at: Some(now),
                exported: self.exported.clone(),
                log: None,
                message: (self.final_state != BuildState::Succeeded)
                    .then(|| format!("noop build ended {}", self.final_state)),
            },
        );
        Ok(id)
    }

    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        let s = self.lock()?;
        Ok(ids
            .iter()
            .filter_map(|id| s.builds.get(id).cloned())
            .collect())
    }

    /// Noop builds are always finished already: stopping one changes nothing.
    async fn stop(&self, id: &BuildId) -> Result<(), PortError> {
        let s = self.lock()?;
        if s.builds.contains_key(id) {
            Ok(())
        } else {
            Err(PortError::input(format!("unknown build {id}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::{BranchName, ItemId, OutcomeStatus, ProjectKey};
    use std::time::Duration;

    fn req(key: &str) -> BuildRequest {
        BuildRequest {
            project: ProjectKey::parse("calc").unwrap(),
            item: ItemId::parse("CALC-1").unwrap(),
            idempotency_key: key.into(),
            source_version: BranchName::parse("feature/x").unwrap(),
            env: BTreeMap::new(),
            timeout: Some(Duration::from_secs(60)),
        }
    }

    #[tokio::test]
    async fn builds_finish_at_once_with_a_success_outcome() {
        let r = NoopBuildRunner::new();
        let id = r.start(&req("k1")).await.unwrap();
        let st = r.status(std::slice::from_ref(&id)).await.unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].state, BuildState::Succeeded);
        assert_eq!(
            WorkerOutcome::from_vars(&st[0].exported).status,
            OutcomeStatus::Succeeded
        );
        r.stop(&id).await.unwrap();
        assert!(r.stop(&BuildId::new("nope")).await.is_err());
    }

    #[tokio::test]
    async fn idempotent_on_the_key_and_counts_starts() {
        let r = NoopBuildRunner::new();
        let a = r.start(&req("k1")).await.unwrap();
        let b = r.start(&req("k1")).await.unwrap();
        let c = r.start(&req("k2")).await.unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(r.starts(), 2);
        let st = r
            .status(&[a.clone(), BuildId::new("unknown"), c.clone()])
            .await
            .unwrap();
        let ids: Vec<_> = st.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids, vec![a, c]);
    }

    #[tokio::test]
    async fn configurable_state_and_variables() {
        let mut vars = BTreeMap::new();
        vars.insert("X".to_owned(), "1".to_owned());
        let r = NoopBuildRunner::new()
            .with_exported(vars.clone())
            .with_final_state(BuildState::Failed);
        let id = r.start(&req("k")).await.unwrap();
        let st = r.status(&[id]).await.unwrap();
        assert_eq!(st[0].state, BuildState::Failed);
        assert_eq!(st[0].exported, vars);
        assert!(st[0].message.is_some());
        let r = NoopBuildRunner::new().with_final_state(BuildState::InProgress);
        let id = r.start(&req("k")).await.unwrap();
        assert_eq!(
            r.status(&[id]).await.unwrap()[0].state,
            BuildState::Succeeded
        );
    }
}
