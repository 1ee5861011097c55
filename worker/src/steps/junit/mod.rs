//! JUnit XML test reports: the test counts (tests, failures, errors, skipped) of the
//! report, the failing cases with their messages, and a second opinion on whether the
//! tests passed.
//!
//! Invariant: the counts come from the `<testcase>` elements themselves, at any depth —
//! suites nest (node's test runner writes a `<testsuite>` per `describe` and per test
//! with subtests, and its suites' `tests` count their direct children), so suite
//! attributes are never summed: each case is one test, failed when it has a
//! `<failure>` child, else errored with an `<error>` child, else skipped with a
//! `<skipped>` child (pytest's xfail, node's todo, vitest's todo). Surefire's and
//! nextest's `<flakyFailure>`/`<rerunFailure>` retries are not failures of their own (a
//! case that failed every retry carries a `<failure>`). A `<testsuite>` with neither
//! cases nor nested suites counts by its attributes; a document with no suite and no
//! case by the root `<testsuites>` attributes. Unreadable XML is an error, never "zero
//! failures"; so are impossible counts in any suite's or the root's attributes (not a
//! whole non-negative number, failures or errors or skipped above tests, a sum that
//! overflows), each named by element and field — never a panic or a wrap-around.

use quick_xml::events::{BytesStart, Event};

/// The largest JUnit report read, in bytes.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Where the usual runners write JUnit reports, relative to the checkout: jest-junit's
/// default `junit.xml`, the usual `test-results/` name, nextest's default and `ci`
/// profiles, Surefire's and Gradle's report directories. Cleared before the tests run
/// and never committed (with the configured path).
pub const KNOWN_REPORT_PATHS: [&str; 6] = [
    "junit.xml",
    "test-results/junit.xml",
    "target/nextest/default/junit.xml",
    "target/nextest/ci/junit.xml",
    "target/surefire-reports",
    "build/test-results",
];

/// Why a JUnit report gives no counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JunitError {
    /// Not a JUnit document the worker can read.
    #[error("is not readable JUnit XML: {0}")]
    Malformed(String),
    /// Counts no real run produces, named by field.
    #[error("is impossible: {0}")]
    Impossible(String),
}

/// Test counts of a JUnit report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub tests: u64,
    pub failures: u64,
    pub errors: u64,
    pub skipped: u64,
}

impl TestCounts {
    /// Failures or errors were reported.
    pub fn failed(&self) -> bool {
        self.failures > 0 || self.errors > 0
    }

    /// `self + o`, field by field; an overflow is an impossible report naming the field
    /// (for summing several reports).
    pub fn checked_add(self, o: TestCounts) -> Result<TestCounts, JunitError> {
        let add = |a: u64, b: u64, field: &str| {
            a.checked_add(b).ok_or_else(|| {
                JunitError::Impossible(format!(
                    "the sum of the {field} counts overflows a 64-bit number"
                ))
            })
        };
        Ok(TestCounts {
            tests: add(self.tests, o.tests, "tests")?,
            failures: add(self.failures, o.failures, "failures")?,
            errors: add(self.errors, o.errors, "errors")?,
            skipped: add(self.skipped, o.skipped, "skipped")?,
        })
    }

    /// Failures, errors and skipped tests are each some of the tests, and failures and
    /// errors together too.
    fn check(self, element: &str) -> Result<TestCounts, JunitError> {
        let over = |field: &str, n: u64| {
            Err(JunitError::Impossible(format!(
                "<{element}> {field} {n} > tests {}",
                self.tests
            )))
        };
        if self.failures > self.tests {
            return over("failures", self.failures);
        }
        if self.errors > self.tests {
            return over("errors", self.errors);
        }
        if self.skipped > self.tests {
            return over("skipped", self.skipped);
        }
        if self
            .failures
            .checked_add(self.errors)
            .is_none_or(|n| n > self.tests)
        {
            return Err(JunitError::Impossible(format!(
                "<{element}> failures {} + errors {} > tests {}",
                self.failures, self.errors, self.tests
            )));
        }
        Ok(self)
    }
}

impl std::fmt::Display for TestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tests, {} failures, {} errors, {} skipped",
            self.tests, self.failures, self.errors, self.skipped
        )
    }
}

/// A count attribute: a whole, non-negative number below 2^53 (some tools write `3.0`).
fn count(element: &str, field: &str, raw: &str) -> Result<u64, JunitError> {
    const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u64>() {
        return Ok(n);
    }
    match raw.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n < MAX_EXACT => Ok(n as u64),
        _ => Err(JunitError::Impossible(format!(
            "<{element}> {field}=\"{}\" is not a count",
            raw.chars().take(40).collect::<String>()
        ))),
    }
}

fn attrs(e: &BytesStart<'_>, element: &str) -> Result<Option<TestCounts>, JunitError> {
    let mut c = TestCounts::default();
    let mut has_tests = false;
    for a in e.attributes().flatten() {
        let key = a.key.as_ref();
        if !matches!(
            key,
            "tests" | "failures" | "errors" | "skipped" | "skips" | "disabled"
        ) {
            continue;
        }
        let n = count(element, key, &a.value)?;
        match key {
            "tests" => {
                c.tests = n;
                has_tests = true;
            }
            "failures" => c.failures = n,
            "errors" => c.errors = n,
            _ => c.skipped = c.skipped.max(n),
        }
    }
    if has_tests {
        c.check(element).map(Some)
    } else {
        Ok(None)
    }
}

/// A failing (or erroring) test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCase {
    /// `classname` (the suite, file or class), as written.
    pub classname: String,
    pub name: String,
    /// `error` or `failure`.
    pub kind: &'static str,
    /// The `message` attribute, then the element's text, cut at the limit given.
    pub message: String,
}

/// What one pass over a report finds.
struct Scan {
    counts: TestCounts,
    failed: Vec<FailedCase>,
}

/// The counts of a JUnit XML document.
pub fn counts(text: &str) -> Result<TestCounts, JunitError> {
    scan(text, 0).map(|s| s.counts)
}

/// The failing cases of a JUnit XML document, in document order, each message cut to
/// `message_limit` characters.
pub fn failed_cases(text: &str, message_limit: usize) -> Result<Vec<FailedCase>, JunitError> {
    scan(text, message_limit).map(|s| s.failed)
}

/// An open `<testsuite>`.
struct Suite {
    declared: Option<TestCounts>,
    has_case: bool,
    has_suite: bool,
}

/// The open `<testcase>`: its depth and what its children say.
#[derive(Default)]
struct Case {
    depth: usize,
    classname: String,
    name: String,
    failure: Option<String>,
    error: Option<String>,
    skipped: bool,
    /// Inside a `<failure>`/`<error>` child: collect its text.
    in_message: Option<&'static str>,
}

impl Case {
    fn message_mut(&mut self) -> Option<&mut String> {
        match self.in_message {
            Some("failure") => self.failure.as_mut(),
            Some("error") => self.error.as_mut(),
            _ => None,
        }
    }
}

fn push_limited(to: &mut String, s: &str, limit: usize) {
    let room = limit.saturating_sub(to.chars().count());
    to.extend(s.chars().take(room));
}

fn scan(text: &str, limit: usize) -> Result<Scan, JunitError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut suites: Vec<Suite> = Vec::new();
    let mut case: Option<Case> = None;
    let mut out = Scan {
        counts: TestCounts::default(),
        failed: Vec::new(),
    };
    let mut root: Option<TestCounts> = None;
    let mut seen = false; // a suite or a case
    let one = |f: bool, e: bool, s: bool| TestCounts {
        tests: 1,
        failures: u64::from(f),
        errors: u64::from(e && !f),
        skipped: u64::from(s && !f && !e),
    };
    let attr = |e: &BytesStart<'_>, k: &str| {
        e.try_get_attribute(k)
            .ok()
            .flatten()
            .and_then(|a| a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok())
            .map(|v| v.into_owned())
            .unwrap_or_default()
    };
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| JunitError::Malformed(e.to_string()))?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::Text(t) => {
                if let Some(m) = case.as_mut().and_then(Case::message_mut) {
                    push_limited(m, &t.xml10_content(), limit);
                }
                continue;
            }
            Event::CData(t) => {
                if let Some(m) = case.as_mut().and_then(Case::message_mut) {
                    push_limited(m, &t.xml10_content(), limit);
                }
                continue;
            }
            Event::GeneralRef(r) => {
                if let Some(m) = case.as_mut().and_then(Case::message_mut) {
                    let name = r.xml10_content();
                    let ch = match r.resolve_char_ref() {
                        Ok(Some(ch)) => ch.to_string(),
                        _ => quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or("")
                            .to_owned(),
                    };
                    push_limited(m, &ch, limit);
                }
                continue;
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                match name.as_str() {
                    "testcase" if case.as_ref().is_some_and(|c| c.depth == stack.len()) => {
                        close_case(case.take(), &mut out, one)?;
                    }
                    "failure" | "error" => {
                        if let Some(c) = case.as_mut() {
                            c.in_message = None;
                        }
                    }
                    "testsuite" => close_suite(suites.pop(), &mut out)?,
                    _ => {}
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = e.local_name().as_ref().to_owned();
        match name.as_str() {
            "testsuites" if stack.is_empty() => root = attrs(e, "testsuites")?,
            "testsuite" => {
                seen = true;
                if let Some(p) = suites.last_mut() {
                    p.has_suite = true;
                }
                suites.push(Suite {
                    declared: attrs(e, "testsuite")?,
                    has_case: false,
                    has_suite: false,
                });
                if empty {
                    close_suite(suites.pop(), &mut out)?;
                }
            }
            "testcase" if case.is_none() => {
                seen = true;
                for s in &mut suites {
                    s.has_case = true;
                }
                case = Some(Case {
                    depth: stack.len(),
                    classname: attr(e, "classname"),
                    name: attr(e, "name"),
                    ..Case::default()
                });
                if empty {
                    close_case(case.take(), &mut out, one)?;
                }
            }
            k @ ("failure" | "error" | "skipped") => {
                let kind = match k {
                    "failure" => "failure",
                    "error" => "error",
                    _ => "skipped",
                };
                if let Some(c) = case.as_mut().filter(|c| stack.len() == c.depth + 1) {
                    let mut message = String::new();
                    if kind != "skipped" {
                        let m = attr(e, "message");
                        if !m.is_empty() {
                            push_limited(&mut message, &m, limit);
                            push_limited(&mut message, "\n", limit);
                        }
                        c.in_message = (!empty).then_some(kind);
                    }
                    match kind {
                        "failure" => c.failure = Some(message),
                        "error" => c.error = Some(message),
                        _ => c.skipped = true,
                    }
                }
            }
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
    if !seen {
        out.counts = root.ok_or_else(|| {
            JunitError::Malformed("no <testsuite>, <testcase> or <testsuites> counts".to_owned())
        })?;
    }
    Ok(out)
}

fn close_case(
    case: Option<Case>,
    out: &mut Scan,
    one: impl Fn(bool, bool, bool) -> TestCounts,
) -> Result<(), JunitError> {
    let Some(c) = case else {
        return Ok(());
    };
    out.counts = out
        .counts
        .checked_add(one(c.failure.is_some(), c.error.is_some(), c.skipped))?;
    let (kind, mut message) = match (c.failure, c.error) {
        (Some(m), _) => ("failure", m),
        (None, Some(m)) => ("error", m),
        (None, None) => return Ok(()),
    };
    message.truncate(message.trim_end().len());
    out.failed.push(FailedCase {
        classname: c.classname,
        name: c.name,
        kind,
        message,
    });
    Ok(())
}

/// A suite with neither cases nor nested suites counts by its attributes.
fn close_suite(suite: Option<Suite>, out: &mut Scan) -> Result<(), JunitError> {
    if let Some(s) = suite
        && !s.has_case
        && !s.has_suite
    {
        out.counts = out.counts.checked_add(s.declared.unwrap_or_default())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
