//! The test's stand-ins around the real code: `Observed`, the real queue adapter keeping
//! every delivery it hands the consumer, and `in_process_builds`, a build runner whose
//! builds run the real worker pipeline in this test process (so its spans reach the
//! test's exporter) with the planted secrets in the worker's configuration.

use super::{PLANTED_API_KEY, PLANTED_TOKEN};
use async_trait::async_trait;
use kiro_backends::testing::{Finished, InMemoryBuild, InMemoryBuilds};
use kiro_protocol::ports::build::env as build_env;
use kiro_protocol::{
    BuildState, DeadLetter, Delivery, Destination, DlqListing, DlqSelection, OutgoingMessage,
    PortError, QueueDepth, Receipt, ReplayProgress, ReplayReport, Secret, SendOutcome, WorkQueue,
};
use kiro_worker::Config;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The real queue adapter, keeping every delivery it hands the consumer (what the
/// message carried) for the assertions.
#[derive(Debug)]
pub(super) struct Observed {
    pub(super) inner: Arc<dyn WorkQueue>,
    pub(super) deliveries: Mutex<Vec<Delivery>>,
}

#[async_trait]
impl WorkQueue for Observed {
    fn destination(&self) -> Destination {
        self.inner.destination()
    }
    async fn send(&self, m: OutgoingMessage) -> Result<SendOutcome, PortError> {
        self.inner.send(m).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, PortError> {
        let got = self.inner.receive(max, wait).await?;
        self.deliveries.lock().unwrap().extend(got.iter().cloned());
        Ok(got)
    }
    async fn extend(
        &self,
        r: &[Receipt],
        v: Duration,
    ) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.extend(r, v).await
    }
    async fn ack(&self, r: &Receipt) -> Result<(), PortError> {
        self.inner.ack(r).await
    }
    async fn ack_batch(&self, r: &[Receipt]) -> Result<Vec<Result<(), PortError>>, PortError> {
        self.inner.ack_batch(r).await
    }
    async fn release(&self, r: &Receipt, d: Duration) -> Result<(), PortError> {
        self.inner.release(r, d).await
    }
    async fn dead_letter(&self, d: &Delivery, l: &DeadLetter) -> Result<(), PortError> {
        self.inner.dead_letter(d, l).await
    }
    async fn dlq_list(&self, n: usize) -> Result<DlqListing, PortError> {
        self.inner.dlq_list(n).await
    }
    async fn dlq_replay_with(
        &self,
        s: &DlqSelection,
        dry: bool,
        progress: &mut dyn ReplayProgress,
    ) -> Result<ReplayReport, PortError> {
        self.inner.dlq_replay_with(s, dry, progress).await
    }
    async fn dlq_redrive(&self) -> Result<u64, PortError> {
        self.inner.dlq_redrive().await
    }
    async fn dlq_purge(&self) -> Result<u64, PortError> {
        self.inner.dlq_purge().await
    }
    async fn depth(&self) -> Result<QueueDepth, PortError> {
        self.inner.depth().await
    }
}

/// TEST STAND-IN for a build runner (CodeBuild, or the local runner's `kiro-local-build`
/// process): the in-memory runner of `kiro_backends::testing`, each of whose builds runs
/// the real worker pipeline, `kiro_worker::run`, on a task of this test's runtime instead
/// of in a separate process, so the worker's spans reach the test's exporter. The
/// worker's `Config` is made from the request's environment (what the consumer passed,
/// `TRACEPARENT` included) plus the runner's own secrets, and its ports come from the
/// worker's real wiring. Like a real build that ran the worker, the build SUCCEEDS and
/// exports the outcome's variables (`kiro_protocol::outcome::vars`); it is FAULT when the
/// worker's wiring fails. Idempotent on the key, as the build contract asks.
pub(super) fn in_process_builds(dir: PathBuf) -> InMemoryBuilds {
    let n = AtomicUsize::new(0);
    InMemoryBuilds::running(move |req, id| {
        let n = n.fetch_add(1, Ordering::Relaxed) + 1;
        let cfg = worker_config(&req.env, dir.join(n.to_string()), id.as_str());
        Box::pin(async move {
            match kiro_worker::wiring::ports(&cfg).await {
                Ok(ports) => Finished {
                    state: BuildState::Succeeded,
                    exported: kiro_worker::run(&cfg, &ports).await.to_vars(),
                    message: None,
                },
                Err(f) => Finished {
                    state: BuildState::Fault,
                    exported: BTreeMap::new(),
                    message: Some(format!("{}: {}", f.class, f.reason)),
                },
            }
        })
    })
}

/// The one build that was started.
pub(super) fn only(builds: &InMemoryBuilds) -> InMemoryBuild {
    let all = builds.builds();
    assert_eq!(all.len(), 1, "exactly one build: {all:?}");
    all[0].clone()
}

/// The worker's configuration for a build: the request's environment (the item, the
/// fence, `TRACEPARENT`, the settings), the build's id and directory, the secrets.
fn worker_config(env: &BTreeMap<String, String>, dir: PathBuf, id: &str) -> Config {
    let get = |k: &str| env.get(k).cloned();
    let d = Config::defaults();
    Config {
        item: get(build_env::ITEM),
        project: get(build_env::PROJECT),
        repo: get(build_env::REPO),
        branch: get(build_env::BRANCH),
        spec: get(build_env::SPEC),
        pr: get(build_env::PR),
        fence: get(build_env::FENCE),
        attempt: get(build_env::ATTEMPT),
        traceparent: get(build_env::TRACEPARENT),
        build_id: Some(id.to_owned()),
        git_base: get("KIRO_GIT_BASE").unwrap_or(d.git_base.clone()),
        build_dir: dir,
        agent_cmd: get("KIRO_AGENT_CMD").unwrap_or(d.agent_cmd.clone()),
        agent_timeout: Duration::from_secs(120).into(),
        test_cmd: get("KIRO_TEST_CMD").unwrap_or(d.test_cmd.clone()),
        test_timeout: Duration::from_secs(120).into(),
        backend: match get("KIRO_BACKEND").as_deref() {
            Some("aws") => kiro_runtime::Backend::Aws,
            _ => kiro_runtime::Backend::Embedded,
        },
        aws: kiro_runtime::AwsArgs {
            region: get("KIRO_AWS_REGION"),
            endpoint_url: get("KIRO_AWS_ENDPOINT_URL"),
        },
        leases: kiro_runtime::LeaseTableArgs {
            lease_table: get("KIRO_LEASE_TABLE"),
        },
        state_dir: get("KIRO_STATE_DIR").map(PathBuf::from),
        board_file: get("KIRO_BOARD_FILE").map(PathBuf::from),
        github: kiro_runtime::GithubArgs {
            token: Some(Secret::new(PLANTED_TOKEN)),
            ..d.github.clone()
        },
        kiro_api_key: Some(Secret::new(PLANTED_API_KEY)),
        ..d
    }
}
