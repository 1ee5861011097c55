//! The `BuildRunner` contract suite: what every build runner (the local buildspec
//! runner, AWS CodeBuild) must do.
//!
//! Each check is a public async function taking only a [`BuildHarness`];
//! [`build_contract!`](crate::build_contract) makes one test of each. A check asks the
//! harness for requests that make a build behave as a [`BuildScript`] says (succeed or
//! fail after exporting variables, or run until it is stopped) — the local harness turns
//! a script into shell code for its buildspec, a CodeBuild harness into scripted
//! BatchGetBuilds answers. Every check uses its own
//! idempotency keys (prefixed by the harness's [`BuildHarness::key_prefix`]), so checks
//! can share one runner.
//!
//! Invariant: the checks only use the port (plus [`BuildHarness::builds_started`]),
//! never an adapter's internals, and they panic with a message naming the broken rule.

use async_trait::async_trait;
use kiro_protocol::outcome::vars;
use kiro_protocol::{
    BuildId, BuildRequest, BuildRunner, BuildState, BuildStatus, FailureClass, PortError, Timestamp,
};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// How the build of a request should behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildScript {
    /// Variables the build exports (names from [`kiro_protocol::outcome::vars::ALL`], the
    /// list `buildspec.yml` exports; values are plain text without newlines).
    pub exports: BTreeMap<String, String>,
    pub end: ScriptEnd,
}

/// How a scripted build ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEnd {
    /// The build succeeds.
    Succeed,
    /// A build command fails (after the variables are set).
    Fail,
    /// The build keeps running until it is stopped.
    RunUntilStopped,
}

impl BuildScript {
    pub fn succeed(exports: BTreeMap<String, String>) -> Self {
        BuildScript {
            exports,
            end: ScriptEnd::Succeed,
        }
    }

    pub fn fail(exports: BTreeMap<String, String>) -> Self {
        BuildScript {
            exports,
            end: ScriptEnd::Fail,
        }
    }

    pub fn run_until_stopped() -> Self {
        BuildScript {
            exports: BTreeMap::new(),
            end: ScriptEnd::RunUntilStopped,
        }
    }
}

/// What a build runner provides to run the suite.
#[async_trait]
pub trait BuildHarness: Send + Sync {
    /// The runner under test.
    fn runner(&self) -> Arc<dyn BuildRunner>;
    /// A request with idempotency key `key` whose build behaves as `script` says.
    fn request(&self, key: &str, script: &BuildScript) -> BuildRequest;
    /// How many builds the runner really started so far (idempotent repeats excluded).
    async fn builds_started(&self) -> Result<usize, PortError>;
    /// A prefix for every idempotency key, so several runs of the suite can share state.
    fn key_prefix(&self) -> String {
        String::new()
    }
    /// How often [`wait_finished`] asks for the status.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(100)
    }
    /// How long [`wait_finished`] waits at most before the check fails.
    fn max_wait(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Unwrap a result in a check, naming the step on failure.
fn ok<T, E: Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("contract: {what} failed: {e:?}"),
    }
}

fn key(h: &dyn BuildHarness, name: &str) -> String {
    format!("{}{name}", h.key_prefix())
}

/// A sample of outcome variables.
pub fn sample_exports(outcome: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(vars::OUTCOME.to_owned(), outcome.to_owned());
    m.insert(vars::TASKS_TOTAL.to_owned(), "4".to_owned());
    m.insert(vars::COMMIT.to_owned(), "0123abcd".to_owned());
    m
}

/// The status of one build (panics if the runner does not know it).
pub async fn status_of(h: &dyn BuildHarness, id: &BuildId) -> BuildStatus {
    let mut st = ok(h.runner().status(std::slice::from_ref(id)).await, "status");
    assert_eq!(st.len(), 1, "contract: status of {id} must answer once");
    st.remove(0)
}

/// Poll until build `id` is finished (panics after [`BuildHarness::max_wait`]).
pub async fn wait_finished(h: &dyn BuildHarness, id: &BuildId) -> BuildStatus {
    wait_for(h, id, "finished", |s| s.state.is_finished()).await
}

/// Poll until `pred` holds for build `id`'s status (panics after the harness's limit).
pub async fn wait_for(
    h: &dyn BuildHarness,
    id: &BuildId,
    what: &str,
    pred: impl Fn(&BuildStatus) -> bool,
) -> BuildStatus {
    let rounds = (h.max_wait().as_millis() / h.poll_interval().as_millis().max(1)).max(1);
    let mut last = None;
    for _ in 0..rounds {
        let st = status_of(h, id).await;
        if pred(&st) {
            return st;
        }
        last = Some(st);
        tokio::time::sleep(h.poll_interval()).await;
    }
    panic!("contract: build {id} was not {what} in time; last status {last:?}");
}

/// The same idempotency key gives the same build id and starts only one build.
pub async fn same_key_same_build(h: &dyn BuildHarness) {
    let runner = h.runner();
    let before = ok(h.builds_started().await, "builds_started");
    let script = BuildScript::succeed(sample_exports("succeeded"));
    let req = h.request(&key(h, "idem-1"), &script);
    let a = ok(runner.start(&req).await, "start");
    let b = ok(runner.start(&req).await, "start again");
    assert_eq!(
        a, b,
        "contract: the same idempotency key must return the same build"
    );
    let other = ok(
        runner.start(&h.request(&key(h, "idem-2"), &script)).await,
        "start another",
    );
    assert_ne!(a, other, "contract: another key must start another build");
    let after = ok(h.builds_started().await, "builds_started");
    assert_eq!(after - before, 2, "contract: two keys, exactly two builds");
    wait_finished(h, &a).await;
    wait_finished(h, &other).await;
    let again = ok(runner.start(&req).await, "start after it finished");
    assert_eq!(a, again, "contract: a finished build's key still names it");
    assert_eq!(ok(h.builds_started().await, "builds_started"), after);
}

/// The same key with other parameters (another fence, another timeout: what a consumer
/// re-attaching with a rebuilt request would send) returns the first build or is refused
/// with a `contention` error; it never starts a second build.
pub async fn same_key_other_parameters_never_starts_a_second_build(h: &dyn BuildHarness) {
    let runner = h.runner();
    let before = ok(h.builds_started().await, "builds_started");
    let script = BuildScript::succeed(sample_exports("succeeded"));
    let req = h.request(&key(h, "mismatch-1"), &script);
    let a = ok(runner.start(&req).await, "start");
    let mut other = req.clone();
    other
        .env
        .insert("KIRO_FENCE".to_owned(), "contract-other-fence".to_owned());
    other.timeout =
        Some(req.timeout.unwrap_or(Duration::from_secs(600)) + Duration::from_secs(600));
    match runner.start(&other).await {
        Ok(b) => assert_eq!(
            a, b,
            "contract: the same key with other parameters must name the first build"
        ),
        Err(e) => assert_eq!(
            e.class,
            FailureClass::Contention,
            "contract: a refused repeat of a key is `contention`, never the item's fault: {e}"
        ),
    }
    let after = ok(h.builds_started().await, "builds_started");
    assert_eq!(
        after - before,
        1,
        "contract: one key, one build, whatever the parameters"
    );
    wait_finished(h, &a).await;
}

/// `find` names the build a key started, and nothing for a key never used (required of
/// runners whose keys expire, such as CodeBuild; a runner that keeps every key may skip
/// it, as `find` then has nothing to add).
pub async fn a_started_build_is_found_by_its_key(h: &dyn BuildHarness) {
    let runner = h.runner();
    let script = BuildScript::succeed(sample_exports("succeeded"));
    let k = key(h, "find-1");
    let id = ok(runner.start(&h.request(&k, &script)).await, "start");
    let found = ok(runner.find(&k, Timestamp(0)).await, "find");
    assert_eq!(
        found,
        Some(id.clone()),
        "contract: find names the key's build"
    );
    let none = ok(
        runner.find(&key(h, "find-never-used"), Timestamp(0)).await,
        "find an unused key",
    );
    assert_eq!(none, None, "contract: an unused key names no build");
    wait_finished(h, &id).await;
}

/// `status` answers for several ids in one call.
pub async fn status_answers_many_ids_at_once(h: &dyn BuildHarness) {
    let runner = h.runner();
    let script = BuildScript::succeed(sample_exports("succeeded"));
    let a = ok(
        runner.start(&h.request(&key(h, "batch-1"), &script)).await,
        "start",
    );
    let b = ok(
        runner.start(&h.request(&key(h, "batch-2"), &script)).await,
        "start",
    );
    let st = ok(runner.status(&[a.clone(), b.clone()]).await, "status");
    let mut ids: Vec<BuildId> = st.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(ids, want, "contract: status must answer for every known id");
    wait_finished(h, &a).await;
    wait_finished(h, &b).await;
    let st = ok(runner.status(&[b.clone(), a.clone()]).await, "status");
    assert!(
        st.iter().all(|s| s.state == BuildState::Succeeded),
        "contract: both builds succeed: {st:?}"
    );
}

/// A succeeding build ends SUCCEEDED and carries the variables it exported.
pub async fn succeeding_build_exports_variables(h: &dyn BuildHarness) {
    let exports = sample_exports("succeeded");
    let id = ok(
        h.runner()
            .start(&h.request(&key(h, "ok-1"), &BuildScript::succeed(exports.clone())))
            .await,
        "start",
    );
    let st = wait_finished(h, &id).await;
    assert_eq!(st.state, BuildState::Succeeded, "contract: {st:?}");
    assert_eq!(
        st.exported, exports,
        "contract: a finished build carries exactly the variables it exported"
    );
    assert!(
        st.ended_at.is_some(),
        "contract: a finished build has an end time"
    );
}

/// A failing build ends FAILED and still carries the variables it exported.
pub async fn failing_build_keeps_exported_variables(h: &dyn BuildHarness) {
    let exports = sample_exports("failed");
    let id = ok(
        h.runner()
            .start(&h.request(&key(h, "fail-1"), &BuildScript::fail(exports.clone())))
            .await,
        "start",
    );
    let st = wait_finished(h, &id).await;
    assert_eq!(st.state, BuildState::Failed, "contract: {st:?}");
    assert_eq!(
        st.exported, exports,
        "contract: a failed build still carries its exported variables"
    );
}

/// Stopping a running build ends it STOPPED.
pub async fn stop_ends_stopped(h: &dyn BuildHarness) {
    let runner = h.runner();
    let id = ok(
        runner
            .start(&h.request(&key(h, "stop-1"), &BuildScript::run_until_stopped()))
            .await,
        "start",
    );
    wait_for(h, &id, "in progress", |s| s.state == BuildState::InProgress).await;
    ok(runner.stop(&id).await, "stop");
    let st = wait_finished(h, &id).await;
    assert_eq!(st.state, BuildState::Stopped, "contract: {st:?}");
    ok(
        runner.stop(&id).await,
        "stopping a finished build is a no-op",
    );
    assert_eq!(status_of(h, &id).await.state, BuildState::Stopped);
}

/// An unknown id is left out of the answer, without an error.
pub async fn unknown_id_is_absent(h: &dyn BuildHarness) {
    let runner = h.runner();
    let id = ok(
        runner
            .start(&h.request(
                &key(h, "known-1"),
                &BuildScript::succeed(sample_exports("succeeded")),
            ))
            .await,
        "start",
    );
    let unknown = BuildId::new(format!("{}-does-not-exist", id.as_str()));
    let st = ok(
        runner.status(&[unknown.clone(), id.clone()]).await,
        "status with an unknown id",
    );
    assert_eq!(st.len(), 1, "contract: only known ids are answered: {st:?}");
    assert_eq!(st[0].id, id);
    let none = ok(runner.status(&[unknown]).await, "status of an unknown id");
    assert!(none.is_empty(), "contract: {none:?}");
    wait_finished(h, &id).await;
}
