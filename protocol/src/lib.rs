//! The contract of kiro-codebuild-worker.
//!
//! This crate owns the wire types (the versioned [`Envelope`] carrying a [`WorkItem`]),
//! the newtypes that parse untrusted board values ([`ids`]), the failure taxonomy
//! ([`FailureClass`]), the trace-context carrier, the durable [`JobRecord`], the
//! worker's [`WorkerOutcome`], the ports (traits) every adapter implements, the one
//! [`Secret`] type and the shared environment variable names ([`env`]).
//!
//! Invariant: nothing here performs I/O or names an AWS, SQLite or HTTP type; every
//! adapter (`kiro-backends`, `kiro-local-build`, `kiro-github`) depends on this crate, never
//! the reverse.

pub mod clock;
pub mod env;
pub mod envelope;
pub mod failure;
pub mod ids;
pub mod job;
pub mod outcome;
pub mod ports;
pub mod redact;
pub mod secret;
pub mod trace;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use envelope::{Envelope, EnvelopeError, SCHEMA_VERSION, WorkItem};
pub use failure::{Failure, FailureClass, PortError};
pub use ids::{
    BranchName, BuildId, DedupId, Fence, IdError, ItemId, Login, MessageId, PrNumber, ProjectKey,
    Receipt, RepoName, SpecPath,
};
pub use job::{AttemptRecord, JobRecord, JobState};
pub use outcome::{OutcomeStatus, WorkerOutcome};
pub use ports::board::{Board, BoardItem, BoardStanding, InvalidItem, ItemStatus, StatusChange};
pub use ports::build::{BuildRequest, BuildRunner, BuildState, BuildStatus};
pub use ports::lease::{
    BuildStanding, Cancellation, Lease, LeaseError, LeaseStore, LeaseView, Session, SessionView,
    build_may_act, build_standing, fence_is_current,
};
pub use ports::protection::TaskProtection;
pub use ports::pulls::{CheckReport, PullRequest, PullRequests, Report};
pub use ports::queue::{
    DeadLetter, DeadLetterEntry, Delivery, Destination, DlqListing, DlqSelection, NoProgress,
    OutgoingMessage, QueueDepth, ReplayProgress, ReplayReport, SendOutcome, WorkQueue,
};
pub use secret::Secret;
pub use trace::TraceContext;
