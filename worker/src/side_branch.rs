//! The side branch of partial work, as the pipeline uses it: picked up at the start of an
//! attempt ([`pick_up`]), written when the gates still refuse the work ([`keep`]), and
//! deleted once an attempt pushed its work to the pull request's branch
//! ([`drop_merged`]). The naming, the commit message and the look-up are
//! [`crate::steps::partial`]'s.
//!
//! Invariants: the side branch is pushed or deleted only right after a fence check, like
//! the pull request's push (a lost fence ends the run as `fence-lost`); it is never the
//! pull request's branch; a side branch that does not descend from the branch's tip is
//! neither used nor deleted; a failure to keep or delete it is reported (kept) or only
//! warned (deleted), never turned into the attempt's failure.

use crate::config::{Config, Inputs};
use crate::fence::check_fence;
use crate::run_state::{RunState, blocking, exclusions};
use crate::steps::brief::FailureBrief;
use crate::steps::token::TokenSource;
use crate::steps::{git, partial, spec};
use crate::tasks;
use crate::wiring::Ports;
use kiro_protocol::{BranchName, Failure};
use std::path::Path;
use tracing::{info, instrument, warn};

/// Look for the previous attempt's side branch: when it descends from the pull
/// request's tip, take its files into the checkout and its brief for the first prompt;
/// otherwise leave it and say so.
#[instrument(skip_all, fields(side = %side))]
pub(crate) async fn pick_up(
    inputs: &Inputs,
    checkout: &Path,
    side: &BranchName,
    tokens: &dyn TokenSource,
    st: &mut RunState,
) -> Result<(), Failure> {
    let token = tokens.token().await?;
    let (dir, name) = (checkout.to_owned(), side.clone());
    let found = blocking(move || {
        let tip = git::head(&dir)?;
        partial::look(&dir, &name, tip, token.as_ref())
    })
    .await?;
    let Some(found) = found else {
        return Ok(());
    };
    if !found.usable {
        info!(commit = %found.tip, "the side branch does not descend from the branch's tip: ignored");
        st.side_notes.push(format!(
            "`{side}` (at `{}`) was ignored: it is not work on top of the tip of `{}` (work this attempt keeps aside replaces it)",
            found.tip, inputs.branch
        ));
        st.side_found = Some(found);
        return Ok(());
    }
    let (dir, tip) = (checkout.to_owned(), found.tip);
    blocking(move || git::take_files_of(&dir, tip)).await?;
    let file = format!("{}/{}", inputs.spec, spec::TASKS);
    // The tasks as the side branch left them (unreadable: as on the branch's tip).
    if let Ok(text) = spec::read_doc(checkout, &inputs.spec, spec::TASKS)
        && let Ok(t) = tasks::parse_checked(&text, &file)
    {
        st.after = t;
    }
    info!(commit = %found.tip, brief = found.brief.is_some(), "started from the side branch");
    st.side_notes.push(format!(
        "started from `{side}` (at `{}`), the previous attempt's work",
        found.tip
    ));
    let brief = found.brief.clone().unwrap_or_else(|| FailureBrief {
        text: "The previous attempt's work failed the build's checks (its brief was not found)."
            .to_owned(),
    });
    st.resume = Some((brief, side.clone()));
    st.side_found = Some(found);
    Ok(())
}

/// Keep the checkout's work on the side branch (never the pull request's branch): one
/// commit on the branch's tip, carrying the failure brief, force-pushed under the fence.
#[allow(clippy::too_many_arguments)]
#[instrument(skip_all, fields(side = %side))]
pub(crate) async fn keep(
    cfg: &Config,
    ports: &Ports,
    inputs: &Inputs,
    checkout: &Path,
    side: &BranchName,
    tokens: &dyn TokenSource,
    st: &mut RunState,
    failure: &Failure,
) -> Result<(), Failure> {
    let message = partial::side_message(inputs, failure.class, st.brief.as_ref());
    // Resolved right after the checkout, before anything is kept aside.
    let settings = st
        .settings
        .clone()
        .unwrap_or_else(|| crate::repo_settings::deployment(cfg));
    let exclude = exclusions(cfg, &settings, checkout);
    let (dir, name) = (checkout.to_owned(), side.clone());
    let (author, email) = (cfg.git_author_name.clone(), cfg.git_author_email.clone());
    let committed =
        blocking(move || git::commit_beside(&dir, &name, &message, &author, &email, &exclude))
            .await;
    let oid = match committed {
        Ok(Some(o)) => o,
        Ok(None) => {
            info!("no work to keep");
            return Ok(());
        }
        Err(f) => {
            warn!(reason = %f.reason, "cannot commit the partial work");
            st.side_notes.push(format!(
                "the work could not be kept on `{side}`: {}",
                f.reason
            ));
            return Ok(());
        }
    };
    check_fence(cfg, ports, inputs, "push").await?;
    let token = tokens.token().await?;
    let (dir, name) = (checkout.to_owned(), side.clone());
    match blocking(move || git::force_push(&dir, &name, token.as_ref())).await {
        Ok(()) => {
            info!(commit = %oid, "partial work kept on the side branch");
            st.side_notes.push(format!(
                "the work of this attempt is kept on `{side}` (commit `{oid}`); the next attempt starts from it"
            ));
        }
        Err(f) => {
            warn!(reason = %f.reason, "cannot push the side branch");
            st.side_notes.push(format!(
                "the work could not be pushed to `{side}`: {}",
                f.reason
            ));
        }
    }
    Ok(())
}

/// After a successful push: delete the side branch whose work the branch now holds,
/// under the fence; a failure to delete only warns.
pub(crate) async fn drop_merged(
    cfg: &Config,
    ports: &Ports,
    inputs: &Inputs,
    checkout: &Path,
    tokens: &dyn TokenSource,
    st: &mut RunState,
) -> Result<(), Failure> {
    let Some(found) = st.side_found.as_ref().filter(|f| f.usable) else {
        return Ok(());
    };
    let side = found.branch.clone();
    check_fence(cfg, ports, inputs, "delete the side branch").await?;
    let token = tokens.token().await?;
    let (dir, name) = (checkout.to_owned(), side.clone());
    match blocking(move || git::delete_remote(&dir, &name, token.as_ref())).await {
        Ok(()) => {
            info!(%side, "side branch deleted: its work is on the branch");
            st.side_notes
                .push(format!("`{side}` was deleted: its work is in this commit"));
        }
        Err(f) => warn!(%side, reason = %f.reason, "cannot delete the side branch"),
    }
    Ok(())
}
