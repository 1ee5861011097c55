//! [`InMemoryBuilds`]: the one in-memory [`BuildRunner`] of the tests and benchmarks.
//!
//! TEST STAND-IN, not a real runner: nothing is executed unless a test hands it a task.
//! How a build ends is chosen when the runner is made:
//! - [`InMemoryBuilds::new`]: every build ends the moment it starts, SUCCEEDED with the
//!   variables of [`WorkerOutcome::success`] (or the state and variables set with
//!   [`with_final_state`](InMemoryBuilds::with_final_state) and
//!   [`with_exported`](InMemoryBuilds::with_exported)) — the benchmarks' runner;
//! - [`InMemoryBuilds::scripted`]: builds stay IN_PROGRESS until the test ends them
//!   ([`finish`](InMemoryBuilds::finish), [`succeed`](InMemoryBuilds::succeed),
//!   [`fail`](InMemoryBuilds::fail)) or the runner is asked to stop them;
//! - [`InMemoryBuilds::running`]: each build runs a task the test makes from the request
//!   (e.g. the real worker pipeline, in process) and ends as the task says;
//! - [`InMemoryBuilds::with_script`]: any of these, chosen per request.
//!
//! It records every call a test may want to check: the requests `start` was called with
//! ([`start_calls`](InMemoryBuilds::start_calls)), the ids `stop` was called with
//! ([`stopped`](InMemoryBuilds::stopped)), and every build with its request
//! ([`builds`](InMemoryBuilds::builds)). Its idempotency keys behave as CodeBuild's
//! tokens: the same key with other parameters is refused (`contention`, "parameter
//! mismatch"), and with [`expire_keys_after`](InMemoryBuilds::expire_keys_after) a key is
//! forgotten that long after its build started; [`find`](BuildRunner::find) names the
//! first build of a key unless [`hide_from_find`](InMemoryBuilds::hide_from_find) is on.
//!
//! Invariant: like every runner (it passes the build contract suite), one build per live
//! idempotency key, and a build's first final state is its last — a stop or a late task
//! never changes a finished build.

use async_trait::async_trait;
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, Clock, Failure, FailureClass,
    PortError, SystemClock, Timestamp, WorkerOutcome,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The coverage of the outcome [`InMemoryBuilds::succeed`] reports, in percent.
pub const SCRIPTED_COVERAGE: f64 = 91.0;

/// A build's work for [`InMemoryBuilds::running`]: a future run on a task of the test's
/// runtime, which says how the build ended.
pub type BuildTask = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// How a build ended: its final state, exported variables and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub state: BuildState,
    pub exported: BTreeMap<String, String>,
    pub message: Option<String>,
}

/// How one build of an [`InMemoryBuilds`] ends.
pub enum Ending {
    /// The moment it starts, as given.
    AtOnce(Finished),
    /// When the test says so (or it is stopped); IN_PROGRESS until then.
    WhenFinished,
    /// When the task ends (a stop aborts it; a task that ends without saying, by
    /// panicking, ends the build FAULT).
    Task(BuildTask),
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::AtOnce(done) => f.debug_tuple("AtOnce").field(done).finish(),
            Ending::WhenFinished => f.write_str("WhenFinished"),
            Ending::Task(_) => f.write_str("Task(..)"),
        }
    }
}

/// Decides, per request, how a build ends.
type Script = Arc<dyn Fn(&BuildRequest, &BuildId) -> Ending + Send + Sync>;

enum Mode {
    AtOnce(Finished),
    WhenFinished,
    Script(Script),
}

/// One build as the runner keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct InMemoryBuild {
    pub id: BuildId,
    /// The request that started it (its item, key and environment).
    pub req: BuildRequest,
    pub state: BuildState,
    pub phase: Option<String>,
    pub exported: BTreeMap<String, String>,
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}

impl InMemoryBuild {
    fn end(&mut self, done: Finished, now: Timestamp) {
        if self.state.is_finished() {
            return;
        }
        self.state = if done.state.is_finished() {
            done.state
        } else {
            BuildState::Succeeded
        };
        self.exported = done.exported;
        self.message = done.message;
        self.phase = Some("COMPLETED".into());
        self.ended_at = Some(now);
    }

    fn status(&self) -> BuildStatus {
        BuildStatus {
            id: self.id.clone(),
            state: self.state,
            phase: self.phase.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            exported: self.exported.clone(),
            log: None,
            message: self.message.clone(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    build: InMemoryBuild,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct State {
    builds: Vec<Entry>,
    by_id: HashMap<BuildId, usize>,
    /// The latest build of each key.
    by_key: HashMap<String, usize>,
    start_calls: Vec<BuildRequest>,
    stopped: Vec<BuildId>,
}

/// The in-memory build runner; see the module documentation.
#[derive(Clone)]
pub struct InMemoryBuilds {
    state: Arc<Mutex<State>>,
    mode: Arc<Mode>,
    clock: Arc<dyn Clock>,
    key_lifetime: Arc<Mutex<Option<Duration>>>,
    hidden_from_find: Arc<AtomicBool>,
    fail_start: Arc<Mutex<Option<PortError>>>,
}

impl std::fmt::Debug for InMemoryBuilds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBuilds")
            .field("builds", &self.builds().len())
            .finish_non_exhaustive()
    }
}

impl Default for InMemoryBuilds {
    fn default() -> Self {
        InMemoryBuilds::new()
    }
}

impl InMemoryBuilds {
    fn with_mode(mode: Mode) -> Self {
        InMemoryBuilds {
            state: Arc::default(),
            mode: Arc::new(mode),
            clock: Arc::new(SystemClock),
            key_lifetime: Arc::default(),
            hidden_from_find: Arc::default(),
            fail_start: Arc::default(),
        }
    }

    /// Builds end at once, SUCCEEDED, exporting [`WorkerOutcome::success`]'s variables.
    pub fn new() -> Self {
        Self::with_mode(Mode::AtOnce(Finished {
            state: BuildState::Succeeded,
            exported: WorkerOutcome::success().to_vars(),
            message: None,
        }))
    }

    /// Builds stay IN_PROGRESS until the test ends them.
    pub fn scripted() -> Self {
        Self::with_mode(Mode::WhenFinished)
    }

    /// Each build runs the task `work` makes from its request and id.
    pub fn running(
        work: impl Fn(&BuildRequest, &BuildId) -> BuildTask + Send + Sync + 'static,
    ) -> Self {
        Self::with_script(move |req, id| Ending::Task(work(req, id)))
    }

    /// Each build ends as `script` decides from its request and id.
    pub fn with_script(
        script: impl Fn(&BuildRequest, &BuildId) -> Ending + Send + Sync + 'static,
    ) -> Self {
        Self::with_mode(Mode::Script(Arc::new(script)))
    }

    /// Builds that end at once export these variables instead.
    pub fn with_exported(mut self, exported: BTreeMap<String, String>) -> Self {
        if let Some(Mode::AtOnce(done)) = Arc::get_mut(&mut self.mode) {
            done.exported = exported;
        }
        self
    }

    /// Builds that end at once end in `state` instead of SUCCEEDED (an unfinished state
    /// is taken as SUCCEEDED: they always finish), with a message when not SUCCEEDED.
    pub fn with_final_state(mut self, state: BuildState) -> Self {
        if let Some(Mode::AtOnce(done)) = Arc::get_mut(&mut self.mode) {
            done.state = if state.is_finished() {
                state
            } else {
                BuildState::Succeeded
            };
            done.message = (done.state != BuildState::Succeeded)
                .then(|| format!("in-memory build ended {}", done.state));
        }
        self
    }

    /// Timestamps (and key expiry) from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Forget a key `lifetime` after its build started (as CodeBuild forgets its tokens);
    /// `None` keeps every key (the default).
    pub fn expire_keys_after(&self, lifetime: Option<Duration>) {
        *self.key_lifetime.lock().unwrap_or_else(|e| e.into_inner()) = lifetime;
    }

    /// While on, `find` answers `None` (a build not visible yet).
    pub fn hide_from_find(&self, hidden: bool) {
        self.hidden_from_find.store(hidden, Ordering::Relaxed);
    }

    /// Fail every `start` with `error` (after recording the call) until set to `None`.
    pub fn fail_starts(&self, error: Option<PortError>) {
        *self.fail_start.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// How many builds were started (repeated idempotency keys excluded).
    pub fn starts(&self) -> usize {
        self.lock().builds.len()
    }

    /// Every build, in the order they started.
    pub fn builds(&self) -> Vec<InMemoryBuild> {
        self.lock().builds.iter().map(|e| e.build.clone()).collect()
    }

    /// The builds of work item `item`, in the order they started.
    pub fn builds_of(&self, item: &str) -> Vec<InMemoryBuild> {
        self.lock()
            .builds
            .iter()
            .filter(|e| e.build.req.item.as_str() == item)
            .map(|e| e.build.clone())
            .collect()
    }

    /// Every request `start` was called with, refused and repeated ones included.
    pub fn start_calls(&self) -> Vec<BuildRequest> {
        self.lock().start_calls.clone()
    }

    /// Every id `stop` was called with.
    pub fn stopped(&self) -> Vec<BuildId> {
        self.lock().stopped.clone()
    }

    /// End the latest build of `item` in `state` with `outcome`'s variables (a build that
    /// already finished keeps its end). Panics when `item` has no build.
    pub fn finish(&self, item: &str, state: BuildState, outcome: &WorkerOutcome) {
        let now = self.clock.now();
        let mut s = self.lock();
        let entry = s
            .builds
            .iter_mut()
            .rev()
            .find(|e| e.build.req.item.as_str() == item)
            .unwrap_or_else(|| panic!("no build of {item}"));
        entry.build.end(
            Finished {
                state,
                exported: outcome.to_vars(),
                message: None,
            },
            now,
        );
    }

    /// End the latest build of `item` SUCCEEDED, its worker reporting success at
    /// [`SCRIPTED_COVERAGE`].
    pub fn succeed(&self, item: &str) {
        let mut o = WorkerOutcome::success();
        o.coverage = Some(SCRIPTED_COVERAGE);
        self.finish(item, BuildState::Succeeded, &o);
    }

    /// End the latest build of `item` FAILED, its worker reporting a failure of `class`.
    pub fn fail(&self, item: &str, class: FailureClass) {
        self.finish(
            item,
            BuildState::Failed,
            &WorkerOutcome::failure(Failure::new(class, format!("scripted {class}"))),
        );
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live build of `key`, if any (a key past its lifetime names none).
    fn live(&self, s: &State, key: &str, now: Timestamp) -> Option<usize> {
        let i = *s.by_key.get(key)?;
        let lifetime = *self.key_lifetime.lock().unwrap_or_else(|e| e.into_inner());
        match lifetime {
            Some(l) if now.since(s.builds[i].build.started_at) >= l => None,
            _ => Some(i),
        }
    }

    fn ending(&self, req: &BuildRequest, id: &BuildId) -> Ending {
        match &*self.mode {
            Mode::AtOnce(done) => Ending::AtOnce(done.clone()),
            Mode::WhenFinished => Ending::WhenFinished,
            Mode::Script(script) => script(req, id),
        }
    }
}

#[async_trait]
impl BuildRunner for InMemoryBuilds {
    async fn start(&self, req: &BuildRequest) -> Result<BuildId, PortError> {
        let now = self.clock.now();
        let mut s = self.lock();
        s.start_calls.push(req.clone());
        if let Some(e) = self
            .fail_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(e);
        }
        if let Some(i) = self.live(&s, &req.idempotency_key, now) {
            let b = &s.builds[i].build;
            if b.req != *req {
                return Err(PortError::new(
                    FailureClass::Contention,
                    format!(
                        "parameter mismatch: key {} was used with other parameters",
                        req.idempotency_key
                    ),
                ));
            }
            return Ok(b.id.clone());
        }
        let index = s.builds.len();
        let id = BuildId::new(format!("in-memory:{}:{}", req.project, index + 1));
        let mut build = InMemoryBuild {
            id: id.clone(),
            req: req.clone(),
            state: BuildState::InProgress,
            phase: None,
            exported: BTreeMap::new(),
            message: None,
            started_at: now,
            ended_at: None,
        };
        let task = match self.ending(req, &id) {
            Ending::AtOnce(done) => {
                build.end(done, now);
                None
            }
            Ending::WhenFinished => None,
            Ending::Task(work) => {
                let (state, clock, build_id) = (self.state.clone(), self.clock.clone(), id.clone());
                Some(tokio::spawn(async move {
                    let done = work.await;
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(&i) = s.by_id.get(&build_id) {
                        s.builds[i].build.end(done, clock.now());
                    }
                }))
            }
        };
        s.builds.push(Entry { build, task });
        s.by_id.insert(id.clone(), index);
        s.by_key.insert(req.idempotency_key.clone(), index);
        Ok(id)
    }

    async fn find(&self, key: &str, _since: Timestamp) -> Result<Option<BuildId>, PortError> {
        if self.hidden_from_find.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let s = self.lock();
        Ok(s.builds
            .iter()
            .find(|e| e.build.req.idempotency_key == key)
            .map(|e| e.build.id.clone()))
    }

    async fn status(&self, ids: &[BuildId]) -> Result<Vec<BuildStatus>, PortError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for id in ids {
            let Some(&i) = s.by_id.get(id) else { continue };
            if !seen.insert(i) {
                continue;
            }
            let entry = &mut s.builds[i];
            // A task that ended without ending its build panicked.
            if entry.task.as_ref().is_some_and(|t| t.is_finished()) {
                entry.build.end(
                    Finished {
                        state: BuildState::Fault,
                        exported: BTreeMap::new(),
                        message: Some(
                            "the build's task ended without an outcome (it panicked)".into(),
                        ),
                    },
                    now,
                );
            }
            out.push(entry.build.status());
        }
        Ok(out)
    }

    /// Stops a running build (STOPPED, its task aborted); a finished build is left as it
    /// is. Every call is recorded; an unknown id is an `input` error.
    async fn stop(&self, id: &BuildId) -> Result<(), PortError> {
        let now = self.clock.now();
        let mut s = self.lock();
        s.stopped.push(id.clone());
        let Some(&i) = s.by_id.get(id) else {
            return Err(PortError::input(format!("unknown build {id}")));
        };
        let entry = &mut s.builds[i];
        if let Some(task) = &entry.task {
            task.abort();
        }
        entry.build.end(
            Finished {
                state: BuildState::Stopped,
                exported: entry.build.exported.clone(),
                message: None,
            },
            now,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
