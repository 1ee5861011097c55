//! Steering sync: copy the organisation's central steering files (a git repository at an
//! optional ref, or a local directory) into the checkout's `.kiro/steering/`, and read
//! the steering files for the agent's prompt.
//!
//! Files are copied byte for byte (Kiro reads their front matter: `inclusion:
//! always|fileMatch|manual|auto`, `fileMatchPattern`). The manifest
//! `.kiro/steering/.kiro-central-manifest.json` lists the files that came from the central
//! source, with their git blob ids, so a file removed centrally is removed locally and a
//! changed one is updated.
//!
//! Invariants: a steering file of the repository's own is never written or removed — a
//! file is the central source's only when the manifest lists it AND its content still has
//! the listed blob id (so a hand-edited manifest, or a synced file the repository changed,
//! cannot make the sync overwrite or delete the repository's work); a name clash keeps
//! the repository's file and logs a warning; only
//! plain `*.md` names (`[A-Za-z0-9._-]`, no leading dot, no path) are ever written or
//! removed, whether they come from the source or from the (repository-controlled)
//! manifest; nothing is written through a symlink; every file of the checkout (steering
//! files, the manifest) is read through [`crate::checkout_fs`] (inside the checkout,
//! regular files, bounded), and one that cannot be read is kept as the repository's; a source file that is a symlink, is
//! over [`MAX_FILE_BYTES`] or has a bad name is skipped with a warning.

use crate::checkout_fs;
use git2::{ObjectType, Oid, build::RepoBuilder};
use kiro_protocol::{Failure, FailureClass};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The steering folder, relative to the checkout.
pub const STEERING_DIR: &str = ".kiro/steering";
/// The manifest's name inside [`STEERING_DIR`].
pub const MANIFEST: &str = ".kiro-central-manifest.json";
/// The largest steering file copied.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Where the central steering files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SteeringSource {
    /// A git repository (`https://…`, `ssh://…`, `git@…`, `file://…`), at `reference`
    /// (branch, tag or commit) or its default branch.
    Git {
        url: String,
        reference: Option<String>,
    },
    /// A local directory.
    Dir(PathBuf),
}

impl SteeringSource {
    /// `URL[#ref]` for git, anything else a local directory.
    pub fn parse(s: &str) -> Result<SteeringSource, Failure> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Failure::new(
                FailureClass::PermanentInput,
                "KIRO_STEERING_SOURCE is empty",
            ));
        }
        let is_git = s.contains("://") || s.starts_with("git@");
        if !is_git {
            return Ok(SteeringSource::Dir(PathBuf::from(s)));
        }
        let (url, reference) = match s.rsplit_once('#') {
            Some((u, r)) if !r.is_empty() => (u, Some(r.to_owned())),
            Some((u, _)) => (u, None),
            None => (s, None),
        };
        Ok(SteeringSource::Git {
            url: url.to_owned(),
            reference,
        })
    }

    /// The source as written into the manifest: no user or password of a URL.
    pub fn display(&self) -> String {
        match self {
            SteeringSource::Dir(p) => p.display().to_string(),
            SteeringSource::Git { url, reference } => {
                let url = match url.split_once("://") {
                    Some((scheme, rest)) => match rest.split_once('@') {
                        Some((_, host))
                            if !host.contains('/') || rest.find('@') < rest.find('/') =>
                        {
                            format!("{scheme}://{host}")
                        }
                        _ => url.clone(),
                    },
                    None => url.clone(),
                };
                match reference {
                    Some(r) => format!("{url}#{r}"),
                    None => url,
                }
            }
        }
    }
}

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    /// The git blob id of the content as copied.
    pub sha: String,
}

/// `.kiro/steering/.kiro-central-manifest.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub source: String,
    #[serde(default)]
    pub revision: Option<String>,
    pub files: Vec<ManifestFile>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Central files not copied because the repository has its own file of that name.
    pub kept_local: Vec<String>,
    /// Source files skipped (bad name, symlink, too large).
    pub skipped: Vec<String>,
    /// The source's commit, for a git source.
    pub revision: Option<String>,
}

impl SyncReport {
    /// The sync changed files in the checkout.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

/// A plain steering file name: `[A-Za-z0-9._-]+.md`, no leading dot.
pub fn valid_name(name: &str) -> bool {
    name.len() > 3
        && name.len() <= 255
        && name.ends_with(".md")
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn internal(what: String) -> Failure {
    Failure::new(FailureClass::Internal, what)
}

fn blob_id(bytes: &[u8]) -> Result<String, Failure> {
    Oid::hash_object(ObjectType::Blob, bytes)
        .map(|o| o.to_string())
        .map_err(|e| internal(format!("cannot hash a steering file: {}", e.message())))
}

/// Fetch a git source into `into`; returns the folder holding the files and the commit.
fn fetch_git(url: &str, reference: Option<&str>, into: &Path) -> Result<String, Failure> {
    let bad = |what: &str, e: git2::Error| {
        let class = if e.code() == git2::ErrorCode::Auth {
            FailureClass::Auth
        } else {
            FailureClass::Transient
        };
        Failure::new(class, format!("steering source: {what}: {}", e.message()))
    };
    let repo = RepoBuilder::new()
        .clone(url, into)
        .map_err(|e| bad("clone failed", e))?;
    let commit = match reference {
        None => repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| bad("no default branch", e))?,
        Some(r) => {
            let obj = repo
                .revparse_single(&format!("origin/{r}"))
                .or_else(|_| repo.revparse_single(r))
                .map_err(|_| {
                    Failure::new(
                        FailureClass::PermanentInput,
                        format!("steering source: ref {r:?} not found"),
                    )
                })?;
            let commit = obj
                .peel_to_commit()
                .map_err(|e| bad("ref is not a commit", e))?;
            let mut co = git2::build::CheckoutBuilder::new();
            co.force();
            repo.checkout_tree(commit.as_object(), Some(&mut co))
                .map_err(|e| bad("checkout failed", e))?;
            repo.set_head_detached(commit.id())
                .map_err(|e| bad("checkout failed", e))?;
            commit
        }
    };
    Ok(commit.id().to_string())
}

/// The central files (name → content) under `root` (its `.kiro/steering/` when it has
/// one, else its top level, without `README.md`).
fn central_files(
    root: &Path,
    report: &mut SyncReport,
) -> Result<BTreeMap<String, Vec<u8>>, Failure> {
    let nested = root.join(STEERING_DIR);
    let (dir, skip_readme) = match std::fs::symlink_metadata(&nested) {
        Ok(m) if m.is_dir() => (nested, false),
        _ => (root.to_owned(), true),
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        Failure::new(
            FailureClass::PermanentInput,
            format!("steering source {} cannot be read: {e}", dir.display()),
        )
    })?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| internal(format!("cannot list the steering source: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".md") || (skip_readme && name.eq_ignore_ascii_case("README.md")) {
            continue;
        }
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(|e| internal(format!("cannot stat {name}: {e}")))?;
        let problem = if !valid_name(&name) {
            Some("a name outside [A-Za-z0-9._-]")
        } else if !meta.is_file() {
            Some("not a regular file")
        } else if meta.len() > MAX_FILE_BYTES {
            Some("larger than 256 KiB")
        } else {
            None
        };
        if let Some(p) = problem {
            warn!(file = %name, problem = p, "skipping a central steering file");
            report.skipped.push(name);
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .map_err(|e| internal(format!("cannot read steering file {name}: {e}")))?;
        check_front_matter(&name, &bytes);
        out.insert(name, bytes);
    }
    Ok(out)
}

fn check_front_matter(name: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let fm = FrontMatter::parse(&text);
    match fm.inclusion.as_deref() {
        None | Some("always" | "manual" | "auto") => {}
        Some("fileMatch") if fm.pattern.is_none() => {
            warn!(file = %name, "steering file has inclusion: fileMatch but no fileMatchPattern");
        }
        Some("fileMatch") => {}
        Some(other) => warn!(file = %name, inclusion = %other, "unknown steering inclusion"),
    }
}

/// A steering file's front matter (what the worker needs of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontMatter {
    pub inclusion: Option<String>,
    /// `fileMatchPattern` (or the legacy `globs`), as written.
    pub pattern: Option<String>,
}

impl FrontMatter {
    /// The front matter of `text` and the body after it.
    pub fn split(text: &str) -> (FrontMatter, &str) {
        let t = text.trim_start_matches('\u{feff}');
        let Some(rest) = t
            .strip_prefix("---\n")
            .or_else(|| t.strip_prefix("---\r\n"))
        else {
            return (FrontMatter::default(), text);
        };
        let mut fm = FrontMatter::default();
        let mut offset = 0;
        for line in rest.split_inclusive('\n') {
            offset += line.len();
            let l = line.trim_end_matches(['\n', '\r']);
            if l.trim_end() == "---" {
                return (fm, &rest[offset..]);
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim().trim_matches(['"', '\'']).to_owned();
                match k.trim() {
                    "inclusion" => fm.inclusion = Some(v),
                    "fileMatchPattern" | "globs" => fm.pattern = Some(v),
                    _ => {}
                }
            }
        }
        (FrontMatter::default(), text)
    }

    pub fn parse(text: &str) -> FrontMatter {
        Self::split(text).0
    }

    /// Kiro includes the file in every interaction (`always`, or no inclusion at all).
    pub fn always(&self) -> bool {
        self.inclusion.as_deref().is_none_or(|i| i == "always")
    }
}

/// `dir` must be a real directory (or absent): never write through a symlink.
fn no_symlink(dir: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() => Err(Failure::new(
            FailureClass::PermanentInput,
            format!(
                "{} is a symlink or not a folder; not syncing steering",
                dir.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// The local file `current` is the central source's to replace or remove: the manifest
/// lists it (`sha`) and its content is still what the sync wrote.
fn owned(sha: Option<&str>, current: &[u8]) -> Result<bool, Failure> {
    match sha {
        None => Ok(false),
        Some(sha) => Ok(blob_id(current)? == sha),
    }
}

/// The largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The largest local (repository) steering file the sync reads to compare; a larger one
/// is kept as the repository's.
const MAX_LOCAL_BYTES: u64 = 16 * 1024 * 1024;

/// The most steering files read for the prompt (sorted by name; the rest are ignored).
pub const MAX_PROMPT_FILES: usize = 200;

fn read_manifest(checkout: &Path) -> Manifest {
    let rel = Path::new(STEERING_DIR).join(MANIFEST);
    match checkout_fs::read_confined(checkout, &rel, MAX_MANIFEST_BYTES) {
        Err(e) if e.is_missing() => Manifest::default(),
        Err(e) => {
            warn!(error = %e, "unreadable steering manifest: treating every steering file as the repository's");
            Manifest::default()
        }
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            warn!(error = %e, "unreadable steering manifest: treating every steering file as the repository's");
            Manifest::default()
        }),
    }
}

/// Sync `source` into `<checkout>/.kiro/steering/`.
#[tracing::instrument(skip_all, fields(source = %source.display()))]
pub fn sync(source: &SteeringSource, checkout: &Path) -> Result<SyncReport, Failure> {
    let mut report = SyncReport::default();
    let tmp;
    let root = match source {
        SteeringSource::Dir(d) => d.clone(),
        SteeringSource::Git { url, reference } => {
            tmp = tempfile::Builder::new()
                .prefix("kiro-steering-")
                .tempdir()
                .map_err(|e| internal(format!("cannot create a temp dir: {e}")))?;
            let dest = tmp.path().join("src");
            report.revision = Some(fetch_git(url, reference.as_deref(), &dest)?);
            dest
        }
    };
    let central = central_files(&root, &mut report)?;
    no_symlink(&checkout.join(".kiro"))?;
    let dir = checkout.join(STEERING_DIR);
    no_symlink(&dir)?;
    let manifest_path = dir.join(MANIFEST);
    // Never read or write through a symlink, a FIFO (a write would block), a device…
    if std::fs::symlink_metadata(&manifest_path).is_ok_and(|m| !m.file_type().is_file()) {
        return Err(Failure::new(
            FailureClass::PermanentInput,
            format!(
                "{STEERING_DIR}/{MANIFEST} is a symlink or not a regular file; not syncing steering"
            ),
        ));
    }
    let old = read_manifest(checkout);
    let managed: BTreeMap<&str, &str> = old
        .files
        .iter()
        .filter(|f| {
            let ok = valid_name(&f.name);
            if !ok {
                warn!(file = %f.name, "ignoring a bad name in the steering manifest");
            }
            ok
        })
        .map(|f| (f.name.as_str(), f.sha.as_str()))
        .collect();
    if central.is_empty() && managed.is_empty() {
        info!("no central steering files");
        return Ok(report);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| internal(format!("cannot create {STEERING_DIR}: {e}")))?;
    let mut files = Vec::new();
    for (name, bytes) in &central {
        let path = dir.join(name);
        let local = std::fs::symlink_metadata(&path).ok();
        if local.as_ref().is_some_and(|m| !m.is_file()) {
            warn!(file = %name, "the repository's steering entry is not a regular file; keeping it");
            report.kept_local.push(name.clone());
            continue;
        }
        let rel = Path::new(STEERING_DIR).join(name);
        let current = match local {
            None => None,
            Some(_) => match checkout_fs::read_confined_bytes(checkout, &rel, MAX_LOCAL_BYTES) {
                Ok(b) => Some(b),
                Err(e) => {
                    warn!(error = %e, "the repository's steering file cannot be compared; keeping it");
                    report.kept_local.push(name.clone());
                    continue;
                }
            },
        };
        if let Some(cur) = &current
            && !owned(managed.get(name.as_str()).copied(), cur)?
        {
            warn!(file = %name, "the repository has its own steering file of this name (or changed the synced one); keeping it");
            report.kept_local.push(name.clone());
            continue;
        }
        if current.as_deref() != Some(bytes.as_slice()) {
            std::fs::write(&path, bytes)
                .map_err(|e| internal(format!("cannot write {STEERING_DIR}/{name}: {e}")))?;
            if current.is_some() {
                report.updated.push(name.clone());
            } else {
                report.added.push(name.clone());
            }
        }
        files.push(ManifestFile {
            name: name.clone(),
            sha: blob_id(bytes)?,
        });
    }
    for name in managed.keys() {
        if central.contains_key(*name) {
            continue;
        }
        let path = dir.join(name);
        let is_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        let rel = Path::new(STEERING_DIR).join(name);
        let read = || checkout_fs::read_confined_bytes(checkout, &rel, MAX_LOCAL_BYTES).ok();
        let Some(cur) = is_file.then(read).flatten() else {
            continue;
        };
        if !owned(managed.get(*name).copied(), &cur)? {
            warn!(file = %name, "a synced steering file was changed in the repository; keeping it");
            report.kept_local.push((*name).to_owned());
            continue;
        }
        std::fs::remove_file(&path)
            .map_err(|e| internal(format!("cannot remove {STEERING_DIR}/{name}: {e}")))?;
        report.removed.push((*name).to_owned());
    }
    let manifest = Manifest {
        source: source.display(),
        revision: report.revision.clone(),
        files,
    };
    if manifest.files.is_empty() {
        if std::fs::symlink_metadata(&manifest_path).is_ok() {
            std::fs::remove_file(&manifest_path)
                .map_err(|e| internal(format!("cannot remove the steering manifest: {e}")))?;
        }
    } else if manifest != old {
        let mut json = serde_json::to_string_pretty(&manifest)
            .map_err(|e| internal(format!("cannot write the steering manifest: {e}")))?;
        json.push('\n');
        std::fs::write(&manifest_path, kiro_protocol::redact::redact(&json))
            .map_err(|e| internal(format!("cannot write the steering manifest: {e}")))?;
    }
    info!(
        added = ?report.added,
        updated = ?report.updated,
        removed = ?report.removed,
        kept_local = ?report.kept_local,
        "steering synced"
    );
    Ok(report)
}

/// A steering file of the checkout, for the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringFile {
    pub name: String,
    pub front: FrontMatter,
    pub body: String,
}

/// The checkout's steering files (regular `*.md` files with valid names, sorted, at most
/// [`MAX_PROMPT_FILES`], each read through [`checkout_fs`] within [`MAX_FILE_BYTES`]).
pub fn read_all(checkout: &Path) -> Vec<SteeringFile> {
    let dir = checkout.join(STEERING_DIR);
    if no_symlink(&dir).is_err() || no_symlink(&checkout.join(".kiro")).is_err() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    if names.len() > MAX_PROMPT_FILES {
        warn!(
            files = names.len(),
            limit = MAX_PROMPT_FILES,
            "too many steering files: reading the first by name"
        );
        names.truncate(MAX_PROMPT_FILES);
    }
    let mut out: Vec<SteeringFile> = names
        .into_iter()
        .filter_map(|name| {
            let rel = Path::new(STEERING_DIR).join(&name);
            let text = match checkout_fs::read_confined(checkout, &rel, MAX_FILE_BYTES) {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "skipping a steering file");
                    return None;
                }
            };
            let (front, body) = FrontMatter::split(&text);
            Some(SteeringFile {
                name,
                front,
                body: body.trim().to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests;
