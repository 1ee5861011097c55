//! The worker's totals of reports written by the real tools on real code
//! (`tests/fixtures/coverage/*/`), against the totals those tools printed (recorded,
//! with the commands, in `tests/fixtures/coverage/EXPECTED.md`).

use super::tests::fixture;
use super::*;

/// How the tool shows a percent: rounded, or truncated (Istanbul's `Math.floor`).
#[derive(Clone, Copy)]
enum Shown {
    Round(u32),
    Floor(u32),
}
use Shown::{Floor, Round};

/// `(fixture, format, lines found, lines hit, the tool's printed total, as it shows it)`.
const CASES: &[(&str, CoverageFormat, u64, u64, f64, Shown)] = &[
    // coverage.py 7.17.5: `coverage report --precision=2` TOTAL 33 8 75.76%.
    (
        "coveragepy/coverage.json",
        CoverageFormat::CoveragePy,
        33,
        25,
        75.76,
        Round(2),
    ),
    (
        "coveragepy/cobertura.xml",
        CoverageFormat::Cobertura,
        33,
        25,
        75.76,
        Round(2),
    ),
    (
        "coveragepy/coverage.lcov",
        CoverageFormat::Lcov,
        33,
        25,
        75.76,
        Round(2),
    ),
    // `coverage run --branch`: coverage.py prints 71.43% (statements and branches);
    // its statements alone, `percent_statements_covered`, are 75.76.
    (
        "coveragepy/coverage-branch.json",
        CoverageFormat::CoveragePy,
        33,
        25,
        75.76,
        Round(2),
    ),
    // Two shards of the same files: each shard's `coverage report`, then `lcov -a`.
    (
        "coveragepy/shard1.lcov",
        CoverageFormat::Lcov,
        33,
        8,
        24.24,
        Round(2),
    ),
    (
        "coveragepy/shard2.lcov",
        CoverageFormat::Lcov,
        33,
        17,
        51.52,
        Round(2),
    ),
    (
        "coveragepy/sharded.lcov",
        CoverageFormat::Lcov,
        33,
        21,
        63.6,
        Round(1),
    ),
    (
        "coveragepy/sharded-lcov-a.lcov",
        CoverageFormat::Lcov,
        33,
        21,
        63.6,
        Round(1),
    ),
    // jest 30 (babel-plugin-istanbul): "All files" % Lines 70.37.
    (
        "jest/lcov.info",
        CoverageFormat::Lcov,
        27,
        19,
        70.37,
        Floor(2),
    ),
    (
        "jest/clover.xml",
        CoverageFormat::Clover,
        27,
        19,
        70.37,
        Floor(2),
    ),
    (
        "jest/cobertura-coverage.xml",
        CoverageFormat::Cobertura,
        27,
        19,
        70.37,
        Floor(2),
    ),
    (
        "jest/coverage-final.json",
        CoverageFormat::IstanbulFinal,
        27,
        19,
        70.37,
        Floor(2),
    ),
    (
        "jest/coverage-summary.json",
        CoverageFormat::Istanbul,
        27,
        19,
        70.37,
        Floor(2),
    ),
    // `jest --shard=1/2` and `--shard=2/2`: text-summary Lines 44.44% and 25.92%.
    (
        "jest/shard1.lcov",
        CoverageFormat::Lcov,
        27,
        12,
        44.44,
        Floor(2),
    ),
    (
        "jest/shard2.lcov",
        CoverageFormat::Lcov,
        27,
        7,
        25.92,
        Floor(2),
    ),
    (
        "jest/sharded.lcov",
        CoverageFormat::Lcov,
        27,
        19,
        70.4,
        Round(1),
    ),
    (
        "jest/sharded-lcov-a.lcov",
        CoverageFormat::Lcov,
        27,
        19,
        70.4,
        Round(1),
    ),
    // vitest 3 with @vitest/coverage-v8: "All files" % Lines 67.34.
    (
        "vitest/lcov.info",
        CoverageFormat::Lcov,
        49,
        33,
        67.34,
        Floor(2),
    ),
    (
        "vitest/clover.xml",
        CoverageFormat::Clover,
        49,
        33,
        67.34,
        Floor(2),
    ),
    (
        "vitest/cobertura-coverage.xml",
        CoverageFormat::Cobertura,
        49,
        33,
        67.34,
        Floor(2),
    ),
    (
        "vitest/coverage-final.json",
        CoverageFormat::IstanbulFinal,
        49,
        33,
        67.34,
        Floor(2),
    ),
    (
        "vitest/coverage-summary.json",
        CoverageFormat::Istanbul,
        49,
        33,
        67.34,
        Floor(2),
    ),
    // node 20 `--test --experimental-test-coverage`: "all files" line % 88.42.
    (
        "node-test/lcov.info",
        CoverageFormat::Lcov,
        95,
        84,
        88.42,
        Round(2),
    ),
    // go 1.19 `go tool cover -func`: total (statements) 62.5%.
    (
        "go/coverage.out",
        CoverageFormat::Go,
        24,
        15,
        62.5,
        Round(1),
    ),
    ("go/sharded.out", CoverageFormat::Go, 24, 15, 62.5, Round(1)),
    // JaCoCo 0.8.6 (ant report task): Lines 9 missed of 24.
    (
        "jacoco/jacoco.xml",
        CoverageFormat::Jacoco,
        24,
        15,
        62.5,
        Round(1),
    ),
    // llvm-cov 22 (rustc 1.95): `llvm-cov report` TOTAL Lines 64, Missed 18, 71.88%.
    (
        "llvm-cov/llvm-cov.json",
        CoverageFormat::LlvmCov,
        64,
        46,
        71.88,
        Round(2),
    ),
];

/// `v` as the tool shows it.
fn shown(v: f64, how: Shown) -> f64 {
    let m = |d: u32| 10f64.powi(d as i32);
    match how {
        Round(d) => (v * m(d)).round() / m(d),
        Floor(d) => (v * m(d) + 1e-9).floor() / m(d),
    }
}

#[test]
fn every_real_report_totals_what_its_tool_printed() {
    for &(name, format, found, hit, printed, how) in CASES {
        let text = fixture(name);
        let file = name.rsplit('/').next().unwrap();
        assert_eq!(detect(&text, file), Some(format), "{name}: detected");
        let (report, used) = parse(&text, file, CoverageFormat::Auto).unwrap();
        assert_eq!(used, format, "{name}");
        assert_eq!(report.counts(), Ok(Some((found, hit))), "{name}: counts");
        // The report's own total, where it has one, agrees with its files.
        if let Some(Declared::Counts { found: f, hit: h }) = report.declared {
            assert_eq!((f, h), (found, hit), "{name}: the report's own total");
        }
        let (v, _) = read(&text, file, format).unwrap();
        assert_eq!(shown(v, how), printed, "{name}: {v}");
    }
}

/// The concatenated shards as the worker read them before (every record summed) give
/// what the issue saw; merged by line they give `lcov -a`'s figure.
#[test]
fn sharded_lcov_is_not_counted_twice() {
    for (name, naive) in [
        ("coveragepy/sharded.lcov", 25.0 / 66.0),
        ("jest/sharded.lcov", 19.0 / 54.0),
    ] {
        let text = fixture(name);
        let lf: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("LF:")?.parse::<u64>().ok())
            .sum();
        let lh: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("LH:")?.parse::<u64>().ok())
            .sum();
        assert!((lh as f64 / lf as f64 - naive).abs() < 1e-9, "{name}");
        let merged = fixture(&name.replace("sharded", "sharded-lcov-a"));
        assert_eq!(
            parse_lcov(&text).unwrap().counts(),
            parse_lcov(&merged).unwrap().counts(),
            "{name}"
        );
    }
}

fn checkout_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, fixture(f)).unwrap();
    }
    dir
}

fn paths(v: &[&str]) -> Vec<PathBuf> {
    v.iter().map(PathBuf::from).collect()
}

/// Shards written as separate reports, and a monorepo's packages in several formats.
#[test]
fn several_reports_merge_into_one_total() {
    let shards = ["jest/shard1.lcov", "jest/shard2.lcov"];
    let dir = checkout_with(&shards);
    let m = measure(dir.path(), &paths(&shards), CoverageFormat::Auto).unwrap();
    assert_eq!(m.counts, Some((27, 19)));
    let py = ["coveragepy/shard1.lcov", "coveragepy/shard2.lcov"];
    let dir = checkout_with(&py);
    let m = measure(dir.path(), &paths(&py), CoverageFormat::Lcov).unwrap();
    assert_eq!(m.counts, Some((33, 21)));
    assert_eq!(pct(m.percent), "63.64");

    let mono = [
        "coveragepy/coverage.json",
        "jest/coverage-final.json",
        "go/coverage.out",
        "jacoco/jacoco.xml",
    ];
    let dir = checkout_with(&mono);
    let m = measure(dir.path(), &paths(&mono), CoverageFormat::Auto).unwrap();
    assert_eq!(m.counts, Some((33 + 27 + 24 + 24, 25 + 19 + 15 + 15)));
    let used: Vec<CoverageFormat> = m.reports.iter().map(|(_, f)| *f).collect();
    assert_eq!(
        used,
        [
            CoverageFormat::CoveragePy,
            CoverageFormat::IstanbulFinal,
            CoverageFormat::Go,
            CoverageFormat::Jacoco
        ]
    );
    // The uncovered files lead with the most missed, with their lines.
    let u = m.report.uncovered().unwrap();
    assert_eq!(u[0].found - u[0].hit, 5, "{u:?}");
    let fmt = u.iter().find(|f| f.path == "calc/fmt.py").unwrap();
    assert_eq!(fmt.missed_lines, [6, 12, 18, 19]);

    // One report of the set is missing: named, not a lower total.
    let (f, v) = gate_all(
        dir.path(),
        &paths(&[
            "go/coverage.out",
            "web/coverage/lcov.info",
            "api/coverage.json",
        ]),
        CoverageFormat::Auto,
        80.0,
    )
    .unwrap_err();
    assert_eq!(v, None);
    assert_eq!(
        f.reason,
        "no coverage report at web/coverage/lcov.info, api/coverage.json"
    );
    let (f, v) = gate_all(dir.path(), &paths(&mono[..2]), CoverageFormat::Auto, 80.0).unwrap_err();
    assert_eq!(
        f.reason,
        "line coverage 73.33% is below the 80% threshold (coverage.py JSON report \
         coveragepy/coverage.json, Istanbul coverage-final.json report jest/coverage-final.json)"
    );
    assert!((v.unwrap() - 44.0 * 100.0 / 60.0).abs() < 1e-9);
}

/// The projects the reports were made from are inputs, not this project's code: every
/// file is stored as `.txt`, so no compiler, test runner or check picks up their
/// failing and skipped tests (see EXPECTED.md).
#[test]
fn fixture_sources_are_stored_as_text() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, found);
            } else {
                found.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coverage/sources");
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert!(files.len() >= 30, "{files:?}");
    let bare: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_none_or(|e| e != "txt"))
        .collect();
    assert!(bare.is_empty(), "stored without .txt: {bare:?}");
}
