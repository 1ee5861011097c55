//! `TaskProtection` through ECS task scale-in protection, and the no-op off ECS.
//!
//! [`EcsTaskProtection`] learns which task it runs in from the ECS task metadata endpoint
//! (`$ECS_CONTAINER_METADATA_URI_V4/task`: `Cluster` and `TaskARN`, fetched once and kept)
//! and calls `UpdateTaskProtection` for that task: `protectionEnabled` with
//! `expiresInMinutes` when turning on, which the engine re-arms every half of that expiry
//! ([`TaskProtection::refresh_every`]) while it holds jobs, so a consumer that dies while
//! protected is protected for one expiry at most. [`NoProtection`] is used when the
//! process is not on ECS (the variable is unset): a no-op that says so once in the log.
//! [`protection_for`] chooses between them.
//!
//! Invariants: `UpdateTaskProtection` goes through the shared `call` helper;
//! a per-task failure in its answer (`failures`) is an error, never a silent success;
//! the metadata endpoint is read with a tiny HTTP/1.0 GET (the endpoint is plain HTTP on
//! a link-local address, and an HTTP/1.0 answer is never chunked), under a time limit.

use super::call::call;
use super::classify::AwsError;
use super::retry::CallBackoff;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::Client;
use kiro_protocol::{FailureClass, PortError, TaskProtection};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;
use tracing::{debug, info};

/// The environment variable ECS sets in every container (task metadata endpoint v4).
pub const METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// Default protection expiry (ECS allows 1 minute to 48 hours).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(2 * 60 * 60);

/// Time limit of one metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest metadata answer read (a task document is a few kilobytes).
const METADATA_MAX_BYTES: u64 = 1 << 20;

/// The task this process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskIdentity {
    #[serde(rename = "Cluster")]
    pub cluster: String,
    #[serde(rename = "TaskARN")]
    pub task_arn: String,
}

/// Scale-in protection of the ECS task this process runs in.
#[derive(Debug)]
pub struct EcsTaskProtection {
    client: Client,
    metadata_uri: String,
    expiry: Duration,
    backoff: CallBackoff,
    task: OnceCell<TaskIdentity>,
}

impl EcsTaskProtection {
    /// Protection for the task whose metadata endpoint is `metadata_uri` (the value of
    /// `ECS_CONTAINER_METADATA_URI_V4`).
    pub fn new(sdk: &SdkConfig, metadata_uri: impl Into<String>) -> Self {
        EcsTaskProtection::from_client(Client::new(sdk), metadata_uri)
    }

    /// The same on a client built elsewhere (tests hand in a mocked client).
    pub fn from_client(client: Client, metadata_uri: impl Into<String>) -> Self {
        EcsTaskProtection {
            client,
            metadata_uri: metadata_uri.into(),
            expiry: DEFAULT_EXPIRY,
            backoff: CallBackoff::default(),
            task: OnceCell::new(),
        }
    }

    /// Protection expires `expiry` after each arming (clamped to ECS's 1 minute–48 hours).
    pub fn with_expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry.clamp(Duration::from_secs(60), Duration::from_secs(48 * 3600));
        self
    }

    /// The same protection with another backoff for its calls.
    pub fn with_backoff(mut self, backoff: CallBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    fn expiry_minutes(&self) -> i32 {
        i32::try_from(self.expiry.as_secs() / 60).unwrap_or(2880)
    }

    /// The task's cluster and ARN, read once from the metadata endpoint.
    pub async fn task(&self) -> Result<&TaskIdentity, PortError> {
        self.task
            .get_or_try_init(|| async {
                let url = format!("{}/task", self.metadata_uri.trim_end_matches('/'));
                let body = http_get(&url).await?;
                let task: TaskIdentity = serde_json::from_slice(&body).map_err(|e| {
                    PortError::internal(format!(
                        "ECS task metadata from {url} has no Cluster/TaskARN: {e}"
                    ))
                })?;
                info!(cluster = %task.cluster, task = %task.task_arn, "running on ECS");
                Ok(task)
            })
            .await
    }
}

#[async_trait]
impl TaskProtection for EcsTaskProtection {
    async fn set(&self, protected: bool) -> Result<(), PortError> {
        let task = self.task().await?;
        let minutes = self.expiry_minutes();
        let out = call(&self.backoff, "ecs:UpdateTaskProtection", |_| {
            let mut req = self
                .client
                .update_task_protection()
                .cluster(&task.cluster)
                .tasks(&task.task_arn)
                .protection_enabled(protected);
            if protected {
                req = req.expires_in_minutes(minutes);
            }
            req.send()
        })
        .await?;
        if let Some(f) = out.failures().first() {
            let reason = f.reason().unwrap_or("unknown");
            let class = match reason {
                // The task is not (or no longer) one ECS can protect: retrying cannot help.
                "TASK_NOT_VALID" | "MISSING" => FailureClass::PermanentInput,
                _ => FailureClass::Transient,
            };
            return Err(AwsError::new(
                "ecs:UpdateTaskProtection",
                class,
                format!(
                    "task {} refused: {reason} {}",
                    f.arn().unwrap_or(&task.task_arn),
                    f.detail().unwrap_or_default()
                ),
            )
            .into());
        }
        debug!(protected, minutes, "task protection updated");
        Ok(())
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(self.expiry / 2)
    }
}

/// Not on ECS: protection is a no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProtection;

impl NoProtection {
    /// The no-op, logged once.
    pub fn new() -> Self {
        info!("{METADATA_ENV} is not set: not on ECS, no task scale-in protection");
        NoProtection
    }
}

#[async_trait]
impl TaskProtection for NoProtection {
    async fn set(&self, _protected: bool) -> Result<(), PortError> {
        Ok(())
    }
}

/// ECS protection when `metadata_uri` (the value of `ECS_CONTAINER_METADATA_URI_V4`) is
/// set and not empty, the no-op otherwise.
/// The protection for this process: ECS when the task metadata endpoint is in the
/// environment (`ECS_CONTAINER_METADATA_URI_V4`), otherwise a no-op.
pub async fn protection_from_env(aws: &super::settings::AwsSettings) -> Arc<dyn TaskProtection> {
    let uri = std::env::var(METADATA_ENV).ok();
    protection_for(&super::settings::sdk_config(aws).await, uri)
}

pub fn protection_for(sdk: &SdkConfig, metadata_uri: Option<String>) -> Arc<dyn TaskProtection> {
    match metadata_uri.filter(|u| !u.trim().is_empty()) {
        Some(uri) => Arc::new(EcsTaskProtection::new(sdk, uri)),
        None => Arc::new(NoProtection::new()),
    }
}

/// GET `url` (plain `http://host[:port]/path`) and return the body of a 200 answer.
async fn http_get(url: &str) -> Result<Vec<u8>, PortError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        PortError::internal(format!("ECS metadata URI {url:?} is not an http:// URL"))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        stream
            .take(METADATA_MAX_BYTES)
            .read_to_end(&mut buf)
            .await?;
        Ok::<_, std::io::Error>(buf)
    };
    let raw = tokio::time::timeout(METADATA_TIMEOUT, fetch)
        .await
        .map_err(|_| PortError::transient(format!("ECS metadata {url}: timed out")))?
        .map_err(|e| PortError::transient(format!("ECS metadata {url}: {e}")))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| PortError::transient(format!("ECS metadata {url}: truncated answer")))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status != 200 {
        let class = if status >= 500 || status == 0 {
            FailureClass::Transient
        } else {
            FailureClass::Internal
        };
        return Err(PortError::new(
            class,
            format!("ECS metadata {url}: HTTP {status}"),
        ));
    }
    Ok(raw[split + 4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_metadata_uri_is_internal_and_unreachable_is_transient() {
        let e = http_get("https://example.invalid/x").await.unwrap_err();
        assert_eq!(e.class, FailureClass::Internal);
        // A port nobody listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = http_get(&format!("http://127.0.0.1:{port}/v4/x/task"))
            .await
            .unwrap_err();
        assert_eq!(e.class, FailureClass::Transient, "{e}");
    }

    #[test]
    fn expiry_is_clamped_and_refreshed_at_half() {
        let sdk = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let p = EcsTaskProtection::new(&sdk, "http://127.0.0.1:1/v4/x")
            .with_expiry(Duration::from_secs(100 * 3600));
        assert_eq!(p.expiry_minutes(), 2880);
        assert_eq!(p.refresh_every(), Some(Duration::from_secs(24 * 3600)));
        let p = p.with_expiry(Duration::from_secs(1));
        assert_eq!(p.expiry_minutes(), 1);
    }
}
