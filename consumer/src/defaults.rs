//! The consumer's defaults, stated once: `kiro-consumer run`'s flags show and parse these,
//! [`EngineConfig::default`](crate::EngineConfig) and
//! [`RetryPolicy::default`](crate::RetryPolicy) are built from them, the benchmarks run
//! with them, and the Pulumi stack is held to them (its queue's visibility timeout and
//! receive wait, its task's job count: `infra-pulumi/tests/seams.test.ts` reads this file).
//!
//! Invariant: a default the engine uses is written here and nowhere else. Durations are
//! humantime strings (what clap parses; [`duration`] reads them), and the settings derived
//! from the lease TTL are derived by the functions below, for the binary and the engine's
//! own default alike.

use std::time::Duration;

/// `--max-jobs`: jobs in flight at most.
pub const MAX_JOBS: usize = 16;
/// `--receive-wait`: the long poll of a receive (SQS's longest).
pub const RECEIVE_WAIT: &str = "20s";
/// `--receive-gap`: while messages keep arriving, the least time from the start of one
/// receive to the start of the next, so the arrivals in between come in one batch.
pub const RECEIVE_GAP: &str = "5s";
/// `--lease-ttl`: the time-to-live of the consumer's session, which holds all its leases
/// (renewed every third of it).
pub const LEASE_TTL: &str = "60s";
/// `--lease-skew`: the clock skew allowed between consumers.
pub const LEASE_SKEW: &str = "2s";
/// `--visibility`: the message visibility set on receive and on every extension.
pub const VISIBILITY: &str = "5m";
/// `--poll-every`: how often the running builds are polled (one round).
pub const POLL_EVERY: &str = "10s";
/// `--max-attempts`: counted attempts before an item is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;
/// `--retry-base`: the first retry delay.
pub const RETRY_BASE: &str = "30s";
/// `--retry-max`: the longest retry delay.
pub const RETRY_MAX: &str = "15m";
/// `--item-agent-budget`: the agent time one item may use across its attempts (summed
/// from what its builds report); no new attempt starts once it is spent.
pub const ITEM_AGENT_BUDGET: &str = "3h";
/// `--board-every` on a GitHub board: how often the running builds' cards are read (one
/// GraphQL query per 100 builds, against GitHub's hourly rate limit). The embedded board
/// file is read in every poll round.
pub const GITHUB_BOARD_EVERY: &str = "30s";

/// One of the duration defaults above, read.
///
/// # Panics
/// On a string that is not a duration, which the tests of this module rule out.
pub fn duration(default: &str) -> Duration {
    humantime::parse_duration(default).expect("the defaults are durations (tested)")
}

/// How often the session is renewed: a third of its TTL.
pub fn renew_every(lease_ttl: Duration) -> Duration {
    lease_ttl / 3
}

/// How long before a confirmed deadline the engine stops acting: a tenth of the lease
/// TTL, at least 200 ms.
pub fn safety_margin(lease_ttl: Duration) -> Duration {
    (lease_ttl / 10).max(Duration::from_millis(200))
}

/// The longest delay before a message held up by lease contention comes back: the TTL.
pub fn contention_delay(lease_ttl: Duration) -> Duration {
    lease_ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_default_parses() {
        for d in [
            RECEIVE_WAIT,
            RECEIVE_GAP,
            LEASE_TTL,
            LEASE_SKEW,
            VISIBILITY,
            POLL_EVERY,
            RETRY_BASE,
            RETRY_MAX,
            ITEM_AGENT_BUDGET,
            GITHUB_BOARD_EVERY,
        ] {
            assert!(humantime::parse_duration(d).is_ok(), "{d}");
        }
        assert_eq!(duration(VISIBILITY), Duration::from_secs(300));
        assert_eq!(renew_every(duration(LEASE_TTL)), Duration::from_secs(20));
        assert_eq!(safety_margin(duration(LEASE_TTL)), Duration::from_secs(6));
        assert_eq!(
            safety_margin(Duration::from_secs(1)),
            Duration::from_millis(200)
        );
    }
}
