//! Newtypes for every identifier that crosses a boundary.
//!
//! Values from the board are untrusted: they are parsed once, here, into types that can
//! only hold valid values ("parse, don't validate"). A parse error names the field, shows
//! the offending value escaped and truncated, and says which rule it broke. The rules
//! are deliberately stricter than what git or GitHub accept, so that no parsed value can
//! carry a shell metacharacter, a control character, or a path that leaves its folder.
//!
//! Layout: `error` ([`IdError`], quoting, the shared checks), `fifo` (the SQS rule for
//! group and deduplication ids, [`MessageGroup`]), `keys` ([`ProjectKey`],
//! [`ItemId`]), `github` ([`RepoName`], [`BranchName`], [`PrNumber`], [`Login`]), `spec`
//! ([`SpecPath`]) and `runtime` ([`Fence`] and the opaque ids adapters assign).

mod error;
mod fifo;
mod github;
mod keys;
mod newtype;
mod runtime;
mod spec;

pub use error::{IdError, quote_for_display};
pub use fifo::{FIFO_ID_MAX, MessageGroup, check_fifo_id, is_fifo_id_char};
pub use github::{BranchName, Login, PrNumber, RepoName};
pub use keys::{ItemId, ProjectKey};
pub use runtime::{BuildId, DedupId, Fence, MessageId, Receipt};
pub use spec::SpecPath;

#[cfg(test)]
mod tests;
