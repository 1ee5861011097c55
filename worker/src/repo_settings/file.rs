//! The repository's settings file, [`FILE`]: its TOML read into [`RepoFile`], every key
//! checked by hand so that each error names the key as the file spells it
//! (`coverage[1].format`).
//!
//! Invariant: the file is accepted only when every key is known and every value has its
//! type and lies in its range ([`crate::ranges`] limits, `kiro_runtime`'s range checks);
//! otherwise [`FileError`] names the first bad key (in the file's key order, tables
//! after plain keys as TOML writes them) and says what is expected. A key that is absent
//! stays `None` and takes the deployment's default ([`super::resolve`]).
//! `schemas/codebuild-worker.schema.json` describes the same file; a test holds the two
//! to the same answers.

use super::pattern::RepoPattern;
use crate::ranges::{LONGEST_BUILD, MOST_FIX_ROUNDS};
use crate::steps::coverage::CoverageFormat;
use clap::ValueEnum;
use kiro_protocol::ids::quote_for_display;
use kiro_runtime::range::{count_within, duration_within, number_within};
use std::time::Duration;
use toml::Value;

/// Where the settings file lives, relative to the repository's root.
pub const FILE: &str = ".kiro/codebuild-worker.toml";

/// The largest settings file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The most entries of a list (`setup`, `coverage`, `junit`, `never_commit`).
pub const MAX_ITEMS: usize = 32;

/// The longest command (`setup`, `test_command`), in characters.
pub const MAX_COMMAND_CHARS: usize = 4096;

/// Every key of the file, in the order the README documents them.
pub const KEYS: [&str; 10] = [
    "setup",
    "setup_timeout",
    "test_command",
    "test_timeout",
    "coverage",
    "coverage_threshold",
    "junit",
    "fix_rounds",
    "agent_timeout",
    "never_commit",
];

/// The keys of one `[[coverage]]` entry.
pub const COVERAGE_KEYS: [&str; 2] = ["format", "path"];

/// One `[[coverage]]` entry: a report's format (`auto` when absent) and its path or
/// glob (absent: the format's usual paths).
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageEntry {
    pub format: CoverageFormat,
    pub path: Option<RepoPattern>,
}

/// The file's values; `None` where the file leaves the deployment's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoFile {
    pub setup: Option<Vec<String>>,
    pub setup_timeout: Option<Duration>,
    pub test_command: Option<String>,
    pub test_timeout: Option<Duration>,
    pub coverage: Option<Vec<CoverageEntry>>,
    pub coverage_threshold: Option<f64>,
    pub junit: Option<Vec<RepoPattern>>,
    pub fix_rounds: Option<u32>,
    pub agent_timeout: Option<Duration>,
    pub never_commit: Option<Vec<RepoPattern>>,
}

/// A bad key: `key` as the file spells it (empty for a syntax error) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct FileError {
    pub key: String,
    pub message: String,
}

fn err<T>(key: &str, message: impl Into<String>) -> Result<T, FileError> {
    Err(FileError {
        key: key.to_owned(),
        message: message.into(),
    })
}

/// What a TOML value is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The format names a file may use, as `--coverage-format` spells them.
pub fn format_names() -> Vec<String> {
    CoverageFormat::value_variants()
        .iter()
        .filter_map(|f| f.to_possible_value())
        .map(|p| p.get_name().to_owned())
        .collect()
}

/// Parse the file's text.
pub fn parse(text: &str) -> Result<RepoFile, FileError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {col}")
            })
            .unwrap_or_default();
        FileError {
            key: String::new(),
            message: format!("not valid TOML{at}: {}", e.message().trim()),
        }
    })?;
    let mut f = RepoFile::default();
    for (key, v) in &table {
        let k = key.as_str();
        match k {
            "setup" => f.setup = Some(commands(k, v)?),
            "setup_timeout" => f.setup_timeout = Some(duration(k, v)?),
            "test_command" => f.test_command = Some(command(k, v)?),
            "test_timeout" => f.test_timeout = Some(duration(k, v)?),
            "coverage" => f.coverage = Some(coverage(k, v)?),
            "coverage_threshold" => f.coverage_threshold = Some(threshold(k, v)?),
            "junit" => f.junit = Some(patterns(k, v)?),
            "fix_rounds" => f.fix_rounds = Some(fix_rounds(k, v)?),
            "agent_timeout" => f.agent_timeout = Some(duration(k, v)?),
            "never_commit" => f.never_commit = Some(patterns(k, v)?),
            _ => return err(k, unknown_key(&KEYS)),
        }
    }
    Ok(f)
}

fn unknown_key(known: &[&str]) -> String {
    format!("unknown key (expected one of {})", known.join(", "))
}

fn string<'a>(key: &str, v: &'a Value) -> Result<&'a str, FileError> {
    v.as_str().map_or_else(
        || err(key, format!("expected a string, found {}", kind(v))),
        Ok,
    )
}

fn array<'a>(key: &str, v: &'a Value, what: &str) -> Result<&'a [Value], FileError> {
    let Some(items) = v.as_array() else {
        return err(
            key,
            format!("expected an array of {what}, found {}", kind(v)),
        );
    };
    if items.len() > MAX_ITEMS {
        return err(
            key,
            format!("holds {} entries: at most {MAX_ITEMS}", items.len()),
        );
    }
    Ok(items)
}

fn command(key: &str, v: &Value) -> Result<String, FileError> {
    let s = string(key, v)?;
    if s.trim().is_empty() {
        return err(key, "must not be empty");
    }
    if s.chars().count() > MAX_COMMAND_CHARS {
        return err(
            key,
            format!("is longer than {MAX_COMMAND_CHARS} characters"),
        );
    }
    if s.contains('\0') {
        return err(key, "holds a NUL character");
    }
    Ok(s.to_owned())
}

fn commands(key: &str, v: &Value) -> Result<Vec<String>, FileError> {
    array(key, v, "commands")?
        .iter()
        .enumerate()
        .map(|(i, c)| command(&format!("{key}[{i}]"), c))
        .collect()
}

fn patterns(key: &str, v: &Value) -> Result<Vec<RepoPattern>, FileError> {
    array(key, v, "paths or globs")?
        .iter()
        .enumerate()
        .map(|(i, p)| pattern(&format!("{key}[{i}]"), p))
        .collect()
}

fn pattern(key: &str, v: &Value) -> Result<RepoPattern, FileError> {
    RepoPattern::parse(string(key, v)?).or_else(|why| err(key, why))
}

/// `"90s"`, `"10m"`, `"1h 30m"`: whole numbers of `s`, `m` or `h`, optionally separated
/// by one space (the schema's `duration` pattern), within 1s to 36h.
pub fn duration(key: &str, v: &Value) -> Result<Duration, FileError> {
    let raw = string(key, v)?;
    let expected = || -> Result<Duration, FileError> {
        err(
            key,
            format!(
                "{} is not a duration (write whole numbers of s, m or h: \"90s\", \"10m\", \
                 \"1h 30m\")",
                quote_for_display(raw)
            ),
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = raw;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return expected();
        }
        let Ok(n) = rest[..digits].parse::<u64>() else {
            return expected();
        };
        let unit = match rest[digits..].bytes().next() {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3600,
            _ => return expected(),
        };
        total += Duration::from_secs(n * unit);
        rest = &rest[digits + 1..];
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(' ').unwrap_or(rest);
    }
    duration_within(total, Duration::from_secs(1), LONGEST_BUILD)
        .or_else(|why| err(key, format!("{} {why}", quote_for_display(raw))))?;
    Ok(total)
}

fn threshold(key: &str, v: &Value) -> Result<f64, FileError> {
    let n = match v {
        Value::Integer(i) => *i as f64,
        Value::Float(x) => *x,
        other => return err(key, format!("expected a number, found {}", kind(other))),
    };
    number_within(n, 0.0, 100.0).or_else(|why| err(key, why))?;
    Ok(n)
}

fn fix_rounds(key: &str, v: &Value) -> Result<u32, FileError> {
    // `2.0` is a whole number too (as JSON Schema's `integer` says).
    let i = match v {
        Value::Integer(i) => *i,
        Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 => *x as i64,
        _ => return err(key, format!("expected a whole number, found {}", kind(v))),
    };
    let n = u64::try_from(i).or_else(|_| err(key, format!("is {i}: must not be negative")))?;
    count_within(n, 0, u64::from(MOST_FIX_ROUNDS)).or_else(|why| err(key, why))?;
    Ok(n as u32)
}

fn coverage(key: &str, v: &Value) -> Result<Vec<CoverageEntry>, FileError> {
    if v.is_table() {
        return err(
            key,
            "expected an array of tables: write each report as [[coverage]], not [coverage]",
        );
    }
    let items = array(key, v, "tables ([[coverage]])")?;
    if items.is_empty() {
        return err(
            key,
            "names no report: the coverage gate always runs; name at least one, or leave \
             the key out for the deployment's default",
        );
    }
    items
        .iter()
        .enumerate()
        .map(|(i, entry)| coverage_entry(&format!("{key}[{i}]"), entry))
        .collect()
}

fn coverage_entry(key: &str, v: &Value) -> Result<CoverageEntry, FileError> {
    let Some(t) = v.as_table() else {
        return err(key, format!("expected a table, found {}", kind(v)));
    };
    let mut entry = CoverageEntry {
        format: CoverageFormat::Auto,
        path: None,
    };
    for (k, v) in t {
        let at = format!("{key}.{k}");
        match k.as_str() {
            "format" => {
                let raw = string(&at, v)?;
                entry.format = CoverageFormat::from_str(raw, false).or_else(|_| {
                    err(
                        &at,
                        format!(
                            "unknown format {} (expected one of {})",
                            quote_for_display(raw),
                            format_names().join(", ")
                        ),
                    )
                })?;
            }
            "path" => entry.path = Some(pattern(&at, v)?),
            _ => return err(&at, unknown_key(&COVERAGE_KEYS)),
        }
    }
    Ok(entry)
}
