//! Git with `git2`: fresh clone and branch checkout, commit, and push.
//!
//! The checkout fetches only the item's branch, shallow ([`CHECKOUT_DEPTH`] commits): the
//! agent needs the branch's files, not the repository's history, and a commit on top of
//! the fetched tip pushes like any other (the remote has its parent). libgit2 fetches
//! shallow over the network transports only (https, ssh, git://); from a local path or
//! `file://` remote (the quick start's forge) it fetches the one branch whole.
//!
//! Invariant: the checkout is always a fresh clone of the remote branch; the push sends
//! exactly `refs/heads/<branch>` without force, so a branch that moved on the remote is
//! a `push-conflict`, never an overwrite. Only a side branch of partial work
//! ([`crate::steps::partial`]) is force-pushed ([`force_push`]) or deleted
//! ([`delete_remote`]); its commit is made beside HEAD ([`commit_beside`]), so the
//! pull request's branch never moves to it. The token, when given, only ever reaches
//! git2's credential callback.

use git2::{
    BranchType, Cred, ErrorCode, FetchOptions, IndexAddOption, Oid, PushOptions, RemoteCallbacks,
    Repository, Signature,
};
use kiro_protocol::Secret;
use kiro_protocol::{BranchName, Failure, FailureClass};
use std::path::{Path, PathBuf};

fn callbacks(token: Option<&Secret>) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    if let Some(t) = token {
        cb.credentials(move |_url, _user, _allowed| {
            Cred::userpass_plaintext("x-access-token", t.expose())
        });
    }
    cb
}

fn classify(e: &git2::Error, what: &str) -> Failure {
    let class = match e.code() {
        ErrorCode::Auth | ErrorCode::Certificate => FailureClass::Auth,
        _ => FailureClass::Transient,
    };
    Failure::new(class, format!("{what}: {}", e.message()))
}

fn local(e: git2::Error, what: &str) -> Failure {
    Failure::new(FailureClass::Internal, format!("{what}: {}", e.message()))
}

/// How many commits of the branch the checkout fetches: the tip is all the agent and the
/// push need (libgit2 marks the clone shallow; nothing reads older history).
pub const CHECKOUT_DEPTH: i32 = 1;

/// Clone `url` into `dest` (removed first): fetch only `branch`, [`CHECKOUT_DEPTH`] deep,
/// and check it out.
/// Returns the checked-out commit.
pub fn checkout(
    url: &str,
    dest: &Path,
    branch: &BranchName,
    token: Option<&Secret>,
) -> Result<Oid, Failure> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| {
            Failure::new(
                FailureClass::Internal,
                format!("cannot clear {}: {e}", dest.display()),
            )
        })?;
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::new(
                FailureClass::Internal,
                format!("cannot create {}: {e}", parent.display()),
            )
        })?;
    }
    let repo = Repository::init(dest).map_err(|e| local(e, "cannot create the checkout"))?;
    let mut remote = repo
        .remote("origin", url)
        .map_err(|e| local(e, "cannot add the origin remote"))?;
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(token));
    if !is_local(url) {
        fo.depth(CHECKOUT_DEPTH);
    }
    // Only the item's branch; the refspec is also the remote's configured fetch refspec
    // would be, so `origin/<branch>` is what a full clone would have.
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    remote
        .fetch(&[refspec.as_str()], Some(&mut fo), None)
        .map_err(|e| classify(&e, "clone failed"))?;
    drop(remote);
    let remote_ref = format!("refs/remotes/origin/{branch}");
    let commit = match repo.find_reference(&remote_ref) {
        Ok(r) => r.peel_to_commit().map_err(|e| local(e, "bad branch tip"))?,
        Err(e) if e.code() == ErrorCode::NotFound => {
            return Err(Failure::new(
                FailureClass::PermanentInput,
                format!("branch {branch} not found on the remote"),
            ));
        }
        Err(e) => return Err(local(e, "cannot read remote branch")),
    };
    let mut local_branch = repo
        .branch(branch.as_str(), &commit, true)
        .map_err(|e| local(e, "cannot create local branch"))?;
    local_branch
        .set_upstream(Some(&format!("origin/{branch}")))
        .map_err(|e| local(e, "cannot set upstream"))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    repo.checkout_tree(commit.as_object(), Some(&mut co))
        .map_err(|e| local(e, "checkout failed"))?;
    repo.set_head(&format!("refs/heads/{branch}"))
        .map_err(|e| local(e, "cannot set HEAD"))?;
    Ok(commit.id())
}

/// Whether libgit2 reaches `url` through its local transport (a path or `file://`), which
/// cannot fetch shallow.
pub fn is_local(url: &str) -> bool {
    if url.starts_with("file://") {
        return true;
    }
    // `scheme://…` is a network transport; `user@host:path` is ssh's short form.
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'));
    !url.contains("://") && !scp_like
}

/// Paths (inside the checkout) that must never be committed: `.0` by path (and
/// everything below it), `.1` by glob (a path or one of its parents matching).
#[derive(Debug, Clone, Default)]
pub struct Exclusions(pub Vec<PathBuf>, pub Vec<crate::repo_settings::RepoPattern>);

/// Stage every change (new, modified, deleted; `.gitignore` honoured) except `exclude`,
/// and commit on HEAD. `None` when nothing changed.
pub fn commit_all(
    dir: &Path,
    message: &str,
    name: &str,
    email: &str,
    exclude: &Exclusions,
) -> Result<Option<Oid>, Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    commit_staged(&repo, message, name, email, exclude, Some("HEAD"))
}

fn signature(name: &str, email: &str) -> Result<Signature<'static>, Failure> {
    Signature::now(name, email).map_err(|e| {
        Failure::new(
            FailureClass::PermanentInput,
            format!("invalid git author: {}", e.message()),
        )
    })
}

/// Stage every change except `exclude`: the tree written, or `None` when it is HEAD's.
fn stage(repo: &Repository, exclude: &Exclusions) -> Result<Option<Oid>, Failure> {
    let mut index = repo.index().map_err(|e| local(e, "cannot read index"))?;
    let skip = |path: &Path, _spec: &[u8]| -> i32 {
        if crate::repo_settings::pattern::excluded(&exclude.0, &exclude.1, path) {
            1
        } else {
            0
        }
    };
    index
        .add_all(["*"], IndexAddOption::DEFAULT, Some(&mut |p, s| skip(p, s)))
        .map_err(|e| local(e, "cannot stage changes"))?;
    index
        .update_all(["*"], Some(&mut |p, s| skip(p, s)))
        .map_err(|e| local(e, "cannot stage deletions"))?;
    index.write().map_err(|e| local(e, "cannot write index"))?;
    let tree_id = index
        .write_tree()
        .map_err(|e| local(e, "cannot write tree"))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| local(e, "cannot read HEAD"))?;
    Ok((head.tree_id() != tree_id).then_some(tree_id))
}

/// The commit HEAD names.
pub fn head(dir: &Path) -> Result<Oid, Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    repo.head()
        .and_then(|h| h.peel_to_commit())
        .map(|c| c.id())
        .map_err(|e| local(e, "cannot read HEAD"))
}

/// Push `refs/heads/<branch>` to `origin` without force.
pub fn push(dir: &Path, branch: &BranchName, token: Option<&Secret>) -> Result<(), Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    // The branch must exist locally (it does after `checkout`).
    repo.find_branch(branch.as_str(), BranchType::Local)
        .map_err(|e| local(e, "local branch missing"))?;
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    push_spec(&repo, &spec, branch.as_str(), token)
}

/// Push the local `refs/heads/<branch>` over the remote's with force (a side branch the
/// worker owns; never the pull request's branch).
pub fn force_push(dir: &Path, branch: &BranchName, token: Option<&Secret>) -> Result<(), Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
    push_spec(&repo, &spec, branch.as_str(), token)
}

/// Delete `refs/heads/<branch>` on the remote.
pub fn delete_remote(
    dir: &Path,
    branch: &BranchName,
    token: Option<&Secret>,
) -> Result<(), Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let spec = format!(":refs/heads/{branch}");
    push_spec(&repo, &spec, branch.as_str(), token)
}

/// Fetch `refs/heads/<branch>` of `origin` ([`CHECKOUT_DEPTH`] deep over a network
/// transport) into `refs/remotes/origin/<branch>`: its tip, or `None` when the remote
/// has no such branch.
pub fn fetch_branch(
    dir: &Path,
    branch: &BranchName,
    token: Option<&Secret>,
) -> Result<Option<Oid>, Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| local(e, "no origin remote"))?;
    let url = remote.url().unwrap_or_default().to_owned();
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(token));
    if !is_local(&url) {
        fo.depth(CHECKOUT_DEPTH);
    }
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    remote
        .fetch(&[refspec.as_str()], Some(&mut fo), None)
        .map_err(|e| classify(&e, &format!("cannot fetch {branch}")))?;
    drop(remote);
    match repo.find_reference(&format!("refs/remotes/origin/{branch}")) {
        Ok(r) => Ok(Some(
            r.peel_to_commit()
                .map_err(|e| local(e, "bad branch tip"))?
                .id(),
        )),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(local(e, "cannot read the fetched branch")),
    }
}

/// Whether `tip` is `commit` or one of its first-parent ancestors, among those present
/// (a shallow fetch has the commit, which names its parent, and the checkout has `tip`).
pub fn descends_from(dir: &Path, commit: Oid, tip: Oid) -> Result<bool, Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let odb = repo
        .odb()
        .map_err(|e| local(e, "cannot open the object store"))?;
    let mut at = commit;
    for _ in 0..1000 {
        if at == tip {
            return Ok(true);
        }
        match first_parent(&odb, at) {
            Some(p) => at = p,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// The first parent the commit object `oid` names, read from the object itself: a
/// shallow clone's graft hides the parents of its boundary commits from `Commit`.
fn first_parent(odb: &git2::Odb<'_>, oid: Oid) -> Option<Oid> {
    let obj = odb.read(oid).ok()?;
    if obj.kind() != git2::ObjectType::Commit {
        return None;
    }
    let text = std::str::from_utf8(obj.data()).ok()?;
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("parent "))
        .and_then(|h| Oid::from_str(h.trim()).ok())
}

/// The full message of `commit`.
pub fn message(dir: &Path, commit: Oid) -> Result<String, Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let c = repo
        .find_commit(commit)
        .map_err(|e| local(e, "cannot read the commit"))?;
    Ok(String::from_utf8_lossy(c.message_bytes()).into_owned())
}

/// Make the working tree and the index `commit`'s files, HEAD staying where it is: the
/// next commit on HEAD carries them.
pub fn take_files_of(dir: &Path, commit: Oid) -> Result<(), Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let c = repo
        .find_commit(commit)
        .map_err(|e| local(e, "cannot read the commit"))?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force().remove_untracked(true);
    repo.checkout_tree(c.as_object(), Some(&mut co))
        .map_err(|e| local(e, "cannot check the files out"))
}

/// Stage every change except `exclude` and commit it on top of HEAD, moving `update_ref`
/// (HEAD, or nothing) to it. `None` when nothing changed.
fn commit_staged(
    repo: &Repository,
    message: &str,
    name: &str,
    email: &str,
    exclude: &Exclusions,
    update_ref: Option<&str>,
) -> Result<Option<Oid>, Failure> {
    let Some(tree_id) = stage(repo, exclude)? else {
        return Ok(None);
    };
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| local(e, "cannot read HEAD"))?;
    let tree = repo
        .find_tree(tree_id)
        .map_err(|e| local(e, "cannot find tree"))?;
    let sig = signature(name, email)?;
    let oid = repo
        .commit(update_ref, &sig, &sig, message, &tree, &[&head])
        .map_err(|e| local(e, "commit failed"))?;
    Ok(Some(oid))
}

/// Stage every change except `exclude` (as [`commit_all`]) and commit it on top of
/// HEAD into `refs/heads/<branch>` (created or moved), HEAD staying where it is. `None`
/// when nothing changed.
pub fn commit_beside(
    dir: &Path,
    branch: &BranchName,
    message: &str,
    name: &str,
    email: &str,
    exclude: &Exclusions,
) -> Result<Option<Oid>, Failure> {
    let repo = Repository::open(dir).map_err(|e| local(e, "cannot open checkout"))?;
    let Some(oid) = commit_staged(&repo, message, name, email, exclude, None)? else {
        return Ok(None);
    };
    repo.reference(
        &format!("refs/heads/{branch}"),
        oid,
        true,
        "kiro-worker: work the gates did not accept",
    )
    .map_err(|e| local(e, "cannot name the side branch"))?;
    Ok(Some(oid))
}

fn push_spec(
    repo: &Repository,
    spec: &str,
    branch: &str,
    token: Option<&Secret>,
) -> Result<(), Failure> {
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| local(e, "no origin remote"))?;
    let rejected = std::cell::RefCell::new(None::<String>);
    let mut cb = callbacks(token);
    cb.push_update_reference(|refname, status| {
        if let Some(msg) = status {
            *rejected.borrow_mut() = Some(format!("{refname}: {msg}"));
        }
        Ok(())
    });
    let mut po = PushOptions::new();
    po.remote_callbacks(cb);
    let result = remote.push(&[spec], Some(&mut po));
    drop(po);
    if let Err(e) = result {
        let msg = e.message().to_ascii_lowercase();
        if e.code() == ErrorCode::NotFastForward
            || msg.contains("fast-forward")
            || msg.contains("fastforward")
            || msg.contains("not present locally")
        {
            return Err(Failure::new(
                FailureClass::PushConflict,
                format!(
                    "push rejected: branch {branch} moved on the remote ({})",
                    e.message()
                ),
            ));
        }
        return Err(classify(&e, "push failed"));
    }
    if let Some(msg) = rejected.into_inner() {
        let lower = msg.to_ascii_lowercase();
        let class = if lower.contains("fast-forward")
            || lower.contains("fetch first")
            || lower.contains("stale")
        {
            FailureClass::PushConflict
        } else {
            FailureClass::BuildFailed
        };
        return Err(Failure::new(class, format!("push rejected: {msg}")));
    }
    Ok(())
}
