//! JUnit XML test reports: the test counts (tests, failures, errors, skipped) shown in
//! the report, and a second opinion on whether the tests passed.
//!
//! Invariant: counts are summed over the top-level `<testsuite>` elements (nested suites
//! are inside their parent's figures); a suite without a `tests` attribute is counted from
//! its `<testcase>` children and their `<failure>`, `<error>` and `<skipped>` elements; a
//! document with no suite falls back to the root `<testsuites>` attributes. Unreadable
//! XML is an error, never "zero failures".

use quick_xml::events::{BytesStart, Event};

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
        self.failures + self.errors > 0
    }

    fn add(&mut self, o: TestCounts) {
        self.tests += o.tests;
        self.failures += o.failures;
        self.errors += o.errors;
        self.skipped += o.skipped;
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

fn attrs(e: &BytesStart<'_>) -> Option<TestCounts> {
    let mut c = TestCounts::default();
    let mut has_tests = false;
    for a in e.attributes().flatten() {
        let v = &a.value;
        // Some tools write counts as decimals ("3.0"); never negative.
        let n = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| *n >= 0.0)
            .map(|n| n as u64);
        match (a.key.as_ref(), n) {
            ("tests", Some(n)) => {
                c.tests = n;
                has_tests = true;
            }
            ("failures", Some(n)) => c.failures = n,
            ("errors", Some(n)) => c.errors = n,
            ("skipped" | "skips" | "disabled", Some(n)) => c.skipped = c.skipped.max(n),
            _ => {}
        }
    }
    has_tests.then_some(c)
}

/// The counts of a JUnit XML document.
pub fn counts(text: &str) -> Result<TestCounts, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut total = TestCounts::default();
    let mut root: Option<TestCounts> = None;
    let mut suites = 0usize;
    // The current top-level suite: its attributes, and what its children count.
    let mut declared: Option<TestCounts> = None;
    let mut counted = TestCounts::default();
    loop {
        let ev = reader.read_event().map_err(|e| e.to_string())?;
        let (e, empty) = match &ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if let Some(name) = stack.pop()
                    && name == "testsuite"
                    && !stack.iter().any(|n| n == "testsuite")
                {
                    total.add(declared.take().unwrap_or(counted));
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
            "testsuites" if stack.is_empty() => root = attrs(e),
            "testsuite" if !in_suite => {
                suites += 1;
                declared = attrs(e);
                counted = TestCounts::default();
                if empty {
                    total.add(declared.take().unwrap_or_default());
                }
            }
            "testcase" if in_suite => counted.tests += 1,
            "failure" if in_case => counted.failures += 1,
            "error" if in_case => counted.errors += 1,
            "skipped" if in_case => counted.skipped += 1,
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
    if suites == 0 {
        return root.ok_or_else(|| "no <testsuite> or <testsuites> counts".to_owned());
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
}
