//! Confined reads from the checkout: the one way the worker reads a file the repository
//! controls (its settings file, spec documents, tasks.md, steering files and their
//! manifest, coverage and JUnit reports).
//!
//! Invariant: a file is read only when its fully resolved path (every symlink, in the
//! file name or in any parent such as `.kiro` or `.kiro/specs`, followed) lies inside
//! the resolved checkout, it is a regular file (never a FIFO, device, socket or
//! directory: it is opened non-blocking and checked with `fstat` on the opened handle),
//! and it is at most `limit` bytes — enforced while reading (`Read::take`), not only
//! from its size. Every refusal is a [`ConfinedReadError`] naming the path (as the
//! repository names it) and the rule it broke; nothing of a refused file is returned.
//! The same resolution gives a file's modification time ([`modified_confined`]) and
//! removes a stale report ([`remove_confined`]): never anything outside the checkout.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path};

/// Which rule a refused read broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// No such file (or a parent is missing).
    Missing,
    /// The path is absolute, climbs with `..`, or resolves outside the checkout.
    OutsideCheckout,
    /// Not a regular file: what it is instead (`directory`, `FIFO`, `device`, …).
    NotRegular(&'static str),
    /// Over the limit, in bytes.
    TooLarge(u64),
    /// Not UTF-8 text.
    NotUtf8,
    /// Any other I/O error.
    Io(String),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Missing => f.write_str("is missing"),
            Rule::OutsideCheckout => f.write_str("resolves outside the checkout"),
            Rule::NotRegular(kind) => write!(f, "is not a regular file (a {kind})"),
            Rule::TooLarge(limit) => write!(f, "is larger than the limit of {limit} bytes"),
            Rule::NotUtf8 => f.write_str("is not UTF-8 text"),
            Rule::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// A refused read: the path (relative to the checkout, as given) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {rule}")]
pub struct ConfinedReadError {
    pub path: String,
    pub rule: Rule,
}

impl ConfinedReadError {
    pub fn is_missing(&self) -> bool {
        self.rule == Rule::Missing
    }
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

fn refused(rel: &Path, rule: Rule) -> ConfinedReadError {
    ConfinedReadError {
        path: rel.display().to_string(),
        rule,
    }
}

fn io_error(rel: &Path, e: std::io::Error) -> ConfinedReadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        refused(rel, Rule::Missing)
    } else {
        refused(rel, Rule::Io(e.to_string()))
    }
}

/// `rel` relative and without `..`: the only paths this module resolves.
fn check_relative(rel: &Path) -> Result<(), ConfinedReadError> {
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(refused(rel, Rule::OutsideCheckout));
    }
    Ok(())
}

/// `root/rel` with every symlink followed, when that lies inside the resolved `root`.
fn resolve(root: &Path, rel: &Path) -> Result<std::path::PathBuf, ConfinedReadError> {
    check_relative(rel)?;
    let root = root.canonicalize().map_err(|e| io_error(rel, e))?;
    let resolved = root
        .join(rel)
        .canonicalize()
        .map_err(|e| io_error(rel, e))?;
    if !resolved.starts_with(&root) {
        return Err(refused(rel, Rule::OutsideCheckout));
    }
    Ok(resolved)
}

/// When `root/rel` (resolved inside the checkout, as a read would) was last modified.
pub fn modified_confined(
    root: &Path,
    rel: &Path,
) -> Result<std::time::SystemTime, ConfinedReadError> {
    let resolved = resolve(root, rel)?;
    std::fs::metadata(&resolved)
        .and_then(|m| m.modified())
        .map_err(|e| io_error(rel, e))
}

/// Remove whatever is at `root/rel` (a file, a symlink itself — never its target —, a
/// FIFO, a directory with its contents) when its parent resolves inside the checkout.
/// `Ok(false)` when there is nothing to remove.
pub fn remove_confined(root: &Path, rel: &Path) -> Result<bool, ConfinedReadError> {
    check_relative(rel)?;
    let Some(name) = rel.file_name() else {
        return Err(refused(rel, Rule::OutsideCheckout));
    };
    let parent = match resolve(root, rel.parent().unwrap_or(Path::new(""))) {
        Ok(p) => p,
        Err(e) if e.is_missing() => return Ok(false),
        Err(e) => return Err(refused(rel, e.rule)),
    };
    let target = parent.join(name);
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(rel, e)),
    };
    let removed = if meta.file_type().is_dir() {
        std::fs::remove_dir_all(&target)
    } else {
        std::fs::remove_file(&target)
    };
    removed.map(|()| true).map_err(|e| io_error(rel, e))
}

/// The bytes of `root/rel`, under the rules of this module.
pub fn read_confined_bytes(
    root: &Path,
    rel: &Path,
    limit: u64,
) -> Result<Vec<u8>, ConfinedReadError> {
    let err = |rule: Rule| refused(rel, rule);
    let io = |e: std::io::Error| io_error(rel, e);
    let resolved = resolve(root, rel)?;
    // Non-blocking, so a FIFO cannot stall the open; no symlink at the last step (it
    // was resolved above).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&resolved)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(err(Rule::NotRegular(kind_of(meta.file_type()))));
    }
    if meta.len() > limit {
        return Err(err(Rule::TooLarge(limit)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(err(Rule::TooLarge(limit)));
    }
    Ok(bytes)
}

/// The UTF-8 text of `root/rel`, under the rules of this module.
pub fn read_confined(root: &Path, rel: &Path, limit: u64) -> Result<String, ConfinedReadError> {
    let bytes = read_confined_bytes(root, rel, limit)?;
    String::from_utf8(bytes).map_err(|_| ConfinedReadError {
        path: rel.display().to_string(),
        rule: Rule::NotUtf8,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A checkout with `.kiro/specs/x/tasks.md`, and a secret file outside it.
    fn world() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(checkout.join(".kiro/specs/x")).unwrap();
        std::fs::write(checkout.join(".kiro/specs/x/tasks.md"), "- [ ] 1. a\n").unwrap();
        let outside = dir.path().join("outside/.kiro/specs/x");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("tasks.md"), "SECRET OUTSIDE\n").unwrap();
        (dir, checkout)
    }

    #[test]
    fn a_plain_file_inside_is_read() {
        let (_d, c) = world();
        assert_eq!(
            read_confined(&c, Path::new(".kiro/specs/x/tasks.md"), 1024).unwrap(),
            "- [ ] 1. a\n"
        );
        // A symlink that stays inside the checkout is fine.
        symlink("x", c.join(".kiro/specs/y")).unwrap();
        assert!(read_confined(&c, Path::new(".kiro/specs/y/tasks.md"), 1024).is_ok());
    }

    /// Each hostile layout: a classified error naming the path, nothing read.
    #[test]
    fn hostile_layouts_are_refused_naming_path_and_rule() {
        type Setup = fn(&Path, &Path);
        let cases: Vec<(&str, Setup, &str, Rule)> = vec![
            (
                "symlinked .kiro",
                |c, out| {
                    std::fs::remove_dir_all(c.join(".kiro")).unwrap();
                    symlink(out.join(".kiro"), c.join(".kiro")).unwrap();
                },
                ".kiro/specs/x/tasks.md",
                Rule::OutsideCheckout,
            ),
            (
                "symlinked .kiro/specs",
                |c, out| {
                    std::fs::remove_dir_all(c.join(".kiro/specs")).unwrap();
                    symlink(out.join(".kiro/specs"), c.join(".kiro/specs")).unwrap();
                },
                ".kiro/specs/x/tasks.md",
                Rule::OutsideCheckout,
            ),
            (
                "file symlinked to /etc/passwd",
                |c, _| symlink("/etc/passwd", c.join("coverage.info")).unwrap(),
                "coverage.info",
                Rule::OutsideCheckout,
            ),
            (
                "file symlinked to /dev/zero",
                |c, _| symlink("/dev/zero", c.join("lcov.info")).unwrap(),
                "lcov.info",
                Rule::OutsideCheckout,
            ),
            (
                "a FIFO",
                |c, _| mkfifo(&c.join("junit.xml")),
                "junit.xml",
                Rule::NotRegular("FIFO"),
            ),
            (
                "a directory",
                |c, _| std::fs::create_dir(c.join("report.xml")).unwrap(),
                "report.xml",
                Rule::NotRegular("directory"),
            ),
            (
                "an oversize file",
                |c, _| std::fs::write(c.join("big.md"), vec![b'a'; 2049]).unwrap(),
                "big.md",
                Rule::TooLarge(2048),
            ),
            (
                "non-UTF-8",
                |c, _| std::fs::write(c.join("bin.md"), [b'a', 0xff, 0xfe]).unwrap(),
                "bin.md",
                Rule::NotUtf8,
            ),
            (
                "climbing with ..",
                |_, _| {},
                "../outside/.kiro/specs/x/tasks.md",
                Rule::OutsideCheckout,
            ),
            (
                "an absolute path",
                |_, _| {},
                "/etc/passwd",
                Rule::OutsideCheckout,
            ),
            ("a missing file", |_, _| {}, "nope.md", Rule::Missing),
        ];
        for (name, setup, rel, rule) in cases {
            let (d, c) = world();
            setup(&c, &d.path().join("outside"));
            let e = read_confined(&c, Path::new(rel), 2048).unwrap_err();
            assert_eq!(e.rule, rule, "{name}");
            assert_eq!(e.path, rel, "{name}");
            assert!(e.to_string().starts_with(rel), "{name}: {e}");
        }
    }

    /// A stale report is removed inside the checkout, never through a symlink to a
    /// file or directory outside it; a missing one is nothing to do.
    #[test]
    fn removal_stays_inside_the_checkout() {
        let (d, c) = world();
        let out = d.path().join("outside");
        std::fs::write(out.join("lcov.info"), "SF:x\n").unwrap();
        std::fs::create_dir_all(c.join("coverage")).unwrap();
        std::fs::write(c.join("coverage/lcov.info"), "SF:x\n").unwrap();
        assert_eq!(
            remove_confined(&c, Path::new("coverage/lcov.info")),
            Ok(true)
        );
        assert!(!c.join("coverage/lcov.info").exists());
        assert_eq!(
            remove_confined(&c, Path::new("coverage/lcov.info")),
            Ok(false)
        );
        assert_eq!(remove_confined(&c, Path::new("nope/lcov.info")), Ok(false));
        // A symlink named like a report: the link goes, its target stays.
        symlink(out.join("lcov.info"), c.join("lcov.info")).unwrap();
        assert_eq!(remove_confined(&c, Path::new("lcov.info")), Ok(true));
        assert!(out.join("lcov.info").exists());
        assert!(c.join("lcov.info").symlink_metadata().is_err());
        // A parent symlinked outside: refused by name, nothing removed.
        std::fs::remove_dir_all(c.join("coverage")).unwrap();
        symlink(&out, c.join("coverage")).unwrap();
        let e = remove_confined(&c, Path::new("coverage/lcov.info")).unwrap_err();
        assert_eq!(e.rule, Rule::OutsideCheckout);
        assert_eq!(e.path, "coverage/lcov.info");
        assert!(out.join("lcov.info").exists());
        for bad in ["../outside/lcov.info", "/etc/passwd"] {
            let e = remove_confined(&c, Path::new(bad)).unwrap_err();
            assert_eq!(e.rule, Rule::OutsideCheckout, "{bad}");
        }
        // A directory, a FIFO: removed (anything at a report's path is stale).
        std::fs::create_dir_all(c.join("junit.xml/x")).unwrap();
        assert_eq!(remove_confined(&c, Path::new("junit.xml")), Ok(true));
        mkfifo(&c.join("coverage.out"));
        assert_eq!(remove_confined(&c, Path::new("coverage.out")), Ok(true));
        assert!(!c.join("coverage.out").exists());
        // The modification time resolves as a read does.
        assert!(modified_confined(&c, Path::new(".kiro/specs/x/tasks.md")).is_ok());
        assert_eq!(
            modified_confined(&c, Path::new("coverage/lcov.info"))
                .unwrap_err()
                .rule,
            Rule::OutsideCheckout
        );
    }

    pub(crate) fn mkfifo(p: &Path) {
        let st = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "mkfifo {}", p.display());
    }
}
