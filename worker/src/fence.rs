//! The fence check before every fenced side effect (the push, the report, the board).
//!
//! A build may act while its lease's fence is current ([`BuildStanding::MayAct`]). When it
//! was handed off (a consumer stopped and the next one has not adopted it yet) it waits,
//! polling every [`FENCE_POLL`], up to the configured `fence_wait`.
//!
//! Invariant: [`check_fence`] returns `Ok` only when the lease says the build may act right
//! now; otherwise it fails with `fence-lost`, naming the side effect it refused.

use crate::config::{Config, Inputs};
use crate::wiring::Ports;
use kiro_protocol::{BuildStanding, Failure, FailureClass, build_standing};
use tracing::{info, instrument};

/// How often a build in transit looks again whether it was adopted.
const FENCE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Before a fenced side effect: go on when the build may act; when it is in transit
/// (handed off, adoption pending) wait up to `cfg.fence_wait` for the next consumer to
/// adopt it; fail with `fence-lost` when it is lost for good or the wait runs out.
#[instrument(skip_all, fields(fence = %inputs.fence, before = what))]
pub(crate) async fn check_fence(
    cfg: &Config,
    ports: &Ports,
    inputs: &Inputs,
    what: &str,
) -> Result<(), Failure> {
    let wait: std::time::Duration = cfg.fence_wait.into();
    let give_up = tokio::time::Instant::now() + wait;
    let mut waited = false;
    loop {
        let standing = build_standing(
            ports.lease.as_ref(),
            &inputs.project,
            &inputs.item,
            inputs.fence,
            inputs.build_id.as_ref(),
        )
        .await?;
        let lost = |why: String| {
            Err(Failure::new(
                FailureClass::FenceLost,
                format!(
                    "fence {} of project {} {why}; not doing the {what}",
                    inputs.fence, inputs.project
                ),
            ))
        };
        match standing {
            BuildStanding::MayAct => {
                if waited {
                    info!("adopted by the next consumer; going on");
                }
                return Ok(());
            }
            BuildStanding::Lost => return lost("is no longer current".into()),
            BuildStanding::InTransit if tokio::time::Instant::now() >= give_up => {
                return lost(format!(
                    "was handed off and no consumer adopted this build within {}",
                    humantime::format_duration(wait)
                ));
            }
            BuildStanding::InTransit => {
                if !waited {
                    info!(wait = %humantime::format_duration(wait),
                        "handed off: waiting for the next consumer to adopt this build");
                    waited = true;
                }
                tokio::time::sleep(FENCE_POLL.min(wait)).await;
            }
        }
    }
}
