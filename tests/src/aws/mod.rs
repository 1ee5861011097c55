//! TEST SUPPORT: one local AWS endpoint for a deployment rehearsal — CodeBuild and ECS
//! task protection emulated here, everything else forwarded to moto, every call recorded.
//!
//! # API (as built)
//!
//! ```text
//! let mut cfg = EmulatorConfig::new(build_root);  // region, account, cluster, minute (60 s),
//! cfg.build_base_env = [("PATH", image_path), ("KIRO_AWS_ENDPOINT_URL", ENDPOINT_PLACEHOLDER)];
//! cfg.account_concurrent_build_limit = Some(n);    // optional, default none
//! let emu = AwsEmulator::start(cfg).await?;         // 127.0.0.1:random; moto started once per binary
//! emu.endpoint()                       // "http://127.0.0.1:PORT": KIRO_AWS_ENDPOINT_URL / AWS_ENDPOINT_URL
//! emu.add_credentials(akid, secret, "consumer-task")   // calls signed with akid are recorded as that role
//! emu.credentials_for("producer-task") -> Credentials  // stand-in keys for a role (minted once)
//! emu.credentials_uri("consumer-task") // AWS_CONTAINER_CREDENTIALS_FULL_URI value serving that role's keys
//! emu.metadata_endpoint("task-1")      // ECS_CONTAINER_METADATA_URI_V4 value; `/task` → {Cluster, TaskARN}
//! emu.task_arn("task-1")               // the TaskARN that endpoint reports
//! emu.task_protection(&task_arn)       // Option<TaskProtectionView> after UpdateTaskProtection
//! emu.create_project(ProjectSpec::new("kiro-worker", "codebuild", buildspec_text)
//!     .env(EnvVar::plain("KIRO_BACKEND", "aws"))
//!     .env(EnvVar::secret("KIRO_API_KEY", "arn:…:secret:kiro-api-key"))
//!     .timeout_minutes(90).concurrent_build_limit(2)
//!     .log_group("/aws/codebuild/kiro-worker"));   // optional: the build log goes to CloudWatch Logs
//! emu.calls() -> Vec<RecordedCall>     // every AWS call, in arrival order (role, service, action, resources, status)
//! emu.builds() -> Vec<BuildView>       // id, token, project, status, phase, environment, exported, log path
//! emu.wait_for_build(&id, limit).await // Option<BuildView> once complete (or at the limit)
//! let mut hold = emu.hold_next_start_build();  // the next StartBuild that creates a build waits…
//! let id = hold.started().await;       // Some(build id): the build exists and runs; StartBuild not answered
//! hold.release();                      // (dropping the hold releases it too)
//! emu.inject_fault(Fault::lost_answer("StartBuild"))  // next StartBuild starts a build, answers 500
//! emu.call(role, "secretsmanager", "secretsmanager.CreateSecret", json).await  // set-up calls, recorded as `role`
//! emu.moto_endpoint()                  // the moto server behind it
//! ```
//!
//! Endpoint routing: `CodeBuild_20161006.*` (StartBuild, BatchGetBuilds, StopBuild,
//! ListBuildsForProject) → [`codebuild`]; ECS `UpdateTaskProtection` / `GetTaskProtection`
//! (moto 5.2.5 has neither) → [`ecs`]; paths under `/_emulator/` are the credentials and
//! task-metadata endpoints (not AWS calls, not recorded); everything else goes to the
//! shared moto server of this test binary ([`kiro_backends::testing::moto`]) unchanged,
//! `Host` header included, so the SQS queue URLs moto makes name the emulator's address.
//!
//! Builds' credentials: each build gets `AWS_CONTAINER_CREDENTIALS_FULL_URI` pointing at
//! this emulator's credentials endpoint for the project's service role. Real CodeBuild
//! sets `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (169.254.170.2, unreachable here); the
//! full-URI form is the same SDK provider on a loopback address, so the worker's default
//! credentials chain runs as on CodeBuild (static keys in the environment would bypass
//! it) and every call it makes is recorded under the service role.
//!
//! The IAM evaluator for checking recorded calls against rendered policies is [`iam`]
//! (`iam::evaluate`, `iam::check_call`), with the mapping from a recorded call to the IAM
//! requests it stands for (`iam::iam_calls`: per item for DynamoDB transactions, single
//! actions for SQS batches; `iam::resource_arn` for ARNs).
//!
//! Invariants: the emulator never changes a forwarded request; a call is recorded
//! before it is answered (status filled in when answered); no lock is held across an
//! await; everything listens on 127.0.0.1 only and stops when the [`AwsEmulator`] drops.

pub mod codebuild;
pub mod ecs;
pub mod fault;
pub mod iam;
pub mod record;
mod server;
pub mod wire;

pub use codebuild::{BuildView, EnvVar, EnvVarType, PhaseView, ProjectSpec, StartBuildHold};
pub use ecs::TaskProtectionView;
pub use fault::{Fault, FaultWhen};
pub use record::{Answerer, RecordedCall};

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Written in a [`EmulatorConfig::build_base_env`] value, stands for [`AwsEmulator::endpoint`].
pub const ENDPOINT_PLACEHOLDER: &str = "${EMULATOR_ENDPOINT}";

/// Settings of one emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Region in ARNs and the builds' `AWS_REGION` (default `us-east-1`).
    pub region: String,
    /// Account id in ARNs (default moto's `123456789012`).
    pub account: String,
    /// ECS cluster name the task metadata reports (default `kiro`).
    pub cluster: String,
    /// Each build runs in `<build_root>/<build uuid>/` (`src/`, `build.log`).
    pub build_root: PathBuf,
    /// The build image's environment: `PATH` and the rehearsal's endpoint overrides.
    /// Everything CodeBuild adds goes on top (see [`codebuild`]). Every occurrence of
    /// [`ENDPOINT_PLACEHOLDER`] in a value becomes the emulator's endpoint (unknown
    /// before it starts).
    pub build_base_env: BTreeMap<String, String>,
    /// Length of an emulated minute: build timeouts (`timeoutInMinutes`) and the
    /// idempotency window (5 minutes) are counted in it. Default 60 s.
    pub minute: Duration,
    /// The account's concurrent build limit over all projects (`None`: no limit).
    pub account_concurrent_build_limit: Option<u32>,
}

impl EmulatorConfig {
    /// Defaults with builds under `build_root`.
    pub fn new(build_root: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            cluster: "kiro".into(),
            build_root: build_root.into(),
            build_base_env: BTreeMap::new(),
            minute: Duration::from_secs(60),
            account_concurrent_build_limit: None,
        }
    }
}

/// Stand-in credentials of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub role: String,
}

/// The emulator could not start or a call it made failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind the emulator on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("moto did not start: {0}")]
    Moto(String),
    #[error(transparent)]
    Call(#[from] wire::CallError),
}

#[derive(Debug, Default)]
struct CredentialStore {
    by_key: HashMap<String, Credentials>,
    by_role: HashMap<String, String>,
}

/// State shared by the server tasks and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: EmulatorConfig,
    pub(crate) endpoint: String,
    pub(crate) moto: String,
    pub(crate) client: wire::HttpClient,
    calls: Mutex<Vec<RecordedCall>>,
    creds: Mutex<CredentialStore>,
    pub(crate) codebuild: Mutex<codebuild::State>,
    pub(crate) ecs: Mutex<ecs::State>,
    pub(crate) faults: Mutex<fault::Faults>,
}

/// Lock a mutex, ignoring poisoning (a panicking test thread must not hide the state).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn role_of(&self, access_key_id: &str) -> Option<String> {
        lock(&self.creds)
            .by_key
            .get(access_key_id)
            .map(|c| c.role.clone())
    }

    pub(crate) fn credentials_for(&self, role: &str) -> Credentials {
        let mut store = lock(&self.creds);
        if let Some(c) = store.by_role.get(role).and_then(|k| store.by_key.get(k)) {
            return c.clone();
        }
        let n = store.by_key.len();
        let tag: String = role
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .take(10)
            .collect();
        let c = Credentials {
            access_key_id: format!("ASIAEMU{n:03}{tag}"),
            secret_access_key: format!("emulator-secret-{n}-{role}"),
            role: role.to_owned(),
        };
        store
            .by_role
            .insert(role.to_owned(), c.access_key_id.clone());
        store.by_key.insert(c.access_key_id.clone(), c.clone());
        c
    }

    pub(crate) fn record(&self, mut call: RecordedCall) -> usize {
        let mut calls = lock(&self.calls);
        call.seq = calls.len() as u64;
        calls.push(call);
        calls.len() - 1
    }

    pub(crate) fn answered(&self, index: usize, status: u16, response_arn: Option<String>) {
        if let Some(c) = lock(&self.calls).get_mut(index) {
            c.status = Some(status);
            c.response_arn = response_arn;
        }
    }

    /// A JSON-protocol call to this emulator signed as `role` (so it is recorded).
    pub(crate) async fn call_as(
        &self,
        role: &str,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<(u16, Value), wire::CallError> {
        let akid = self.credentials_for(role).access_key_id;
        wire::signed_json_call(
            &self.client,
            &self.endpoint,
            &akid,
            &self.cfg.region,
            service,
            target,
            body,
        )
        .await
    }
}

/// The running emulator; stops serving when dropped.
#[derive(Debug)]
pub struct AwsEmulator {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        self.server.abort();
        codebuild::stop_all(&self.shared);
    }
}

impl AwsEmulator {
    /// Start moto (once per test binary) and the emulator on 127.0.0.1 (random port).
    pub async fn start(cfg: EmulatorConfig) -> Result<AwsEmulator, EmulatorError> {
        let moto = tokio::task::spawn_blocking(|| {
            std::panic::catch_unwind(|| kiro_backends::testing::moto::moto().endpoint.clone())
        })
        .await
        .map_err(|e| EmulatorError::Moto(e.to_string()))?
        .map_err(|p| {
            EmulatorError::Moto(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "moto start-up panicked".into()),
            )
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(EmulatorError::Bind)?;
        let port = listener.local_addr().map_err(EmulatorError::Bind)?.port();
        let shared = Arc::new(Shared {
            cfg,
            endpoint: format!("http://127.0.0.1:{port}"),
            moto,
            client: wire::client(),
            calls: Mutex::new(Vec::new()),
            creds: Mutex::new(CredentialStore::default()),
            codebuild: Mutex::new(codebuild::State::default()),
            ecs: Mutex::new(ecs::State::default()),
            faults: Mutex::new(fault::Faults::default()),
        });
        let server = tokio::spawn(server::serve(listener, shared.clone()));
        Ok(AwsEmulator { shared, server })
    }

    /// `http://127.0.0.1:PORT`, the one AWS endpoint of the rehearsal.
    pub fn endpoint(&self) -> String {
        self.shared.endpoint.clone()
    }

    /// The moto server calls are forwarded to.
    pub fn moto_endpoint(&self) -> String {
        self.shared.moto.clone()
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.cfg
    }

    /// Calls signed with `access_key_id` are recorded as made by `role` (a role key such
    /// as `consumer-task`). The secret is kept only to answer the credentials endpoint.
    pub fn add_credentials(&self, access_key_id: &str, secret: &str, role: &str) {
        let c = Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret.to_owned(),
            role: role.to_owned(),
        };
        let mut store = lock(&self.shared.creds);
        store
            .by_role
            .insert(role.to_owned(), c.access_key_id.clone());
        store.by_key.insert(c.access_key_id.clone(), c);
    }

    /// The credentials of `role`: those given to [`add_credentials`](Self::add_credentials)
    /// last, else stand-in keys minted once.
    pub fn credentials_for(&self, role: &str) -> Credentials {
        self.shared.credentials_for(role)
    }

    /// The `AWS_CONTAINER_CREDENTIALS_FULL_URI` value that serves `role`'s credentials
    /// (container-provider JSON: `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`).
    pub fn credentials_uri(&self, role: &str) -> String {
        format!("{}/_emulator/credentials/{role}", self.shared.endpoint)
    }

    /// The `ECS_CONTAINER_METADATA_URI_V4` value for task `task` (an id) of the
    /// configured cluster; its `/task` answers `{"Cluster": <cluster ARN>, "TaskARN": …}`.
    pub fn metadata_endpoint(&self, task: &str) -> String {
        ecs::register_task(&self.shared, task);
        format!("{}/_emulator/ecs/{task}", self.shared.endpoint)
    }

    /// The ARN the metadata endpoint of `task` reports.
    pub fn task_arn(&self, task: &str) -> String {
        ecs::task_arn(&self.shared.cfg, task)
    }

    /// The protection last set on `task_arn` by `UpdateTaskProtection`.
    pub fn task_protection(&self, task_arn: &str) -> Option<TaskProtectionView> {
        lock(&self.shared.ecs).protection(task_arn)
    }

    /// Register (or replace) a CodeBuild project.
    pub fn create_project(&self, p: ProjectSpec) {
        lock(&self.shared.codebuild).create_project(p);
    }

    /// Every AWS call so far, in arrival order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.shared.calls).clone()
    }

    /// Every build so far, oldest first.
    pub fn builds(&self) -> Vec<BuildView> {
        lock(&self.shared.codebuild).views()
    }

    /// Hold the next `StartBuild` that creates a build: it answers only after the hold
    /// is released or dropped. Holds queue up (one per future StartBuild).
    pub fn hold_next_start_build(&self) -> StartBuildHold {
        lock(&self.shared.codebuild).hold()
    }

    /// Answer the next call of `fault.action` with `fault`'s error (once).
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Wait until build `id` has finished (or `limit` passed); returns its view.
    pub async fn wait_for_build(&self, id: &str, limit: Duration) -> Option<BuildView> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let view = self.builds().into_iter().find(|b| b.id == id);
            if view.as_ref().is_some_and(|b| b.complete) || tokio::time::Instant::now() > deadline {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A JSON-protocol call through the emulator signed as `role` (recorded like any
    /// other): for set-up such as `secretsmanager.CreateSecret` or `AmazonSSM.PutParameter`.
    /// Returns the HTTP status and the JSON answer.
    pub async fn call(
        &self,
        role: &str,
        service: &str,
        target: &str,
        body: Value,
    ) -> Result<(u16, Value), EmulatorError> {
        Ok(self.shared.call_as(role, service, target, &body).await?)
    }
}
