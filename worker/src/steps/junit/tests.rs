//! Unit tests of the JUnit reader.

use super::*;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/junit")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn counts_the_cases_of_a_hand_written_report() {
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

fn tc(tests: u64, failures: u64, errors: u64, skipped: u64) -> TestCounts {
    TestCounts {
        tests,
        failures,
        errors,
        skipped,
    }
}

/// Reports written by the real runners (`tests/fixtures/junit/EXPECTED.md` records the
/// commands and what each runner printed).
#[test]
fn real_reports_count_what_their_runners_printed() {
    let cases = [
        // node: "tests 13 … pass 10, fail 1, skipped 1, todo 1": 12 cases, the 13th is
        // the test with subtests, written as a <testsuite>.
        ("node-test.xml", tc(12, 1, 0, 2)),
        // pytest: "1 failed, 7 passed, 1 skipped, 1 error".
        ("pytest.xml", tc(10, 1, 1, 1)),
        // jest: "1 failed, 1 skipped, 1 todo, 7 passed, 10 total"; jest-junit writes the
        // todo case with no <skipped>, so it counts as passed.
        ("jest-junit-real.xml", tc(10, 1, 0, 1)),
        // vitest: "1 failed | 7 passed | 1 skipped | 1 todo (10)".
        ("vitest.xml", tc(10, 1, 0, 2)),
        // nextest: "6 tests run: 5 passed (1 flaky), 1 failed, 1 skipped"; its JUnit
        // lists no skipped test, and the flaky one's <flakyFailure> is not a failure.
        ("nextest.xml", tc(6, 1, 0, 0)),
        ("surefire/TEST-calc.CalcTest.xml", tc(7, 1, 0, 1)),
        ("surefire/TEST-calc.FormatTest.xml", tc(2, 0, 1, 0)),
    ];
    for (name, want) in cases {
        assert_eq!(counts(&fixture(name)), Ok(want), "{name}");
    }
    // Surefire writes one file per class: "Tests run: 9, Failures: 1, Errors: 1, Skipped: 1".
    let sum = counts(&fixture("surefire/TEST-calc.CalcTest.xml"))
        .unwrap()
        .checked_add(counts(&fixture("surefire/TEST-calc.FormatTest.xml")).unwrap())
        .unwrap();
    assert_eq!(sum, tc(9, 1, 1, 1));
}

/// Node's runner nests suites whose `tests` count their direct children: summing the
/// top-level suites' attributes (the worker before) gives 8 of its 12 cases.
#[test]
fn nested_suites_are_not_counted_by_their_attributes() {
    let text = fixture("node-test.xml");
    let top: u64 = ["calc", "parse", "format"]
        .iter()
        .map(|s| {
            let at = text.find(&format!("<testsuite name=\"{s}\"")).unwrap();
            let t = &text[at..];
            let t = &t[t.find(" tests=\"").unwrap() + 8..];
            t[..t.find('"').unwrap()].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(top, 8);
    assert_eq!(counts(&text).unwrap().tests, 12);
    // A suite of cases nested in a suite of cases: every case once.
    let xml = r#"<testsuites><testsuite name="a" tests="2"><testcase name="x"/><testsuite name="b" tests="2"><testcase name="y"><failure/></testcase><testcase name="z"><skipped/></testcase></testsuite></testsuite></testsuites>"#;
    assert_eq!(counts(xml), Ok(tc(3, 1, 0, 1)));
    // A leaf suite with only attributes still counts, beside cases elsewhere.
    let xml = r#"<testsuites><testsuite tests="4" failures="1"/><testsuite><testcase name="x"/></testsuite></testsuites>"#;
    assert_eq!(counts(xml), Ok(tc(5, 1, 0, 0)));
    // A case's own failure and error count once, as a failure; retries do not count.
    let xml = r#"<testsuite><testcase name="x"><failure/><error/></testcase><testcase name="y"><flakyFailure/><rerunFailure/></testcase></testsuite>"#;
    assert_eq!(counts(xml), Ok(tc(2, 1, 0, 0)));
}

#[test]
fn failed_cases_carry_their_messages() {
    let f = failed_cases(&fixture("pytest.xml"), 2000).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].classname.as_str(), f[0].name.as_str(), f[0].kind),
        ("tests.test_fmt", "test_needs_database", "error")
    );
    assert!(
        f[0].message.starts_with(
            "failed on setup with \"RuntimeError: no database in this environment\"\n@pytest.fixture"
        ),
        "{}",
        f[0].message
    );
    assert_eq!(
        (f[1].name.as_str(), f[1].kind),
        ("test_clamp_wrong_on_purpose", "failure")
    );
    assert!(
        f[1].message
            .contains(">       assert clamp(50, 0, 10) == 50")
    );
    let f = failed_cases(&fixture("node-test.xml"), 60).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].name, "is wrong on purpose");
    assert_eq!(f[0].message.chars().count(), 60, "cut at the limit");
    assert!(
        f[0].message
            .starts_with("Expected values to be strictly equal:10 !== 50")
    );
    // nextest: the flaky case is not listed; the case that failed every retry is.
    let f = failed_cases(&fixture("nextest.xml"), 200).unwrap();
    let names: Vec<&str> = f.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["tests::is_wrong_on_purpose"]);
}
