//! JUnit XML test reports: the test counts (tests, failures, errors, skipped) shown in
//! the report, and a second opinion on whether the tests passed.
//!
//! Invariant: counts are summed over the top-level `<testsuite>` elements (nested suites
//! are inside their parent's figures); a suite without a `tests` attribute is counted from
//! its `<testcase>` children and their `<failure>`, `<error>` and `<skipped>` elements; a
//! document with no suite falls back to the root `<testsuites>` attributes. Unreadable
//! XML is an error, never "zero failures"; so are impossible counts (not a whole
//! non-negative number, failures or errors or skipped above tests, a sum that overflows),
//! each named by element and field — never a panic or a wrap-around.

use quick_xml::events::{BytesStart, Event};

/// The largest JUnit report read, in bytes.
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

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

    /// `self + o`, field by field; an overflow is an impossible report naming the field.
    fn checked_add(self, o: TestCounts) -> Result<TestCounts, JunitError> {
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

/// The counts of a JUnit XML document.
pub fn counts(text: &str) -> Result<TestCounts, JunitError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut total = TestCounts::default();
    let mut root: Option<TestCounts> = None;
    let mut suites = 0usize;
    // The current top-level suite: its attributes, and what its children count.
    let mut declared: Option<TestCounts> = None;
    let mut counted = TestCounts::default();
    let bump = |n: u64| n.saturating_add(1);
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| JunitError::Malformed(e.to_string()))?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if let Some(name) = stack.pop()
                    && name == "testsuite"
                    && !stack.iter().any(|n| n == "testsuite")
                {
                    total = total.checked_add(declared.take().unwrap_or(counted))?;
                    counted = TestCounts::default();
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = e.local_name().as_ref().to_owned();
        let in_suite = stack.iter().any(|n| n == "testsuite");
        let in_case = stack.iter().any(|n| n == "testcase");
        match name.as_str() {
            "testsuites" if stack.is_empty() => root = attrs(e, "testsuites")?,
            "testsuite" if !in_suite => {
                suites += 1;
                declared = attrs(e, "testsuite")?;
                counted = TestCounts::default();
                if empty {
                    total = total.checked_add(declared.take().unwrap_or_default())?;
                }
            }
            "testcase" if in_suite => counted.tests = bump(counted.tests),
            "failure" if in_case => counted.failures = bump(counted.failures),
            "error" if in_case => counted.errors = bump(counted.errors),
            "skipped" if in_case => counted.skipped = bump(counted.skipped),
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
    if suites == 0 {
        return root.ok_or_else(|| {
            JunitError::Malformed("no <testsuite> or <testsuites> counts".to_owned())
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/junit")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn sums_top_level_suites() {
        let c = counts(&fixture("jest-junit.xml")).unwrap();
        assert_eq!(
            c,
            TestCounts {
                tests: 7,
                failures: 1,
                errors: 0,
                skipped: 1
            }
        );
        assert!(c.failed());
        assert_eq!(c.to_string(), "7 tests, 1 failures, 0 errors, 1 skipped");
    }

    #[test]
    fn counts_cases_when_suites_have_no_attributes() {
        let c = counts(&fixture("pytest-bare.xml")).unwrap();
        assert_eq!(
            c,
            TestCounts {
                tests: 4,
                failures: 1,
                errors: 1,
                skipped: 1
            }
        );
    }

    #[test]
    fn root_only_and_bad_documents() {
        let c = counts(r#"<testsuites tests="3" failures="0" errors="0"/>"#).unwrap();
        assert_eq!(c.tests, 3);
        assert!(!c.failed());
        assert!(counts("<testsuites>").is_err(), "no counts at all");
        assert!(counts("<html></body>").is_err());
        assert!(counts("<report/>").is_err());
    }

    /// Counts no real report can hold: a classified error naming the field, never a
    /// panic or a wrap-around.
    #[test]
    fn impossible_counts_are_errors_naming_the_field() {
        let big = u64::MAX;
        let cases = [
            (
                format!(
                    r#"<testsuites><testsuite tests="{big}" failures="0"/><testsuite tests="{big}" failures="0"/></testsuites>"#
                ),
                "tests",
            ),
            (
                format!(
                    r#"<testsuites><testsuite tests="{big}" failures="{big}" errors="{big}"/></testsuites>"#
                ),
                "errors",
            ),
            (
                r#"<testsuite tests="1e30" failures="0"/>"#.to_owned(),
                "tests",
            ),
            (
                r#"<testsuite tests="3" failures="-1"/>"#.to_owned(),
                "failures",
            ),
            (
                r#"<testsuite tests="3" failures="NaN"/>"#.to_owned(),
                "failures",
            ),
            (
                r#"<testsuite tests="3" failures="4"/>"#.to_owned(),
                "failures",
            ),
            (
                r#"<testsuite tests="3" errors="2" failures="2"/>"#.to_owned(),
                "errors",
            ),
            (
                r#"<testsuite tests="2" skipped="5"/>"#.to_owned(),
                "skipped",
            ),
            (
                r#"<testsuites tests="2" failures="3"/>"#.to_owned(),
                "failures",
            ),
        ];
        for (xml, field) in cases {
            let got = std::panic::catch_unwind(|| counts(&xml));
            let Ok(got) = got else {
                panic!("{xml}: panicked");
            };
            match got {
                Err(JunitError::Impossible(why)) => {
                    assert!(why.contains(field), "{xml}: {why} should name {field}")
                }
                other => panic!("{xml}: expected an impossible report, got {other:?}"),
            }
        }
        // Plausible reports still read.
        let ok = counts(r#"<testsuite tests="3.0" failures="1" errors="1" skipped="1"/>"#);
        assert_eq!(
            ok.unwrap(),
            TestCounts {
                tests: 3,
                failures: 1,
                errors: 1,
                skipped: 1
            }
        );
    }
}
