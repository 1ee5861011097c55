//! The side branch of partial work: where the work of an attempt the gates did not
//! accept is kept ([`SIDE_PREFIX`]`<branch>`), and how the next attempt finds it.
//!
//! Invariants:
//! - the side branch's name is derived from the pull request's branch alone and
//!   validated as a branch name ([`side_branch`]); the pull request's branch is never
//!   written here — it receives only gated work (the pipeline's push);
//! - a side commit is one commit on the pull request's tip, its message carrying the
//!   failure brief ([`side_message`]), so the next attempt reads why it failed from the
//!   branch itself;
//! - a side branch is used only when it descends from the pull request's current tip
//!   ([`Found::usable`]); otherwise it is left alone and the attempt says so.
//!
//! The pipeline checks the fence right before every push or delete of a side branch.

use crate::config::Inputs;
use crate::steps::brief::{self, FailureBrief};
use crate::steps::git;
use git2::Oid;
use kiro_protocol::{BranchName, Failure, FailureClass, Secret};
use std::path::Path;

/// The prefix of every side branch.
pub const SIDE_PREFIX: &str = "kiro/partial/";

/// The side branch of `branch`: `kiro/partial/<branch>`, validated as a branch name
/// (by the protocol's rules and git's).
pub fn side_branch(branch: &BranchName) -> Result<BranchName, Failure> {
    let raw = format!("{SIDE_PREFIX}{branch}");
    let bad = |why: String| {
        Failure::new(
            FailureClass::PermanentInput,
            format!("no side branch for {branch}: {why}"),
        )
    };
    let name = BranchName::parse(&raw).map_err(|e| bad(e.to_string()))?;
    if !git2::Reference::is_valid_name(&format!("refs/heads/{name}")) {
        return Err(bad(format!("{raw} is not a valid git branch name")));
    }
    Ok(name)
}

/// The side commit's message: what it is, the failure brief, the item's trailers.
pub fn side_message(inputs: &Inputs, class: FailureClass, brief: Option<&FailureBrief>) -> String {
    let feature = inputs.spec.feature();
    let brief = brief.map(|b| format!("{}\n\n", brief::framed(b)));
    format!(
        "wip({feature}): partial work on {} (attempt {}, {class})\n\n\
Work the build's checks did not accept, kept by kiro-worker so the next attempt starts\n\
from it. It reaches {} only when an attempt passes the checks.\n\n\
{}Kiro-Item: {}\nKiro-Attempt: {}\nKiro-Fence: {}\n",
        inputs.spec,
        inputs.attempt,
        inputs.branch,
        brief.unwrap_or_default(),
        inputs.item,
        inputs.attempt,
        inputs.fence
    )
}

/// A side branch found on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub branch: BranchName,
    pub tip: Oid,
    /// It descends from the pull request's current tip: its work can be started from.
    pub usable: bool,
    /// The failure brief its tip's message carries.
    pub brief: Option<FailureBrief>,
}

/// Fetch the side branch `side` into the checkout at `dir` (whose HEAD is the pull
/// request's tip `pr_tip`) and say what it is; `None` when the remote has none.
pub fn look(
    dir: &Path,
    side: &BranchName,
    pr_tip: Oid,
    token: Option<&Secret>,
) -> Result<Option<Found>, Failure> {
    let Some(tip) = git::fetch_branch(dir, side, token)? else {
        return Ok(None);
    };
    let usable = tip != pr_tip && git::descends_from(dir, tip, pr_tip)?;
    let brief = brief::find_in(&git::message(dir, tip)?);
    Ok(Some(Found {
        branch: side.clone(),
        tip,
        usable,
        brief,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_branches_are_derived_and_validated() {
        let b = BranchName::parse("feature/subtract").unwrap();
        assert_eq!(
            side_branch(&b).unwrap().as_str(),
            "kiro/partial/feature/subtract"
        );
        // Valid for the protocol, too long once prefixed.
        let long = BranchName::parse(&"a".repeat(195)).unwrap();
        let e = side_branch(&long).unwrap_err();
        assert_eq!(e.class, FailureClass::PermanentInput);
        assert!(
            e.reason.starts_with("no side branch for aaa"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn the_side_message_carries_the_brief_and_the_trailers() {
        let i = Inputs::sample(2);
        let b = FailureBrief {
            text: "The build's checks failed: coverage-below: 60% < 80%\n- src/a.js".into(),
        };
        let m = side_message(&i, FailureClass::CoverageBelow, Some(&b));
        assert!(
            m.starts_with(
                "wip(subtract): partial work on .kiro/specs/subtract (attempt 2, coverage-below)\n\n"
            ),
            "{m}"
        );
        assert_eq!(brief::find_in(&m), Some(b));
        assert!(
            m.ends_with("Kiro-Item: CALC-1\nKiro-Attempt: 2\nKiro-Fence: 3\n"),
            "{m}"
        );
    }
}
