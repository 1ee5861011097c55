//! Unit tests of the coverage step.

use super::*;

const LCOV: &str = "TN:\nSF:src/a.js\nFN:2,add\nDA:1,1\nDA:2,0\nLH:5\nLF:10\nend_of_record\n\
SF:test/a.test.js\nDA:1,1\nDA:2,3\nDA:3,0\nend_of_record\n";

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/coverage")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn totals_sum_lh_over_lf() {
    let c = parse_lcov(LCOV).unwrap();
    assert_eq!(c.files.len(), 2);
    assert_eq!((c.files[0].found, c.files[0].hit), (10, 5));
    assert_eq!((c.files[1].found, c.files[1].hit), (3, 2), "DA fallback");
    assert_eq!(c.found(), Ok(13));
    assert!((c.percent().unwrap().unwrap() - 700.0 / 13.0).abs() < 1e-9);
    assert_eq!(parse_lcov("").unwrap().percent(), Ok(None));
    assert_eq!(
        parse_lcov("SF:x\nLF:0\nLH:0\nend_of_record\n")
            .unwrap()
            .percent(),
        Ok(None)
    );
}

fn auto(name: &str) -> (f64, CoverageFormat) {
    read(&fixture(name), name, CoverageFormat::Auto).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn every_format_is_read_and_detected() {
    let (v, f) = auto("lcov.info");
    assert_eq!(f, CoverageFormat::Lcov);
    assert!(close(v, 85.0), "{v}");
    let (v, f) = auto("cobertura.xml");
    assert_eq!(f, CoverageFormat::Cobertura);
    assert!(
        close(v, 72.0 * 100.0 / 90.0),
        "lines-covered / lines-valid: {v}"
    );
    let (v, f) = auto("cobertura-rate-only.xml");
    assert_eq!(f, CoverageFormat::Cobertura);
    assert!(close(v, 91.3), "line-rate: {v}");
    let (v, f) = auto("coverage-summary.json");
    assert_eq!(f, CoverageFormat::Istanbul);
    assert!(close(v, 78.26), "{v}");
    let (v, f) = auto("llvm-cov.json");
    assert_eq!(f, CoverageFormat::LlvmCov);
    assert!(close(v, 88.235_294_117_647_06), "{v}");
}

#[test]
fn configured_formats_and_bad_reports() {
    let xml = fixture("cobertura.xml");
    // A configured format that does not match the file is a clear error.
    let (e, f) = read(&xml, "x", CoverageFormat::Istanbul).unwrap_err();
    assert_eq!(f, CoverageFormat::Istanbul);
    assert!(matches!(e, ReadError::Malformed(..)), "{e}");
    assert!(read(&xml, "x", CoverageFormat::Cobertura).is_ok());
    // No lines at all.
    let empty =
        "<?xml version=\"1.0\"?><coverage lines-valid=\"0\" lines-covered=\"0\" line-rate=\"1\"/>";
    assert_eq!(
        read(empty, "c.xml", CoverageFormat::Auto).unwrap_err().0,
        ReadError::NoLines
    );
    let json = r#"{"total":{"lines":{"total":0,"covered":0,"skipped":0,"pct":"Unknown"}}}"#;
    assert_eq!(
        read(json, "s.json", CoverageFormat::Auto).unwrap_err().0,
        ReadError::NoLines
    );
    assert_eq!(
        read("hello", "x.txt", CoverageFormat::Auto).unwrap_err().0,
        ReadError::Unknown
    );
    assert_eq!(
        read("<html/>", "x.xml", CoverageFormat::Auto)
            .unwrap_err()
            .0,
        ReadError::Unknown
    );
    assert!(matches!(
        read("<report/>", "x.xml", CoverageFormat::Cobertura)
            .unwrap_err()
            .0,
        ReadError::Malformed(..)
    ));
}

#[test]
fn auto_finds_the_usual_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        report_path(d, None, CoverageFormat::Auto),
        Path::new("coverage/lcov.info")
    );
    std::fs::create_dir_all(d.join("coverage")).unwrap();
    std::fs::write(d.join("coverage/coverage-summary.json"), "{}").unwrap();
    assert_eq!(
        report_path(d, None, CoverageFormat::Auto),
        Path::new("coverage/coverage-summary.json")
    );
    assert_eq!(
        report_path(d, None, CoverageFormat::LlvmCov),
        Path::new("coverage/llvm-cov.json")
    );
    assert_eq!(
        report_path(d, Some(Path::new("x/y.xml")), CoverageFormat::Auto),
        Path::new("x/y.xml")
    );
}

/// Counts no real report can hold: each is a classified error naming the field,
/// never a panic, a wrap-around or a clamped 100%.
#[test]
fn impossible_counts_are_bad_reports_naming_the_field() {
    let max = u64::MAX;
    let cases: [(&str, &str, CoverageFormat, &str); 12] = [
        (
            "lcov LF sum overflows",
            &format!("SF:a\nLF:{max}\nLH:1\nend_of_record\nSF:b\nLF:{max}\nLH:1\nend_of_record\n"),
            CoverageFormat::Lcov,
            "LF",
        ),
        (
            "lcov LH sum overflows",
            &format!(
                "SF:a\nLF:{max}\nLH:{max}\nend_of_record\nSF:b\nLF:{max}\nLH:{max}\nend_of_record\n"
            ),
            CoverageFormat::Lcov,
            "LF",
        ),
        (
            "lcov LH > LF",
            "SF:src/a.js\nLF:10\nLH:12\nend_of_record\n",
            CoverageFormat::Lcov,
            "LH 12 > LF 10 in record src/a.js",
        ),
        (
            "lcov negative LF",
            "SF:a\nLF:-3\nLH:1\nend_of_record\n",
            CoverageFormat::Lcov,
            "LF",
        ),
        (
            "lcov non-number LH",
            "SF:a\nLF:3\nLH:NaN\nend_of_record\n",
            CoverageFormat::Lcov,
            "LH",
        ),
        (
            "cobertura line-rate > 1",
            r#"<coverage line-rate="1.5"/>"#,
            CoverageFormat::Cobertura,
            "line-rate",
        ),
        (
            "cobertura negative line-rate",
            r#"<coverage line-rate="-0.5"/>"#,
            CoverageFormat::Cobertura,
            "line-rate",
        ),
        (
            "cobertura NaN line-rate",
            r#"<coverage line-rate="NaN"/>"#,
            CoverageFormat::Cobertura,
            "line-rate",
        ),
        (
            "cobertura covered > valid",
            r#"<coverage lines-valid="10" lines-covered="11" line-rate="1"/>"#,
            CoverageFormat::Cobertura,
            "lines-covered",
        ),
        (
            "istanbul pct > 100",
            r#"{"total":{"lines":{"total":10,"covered":10,"pct":150}}}"#,
            CoverageFormat::Istanbul,
            "total.lines.pct",
        ),
        (
            "istanbul covered > total",
            r#"{"total":{"lines":{"total":10,"covered":12,"pct":100}}}"#,
            CoverageFormat::Istanbul,
            "total.lines.covered",
        ),
        (
            "llvm-cov negative percent",
            r#"{"data":[{"totals":{"lines":{"count":10,"covered":1,"percent":-3}}}]}"#,
            CoverageFormat::LlvmCov,
            "data.0.totals.lines.percent",
        ),
    ];
    for (name, text, format, field) in cases {
        for f in [format, CoverageFormat::Auto] {
            let got = std::panic::catch_unwind(|| read(text, "report", f));
            let Ok(got) = got else {
                panic!("{name}: panicked");
            };
            match got {
                Err((ReadError::Impossible(why), used)) => {
                    assert_eq!(used, format, "{name}");
                    assert!(why.contains(field), "{name}: {why} should name {field}");
                }
                other => panic!("{name} ({f}): expected an impossible report, got {other:?}"),
            }
        }
    }
    // Through the gate: a classified failure naming the file, not a pass.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("coverage")).unwrap();
    let p = dir.path().join("coverage/lcov.info");
    std::fs::write(&p, "SF:src/a.js\nLF:10\nLH:12\nend_of_record\n").unwrap();
    let (f, v) = gate(
        dir.path(),
        Path::new("coverage/lcov.info"),
        CoverageFormat::Auto,
        0.0,
    )
    .unwrap_err();
    assert_eq!(f.class, FailureClass::CoverageBelow);
    assert_eq!(v, None);
    assert_eq!(
        f.reason,
        "the lcov coverage report at coverage/lcov.info is impossible: LH 12 > LF 10 in record src/a.js"
    );
}

#[test]
fn gate_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("coverage")).unwrap();
    let p = d.join("coverage/lcov.info");
    let shown = Path::new("coverage/lcov.info");
    let auto = CoverageFormat::Auto;
    let (f, v) = gate(d, shown, auto, 80.0).unwrap_err();
    assert_eq!(f.class, FailureClass::CoverageBelow);
    assert_eq!(f.reason, "no coverage report at coverage/lcov.info");
    assert_eq!(v, None);
    let (f, _) = gate(d, shown, CoverageFormat::Lcov, 80.0).unwrap_err();
    assert_eq!(f.reason, "no lcov coverage report at coverage/lcov.info");
    std::fs::write(&p, "").unwrap();
    assert_eq!(
        gate(d, shown, CoverageFormat::Lcov, 80.0)
            .unwrap_err()
            .0
            .reason,
        "the lcov coverage report at coverage/lcov.info holds no lines"
    );
    std::fs::write(&p, "SF:a\nLF:8\nLH:5\nend_of_record\n").unwrap();
    let (f, v) = gate(d, shown, auto, 80.0).unwrap_err();
    assert_eq!(
        f.reason,
        "line coverage 62.5% is below the 80% threshold (lcov report coverage/lcov.info)"
    );
    assert_eq!(v, Some(62.5));
    std::fs::write(&p, "SF:a\nLF:5\nLH:4\nend_of_record\n").unwrap();
    assert_eq!(gate(d, shown, auto, 80.0).unwrap(), 80.0);
    assert_eq!(pct(83.333), "83.33");

    let x = dir.path().join("cov.xml");
    std::fs::write(&x, fixture("cobertura.xml")).unwrap();
    let (f, v) = gate(d, Path::new("cov.xml"), auto, 90.0).unwrap_err();
    assert_eq!(
        f.reason,
        "line coverage 80% is below the 90% threshold (Cobertura XML report cov.xml)"
    );
    assert_eq!(v, Some(80.0));
}

/// A report symlinked to /dev/zero (4.3 GB of memory in the campaign), to a file
/// outside the checkout, or a FIFO: refused by name, nothing read.
#[test]
fn hostile_report_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("coverage")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("coverage/lcov.info")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("coverage/passwd.info")).unwrap();
    crate::checkout_fs::tests::mkfifo(&d.join("coverage/fifo.info"));
    for (name, rule) in [
        ("coverage/lcov.info", "resolves outside the checkout"),
        ("coverage/passwd.info", "resolves outside the checkout"),
        ("coverage/fifo.info", "is not a regular file (a FIFO)"),
    ] {
        let (f, v) = gate(d, Path::new(name), CoverageFormat::Lcov, 80.0).unwrap_err();
        assert_eq!(f.class, FailureClass::CoverageBelow);
        assert_eq!(f.reason, format!("the lcov coverage report {name} {rule}"));
        assert_eq!(v, None);
    }
}
