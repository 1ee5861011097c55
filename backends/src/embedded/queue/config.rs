//! The embedded queue's settings and SQS's limits it keeps.

use std::time::Duration;

/// The longest a message may stay invisible after one receive (SQS: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// How often `receive` looks again while it waits for a message.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Settings of an embedded queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a received message stays invisible (default 30 s).
    pub visibility_timeout: Duration,
    /// How long a deduplication id is remembered (default 5 minutes).
    pub dedup_window: Duration,
    /// Redrive safety net: a message received more than this many times goes to the
    /// DLQ on its next receive instead of being delivered (default 100).
    pub max_receive_count: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout: Duration::from_secs(30),
            dedup_window: Duration::from_secs(5 * 60),
            max_receive_count: 100,
        }
    }
}
