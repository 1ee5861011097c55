//! `TaskProtection`: keep the orchestrator from scaling a busy consumer in.
//!
//! On ECS, autoscaling may stop any task of a service when it scales in; a consumer that
//! holds jobs asks for **task scale-in protection** while it holds them and gives it up
//! when it is idle, so only idle consumers are chosen. Off ECS the port is a no-op.
//!
//! Contract:
//! - `set(true)` asks for protection; once it returns `Ok` the process is protected for
//!   at least [`TaskProtection::refresh_every`] (when that is `Some`), and the caller calls
//!   `set(true)` again before that interval ends for as long as it holds jobs;
//! - `set(false)` gives protection up; calling `set` with the current value again is
//!   harmless (both directions are idempotent);
//! - an error means the state is unknown: the caller logs it and tries again later. A
//!   failure here is never fatal to the jobs — protection only guards against scale-in,
//!   and the job's lease and handoff still keep every job safe if the task is stopped.

use crate::failure::PortError;
use async_trait::async_trait;
use std::time::Duration;

#[async_trait]
pub trait TaskProtection: Send + Sync + std::fmt::Debug {
    /// Turn scale-in protection on (`true`) or off (`false`).
    async fn set(&self, protected: bool) -> Result<(), PortError>;

    /// How often protection must be re-armed while it is wanted (it expires by itself
    /// after a while); `None` when it never expires.
    fn refresh_every(&self) -> Option<Duration> {
        None
    }
}
