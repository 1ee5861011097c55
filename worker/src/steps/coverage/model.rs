//! The shape every coverage format is read into: per source file, either the units the
//! tool measured (lines; Go's blocks weighted by their statements) or only the tool's
//! own counts for the file; and the report's own total, used only when its files hold
//! nothing.
//!
//! Invariant: a file named twice — in one report (concatenated lcov shards, Go profiles
//! of several test binaries) or in several reports — is merged, never counted twice:
//! units by unit, a unit hit when any record hit it (`lcov -a`, Go's `ParseProfiles`);
//! two sets of bare counts by the larger found and the larger hit (a lower bound of
//! their union: the counts hold no lines to merge). Every sum is checked: an overflow is
//! an impossible report.

use super::ReadError;
use std::collections::BTreeMap;

/// A unit of coverage in a file: a line `(line, 0, 0, 0)`, or a Go block
/// `(start line, start column, end line, end column)`.
pub type Unit = (u64, u64, u64, u64);

/// The unit of line `n`.
pub fn line(n: u64) -> Unit {
    (n, 0, 0, 0)
}

/// A unit's weight (1 for a line, its statements for a Go block) and whether it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hits {
    pub weight: u64,
    pub hit: bool,
}

/// What a report says about one source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCov {
    /// The units the tool measured.
    Units(BTreeMap<Unit, Hits>),
    /// Only the tool's own counts for the file (Istanbul summary, llvm-cov, Clover).
    Counts { found: u64, hit: u64 },
}

impl Default for FileCov {
    fn default() -> Self {
        FileCov::Units(BTreeMap::new())
    }
}

/// `a + b`, or an impossible report naming what overflowed.
pub fn add(a: u64, b: u64, what: &str) -> Result<u64, ReadError> {
    a.checked_add(b).ok_or_else(|| {
        ReadError::Impossible(format!("the sum of the {what} overflows a 64-bit number"))
    })
}

impl FileCov {
    /// Add unit `u`: a unit seen before keeps its weight and is hit if either was.
    pub fn add_unit(&mut self, u: Unit, h: Hits, path: &str) -> Result<(), ReadError> {
        let units = match self {
            FileCov::Units(units) => units,
            FileCov::Counts { .. } => {
                return self.merge(FileCov::Units(BTreeMap::from([(u, h)])), path);
            }
        };
        match units.get_mut(&u) {
            None => {
                units.insert(u, h);
            }
            Some(old) if old.weight != h.weight => {
                return Err(ReadError::Impossible(format!(
                    "block {}.{},{}.{} of {} counts {} statements in one record and {} in another",
                    u.0,
                    u.1,
                    u.2,
                    u.3,
                    shown_path(path),
                    old.weight,
                    h.weight
                )));
            }
            Some(old) => old.hit |= h.hit,
        }
        Ok(())
    }

    /// `(found, hit)` of the file.
    pub fn counts(&self) -> Result<(u64, u64), ReadError> {
        match self {
            FileCov::Counts { found, hit } => Ok((*found, *hit)),
            FileCov::Units(units) => units.values().try_fold((0, 0), |(f, h), u| {
                Ok((
                    add(f, u.weight, "units found")?,
                    if u.hit {
                        add(h, u.weight, "units hit")?
                    } else {
                        h
                    },
                ))
            }),
        }
    }

    /// Merge what another record says about the same file.
    pub fn merge(&mut self, other: FileCov, path: &str) -> Result<(), ReadError> {
        let other = match other {
            FileCov::Units(theirs) if matches!(self, FileCov::Units(_)) => {
                for (u, h) in theirs {
                    self.add_unit(u, h, path)?;
                }
                return Ok(());
            }
            other => other,
        };
        let (f1, h1) = self.counts()?;
        let (f2, h2) = other.counts()?;
        *self = FileCov::Counts {
            found: f1.max(f2),
            hit: h1.max(h2),
        };
        Ok(())
    }

    /// The lines (or first lines of Go blocks) measured and never run, in order.
    pub fn missed_lines(&self) -> Vec<u64> {
        match self {
            FileCov::Counts { .. } => Vec::new(),
            FileCov::Units(units) => {
                let mut v: Vec<u64> = units
                    .iter()
                    .filter(|(_, h)| !h.hit && h.weight > 0)
                    .map(|(u, _)| u.0)
                    .collect();
                v.dedup();
                v
            }
        }
    }
}

/// A report's own total, for a report whose files hold nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Declared {
    Counts {
        found: u64,
        hit: u64,
    },
    /// A rate alone (a Cobertura root with only `line-rate`): cannot be merged.
    Percent(f64),
}

/// A parsed coverage report, or several merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub files: BTreeMap<String, FileCov>,
    /// Used only when the files hold no units and no counts.
    pub declared: Option<Declared>,
}

/// A file's path as kept: `./` dropped, so `./src/a.js` and `src/a.js` are one file.
fn key(path: &str) -> String {
    path.trim().trim_start_matches("./").to_owned()
}

/// A path as shown in a message: at most 200 characters, `(unnamed)` if empty.
pub fn shown_path(path: &str) -> String {
    if path.is_empty() {
        return "(unnamed)".to_owned();
    }
    let mut s: String = path.chars().take(200).collect();
    if path.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// An uncovered file: its counts and the lines never run (empty when the format has
/// only counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub path: String,
    pub found: u64,
    pub hit: u64,
    pub missed_lines: Vec<u64>,
}

impl Report {
    /// Add what a record says about `path`, merging with what is known of it.
    pub fn add_file(&mut self, path: &str, cov: FileCov) -> Result<(), ReadError> {
        let k = key(path);
        match self.files.get_mut(&k) {
            Some(old) => old.merge(cov, &k),
            None => {
                self.files.insert(k, cov);
                Ok(())
            }
        }
    }

    /// `(found, hit)` over the files; the declared counts when the files hold nothing;
    /// `None` for a report that has only a rate.
    pub fn counts(&self) -> Result<Option<(u64, u64)>, ReadError> {
        let (mut found, mut hit) = (0u64, 0u64);
        for (path, c) in &self.files {
            let (f, h) = c.counts()?;
            if h > f {
                return Err(ReadError::Impossible(format!(
                    "{} has {h} lines hit of {f}",
                    shown_path(path)
                )));
            }
            found = add(found, f, "lines found")?;
            hit = add(hit, h, "lines hit")?;
        }
        if found > 0 {
            return Ok(Some((found, hit)));
        }
        Ok(match self.declared {
            Some(Declared::Counts { found, hit }) => Some((found, hit)),
            Some(Declared::Percent(_)) => None,
            None => Some((0, 0)),
        })
    }

    /// Total coverage in percent; `None` when the report holds nothing.
    pub fn percent(&self) -> Result<Option<f64>, ReadError> {
        Ok(match self.counts()? {
            Some((found, hit)) => (found > 0).then(|| hit as f64 * 100.0 / found as f64),
            None => match self.declared {
                Some(Declared::Percent(p)) => Some(p),
                _ => None,
            },
        })
    }

    /// Merge `other` (read from the report shown as `label`) into this one: its files
    /// by path; the counts of a report that lists no file as a file of its own.
    pub fn merge(&mut self, other: Report, label: &str) -> Result<(), ReadError> {
        let mut holds_units = false;
        for (path, cov) in other.files {
            holds_units |= cov.counts()?.0 > 0;
            self.add_file(&path, cov)?;
        }
        if holds_units {
            return Ok(());
        }
        match other.declared {
            Some(Declared::Counts { found, hit }) => self.add_file(
                &format!("{label} (report totals)"),
                FileCov::Counts { found, hit },
            ),
            Some(Declared::Percent(p)) => Err(ReadError::Unmergeable(format!(
                "it gives only a rate ({p}%), no line counts"
            ))),
            None => Ok(()),
        }
    }

    /// The files with lines never run, the most missed first.
    pub fn uncovered(&self) -> Result<Vec<Uncovered>, ReadError> {
        let mut v = Vec::new();
        for (path, cov) in &self.files {
            let (found, hit) = cov.counts()?;
            if hit < found {
                v.push(Uncovered {
                    path: path.clone(),
                    found,
                    hit,
                    missed_lines: cov.missed_lines(),
                });
            }
        }
        v.sort_by(|a, b| {
            (b.found - b.hit)
                .cmp(&(a.found - a.hit))
                .then(a.path.cmp(&b.path))
        });
        Ok(v)
    }
}
