//! The paths and globs a repository's settings name (coverage and JUnit reports, paths
//! never to commit): validated once, relative to the checkout, and expanded inside it.
//!
//! Invariants:
//! - a pattern is relative to the repository's root: never absolute, no `.` or `..`
//!   component (a leading `./` and a trailing `/` are dropped), no backslash, no control
//!   character, at most [`MAX_PATTERN_CHARS`] characters; a glob's `*`, `?` and `[…]`
//!   never cross a `/` (only `**` does);
//! - expansion ([`RepoPattern::expand`]) walks the checkout from the pattern's literal
//!   prefix without following a symlink, never enters `.git` (nor `node_modules` unless
//!   the pattern names it), gives up past [`MAX_WALK_ENTRIES`] entries with an error
//!   rather than a partial answer, and returns paths relative to the checkout, sorted;
//!   whatever it returns is still read or removed only through [`crate::checkout_fs`].

use globset::{GlobBuilder, GlobMatcher};
use std::fmt;
use std::path::{Path, PathBuf};

/// The longest pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 1024;

/// The most directory entries one expansion visits.
pub const MAX_WALK_ENTRIES: usize = 200_000;

/// A path, or a glob, relative to the repository's root.
#[derive(Debug, Clone)]
pub enum RepoPattern {
    /// A literal path (no glob character).
    Path(PathBuf),
    /// A glob (`*`, `?`, `[…]`, `{a,b}`, `**`).
    Glob { text: String, matcher: GlobMatcher },
}

impl PartialEq for RepoPattern {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoPattern::Path(p) => write!(f, "{}", p.display()),
            RepoPattern::Glob { text, .. } => f.write_str(text),
        }
    }
}

/// The characters that make a pattern a glob.
const GLOB_CHARS: [char; 4] = ['*', '?', '[', '{'];

impl RepoPattern {
    /// `raw` validated, or why not (without the key: the caller names it).
    pub fn parse(raw: &str) -> Result<RepoPattern, String> {
        let quoted = kiro_protocol::ids::quote_for_display(raw);
        let bad = |rule: &str| Err(format!("{quoted} {rule}"));
        if raw.chars().count() > MAX_PATTERN_CHARS {
            return bad(&format!("is longer than {MAX_PATTERN_CHARS} characters"));
        }
        if raw.chars().any(char::is_control) {
            return bad("holds a control character");
        }
        if raw.contains('\\') {
            return bad("holds a backslash (write paths with /)");
        }
        if raw.starts_with('/') {
            return bad("is absolute (write it relative to the repository's root)");
        }
        let trimmed = raw.strip_prefix("./").unwrap_or(raw);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return bad("names no path");
        }
        for part in trimmed.split('/') {
            match part {
                "" => return bad("holds an empty path component (//)"),
                "." | ".." => {
                    return bad("must stay inside the repository (no . or .. component)");
                }
                _ => {}
            }
        }
        if !trimmed.contains(GLOB_CHARS) {
            return Ok(RepoPattern::Path(PathBuf::from(trimmed)));
        }
        let glob = GlobBuilder::new(trimmed)
            .literal_separator(true)
            .backslash_escape(false)
            .build()
            .map_err(|e| format!("{quoted} is not a valid glob: {}", e.kind()))?;
        Ok(RepoPattern::Glob {
            text: trimmed.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn is_glob(&self) -> bool {
        matches!(self, RepoPattern::Glob { .. })
    }

    /// Whether `rel` (relative to the checkout) is this path or matches this glob.
    pub fn matches(&self, rel: &Path) -> bool {
        match self {
            RepoPattern::Path(p) => rel == p,
            RepoPattern::Glob { matcher, .. } => matcher.is_match(rel),
        }
    }

    /// Whether `rel` or one of its parents is this path or matches this glob (a pattern
    /// naming a directory covers everything below it).
    pub fn covers(&self, rel: &Path) -> bool {
        match self {
            RepoPattern::Path(p) => rel.starts_with(p),
            RepoPattern::Glob { matcher, .. } => rel
                .ancestors()
                .any(|a| !a.as_os_str().is_empty() && matcher.is_match(a)),
        }
    }

    /// The literal directories before the first glob component (`packages` for
    /// `packages/*/coverage/lcov.info`); empty for a glob starting with one.
    fn base(&self) -> PathBuf {
        match self {
            RepoPattern::Path(p) => p.clone(),
            RepoPattern::Glob { text, .. } => text
                .split('/')
                .take_while(|c| !c.contains(GLOB_CHARS))
                .collect(),
        }
    }

    /// The files and directories of the checkout this pattern names, relative to it and
    /// sorted: a path as it is (whether or not it exists), a glob's matches.
    pub fn expand(&self, checkout: &Path) -> Result<Vec<PathBuf>, String> {
        let RepoPattern::Glob { text, matcher } = self else {
            return Ok(vec![self.base()]);
        };
        let base = self.base();
        let root = checkout.join(&base);
        // A base that is a symlink could lead outside the checkout: never walked.
        match std::fs::symlink_metadata(&root) {
            Ok(m) if m.is_dir() => {}
            _ => return Ok(Vec::new()),
        }
        let into_node_modules = text.contains("node_modules");
        let mut found = Vec::new();
        let mut visited = 0usize;
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .follow_root_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name();
                e.depth() == 0
                    || !(name == ".git" || (name == "node_modules" && !into_node_modules))
            });
        for entry in walk {
            visited += 1;
            if visited > MAX_WALK_ENTRIES {
                return Err(format!(
                    "{} visits more than {MAX_WALK_ENTRIES} entries of the checkout: name \
                     the reports more narrowly",
                    kiro_protocol::ids::quote_for_display(text)
                ));
            }
            let Ok(entry) = entry else { continue };
            let Ok(rel) = entry.path().strip_prefix(checkout) else {
                continue;
            };
            if !rel.as_os_str().is_empty() && matcher.is_match(rel) {
                found.push(rel.to_owned());
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The patterns' text, comma-separated.
pub fn joined(patterns: &[RepoPattern]) -> String {
    patterns
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `rel` is in or below one of the never-commit paths or patterns.
pub fn excluded(paths: &[PathBuf], patterns: &[RepoPattern], rel: &Path) -> bool {
    paths.iter().any(|p| rel.starts_with(p)) || patterns.iter().any(|p| p.covers(rel))
}
