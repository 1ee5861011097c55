//! Identifiers the system assigns while it runs, never read from the board: the lease's
//! [`Fence`], and the opaque [`BuildId`], [`MessageId`], [`Receipt`] and [`DedupId`] an
//! adapter hands back.
//!
//! Invariant: opaque ids are carried as given and compared whole; nothing parses them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A fencing token: bumped by every lease acquire, never reused for a project.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Fence(pub u64);

impl fmt::Display for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! opaque_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// A build's id as its runner names it (CodeBuild's `project:uuid`, or a local id).
    BuildId
);
opaque_id!(
    /// A queue message id, assigned by the queue on send.
    MessageId
);
opaque_id!(
    /// The handle of one receive of a message; it changes on every receive.
    Receipt
);
opaque_id!(
    /// A FIFO deduplication id (at most 128 characters).
    DedupId
);
