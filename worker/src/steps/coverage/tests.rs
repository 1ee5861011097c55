//! Unit tests of the coverage step.

use super::*;
use kiro_protocol::FailureClass;

const LCOV: &str = "TN:\nSF:src/a.js\nFN:2,add\nDA:1,1\nDA:2,0\nLH:1\nLF:2\nend_of_record\n\
SF:test/a.test.js\nDA:1,1\nDA:2,3\nDA:3,0\nend_of_record\n";

pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/coverage")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn counts(r: &Report) -> (u64, u64) {
    r.counts().unwrap().unwrap()
}

#[test]
fn lcov_counts_da_lines_per_file() {
    let r = parse_lcov(LCOV).unwrap();
    assert_eq!(r.files.len(), 2);
    assert_eq!(r.files["src/a.js"].counts(), Ok((2, 1)));
    assert_eq!(r.files["test/a.test.js"].counts(), Ok((3, 2)));
    assert_eq!(counts(&r), (5, 3));
    assert!((r.percent().unwrap().unwrap() - 60.0).abs() < 1e-9);
    assert_eq!(parse_lcov("").unwrap().percent(), Ok(None));
    // Like lcov, a record without DA lines holds no lines: LF/LH are never summed.
    assert_eq!(
        parse_lcov("SF:x\nLF:10\nLH:10\nend_of_record\n")
            .unwrap()
            .percent(),
        Ok(None)
    );
}

/// Two shards of one file, concatenated: merged by line as `lcov -a` does, not summed.
#[test]
fn lcov_records_of_one_file_are_merged_by_line() {
    let shard1 = "SF:src/a.js\nDA:1,1\nDA:2,0\nDA:3,0\nDA:4,0\nLF:4\nLH:1\nend_of_record\n";
    let shard2 = "SF:./src/a.js\nDA:1,0\nDA:2,5\nDA:3,1\nDA:4,0\nLF:4\nLH:2\nend_of_record\n";
    let r = parse_lcov(&format!("{shard1}{shard2}")).unwrap();
    assert_eq!(counts(&r), (4, 3), "not (8, 3)");
    assert_eq!(r.files["src/a.js"].missed_lines(), vec![4]);
    // The same through two reports merged.
    let (mut a, b) = (parse_lcov(shard1).unwrap(), parse_lcov(shard2).unwrap());
    a.merge(b, "shard2.lcov").unwrap();
    assert_eq!(counts(&a), (4, 3));
    let u = a.uncovered().unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].path.as_str(), u[0].found, u[0].hit),
        ("src/a.js", 4, 3)
    );
}

fn auto_text(text: &str) -> Result<(f64, CoverageFormat), (ReadError, CoverageFormat)> {
    read(text, "report", CoverageFormat::Auto)
}

#[test]
fn a_rate_only_cobertura_root_is_read_but_cannot_be_merged() {
    let (v, f) = read(
        &fixture("cobertura-rate-only.xml"),
        "c.xml",
        CoverageFormat::Auto,
    )
    .unwrap();
    assert_eq!(f, CoverageFormat::Cobertura);
    assert!((v - 91.3).abs() < 1e-9, "line-rate: {v}");
    let (rate, _) = parse(
        &fixture("cobertura-rate-only.xml"),
        "c.xml",
        CoverageFormat::Auto,
    )
    .unwrap();
    let mut r = parse_lcov(LCOV).unwrap();
    assert!(matches!(
        r.merge(rate, "c.xml"),
        Err(ReadError::Unmergeable(_))
    ));
    // A root with counts and no classes merges as a file of its own.
    let xml = r#"<coverage lines-valid="10" lines-covered="5" line-rate="0.5"/>"#;
    let (root, _) = parse(xml, "c.xml", CoverageFormat::Auto).unwrap();
    r.merge(root, "c.xml").unwrap();
    assert_eq!(counts(&r), (15, 8));
    assert!(r.files.contains_key("c.xml (report totals)"));
}

/// A report that lists no file but counts its lines (a Cobertura root) keeps its
/// counts when it comes first among several; nothing named is its own failure.
#[test]
fn a_first_report_with_only_totals_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = r#"<coverage lines-valid="10" lines-covered="5" line-rate="0.5"/>"#;
    std::fs::write(d.join("a.xml"), root).unwrap();
    std::fs::write(d.join("b.info"), LCOV).unwrap();
    let both = [PathBuf::from("a.xml"), PathBuf::from("b.info")];
    let m = measure(d, &both, CoverageFormat::Auto).unwrap();
    assert_eq!(m.counts, Some((15, 8)));
    let e = measure(d, &[], CoverageFormat::Auto).unwrap_err();
    assert!(e.is_missing());
    assert_eq!(e.to_string(), "no coverage report was named");
}

#[test]
fn configured_formats_and_bad_reports() {
    let xml = fixture("coveragepy/cobertura.xml");
    // A configured format that does not match the file is a clear error.
    for f in [
        CoverageFormat::Istanbul,
        CoverageFormat::IstanbulFinal,
        CoverageFormat::LlvmCov,
        CoverageFormat::CoveragePy,
        CoverageFormat::Go,
    ] {
        let (e, used) = read(&xml, "x", f).unwrap_err();
        assert_eq!(used, f);
        assert!(matches!(e, ReadError::Malformed(..)), "{f}: {e}");
    }
    for f in [CoverageFormat::Clover, CoverageFormat::Jacoco] {
        assert!(
            matches!(read(&xml, "x", f).unwrap_err().0, ReadError::Malformed(..)),
            "{f}"
        );
    }
    assert_eq!(
        read(&xml, "x", CoverageFormat::Lcov).unwrap_err().0,
        ReadError::NoLines
    );
    assert!(read(&xml, "x", CoverageFormat::Cobertura).is_ok());
    // No lines at all.
    let empty =
        "<?xml version=\"1.0\"?><coverage lines-valid=\"0\" lines-covered=\"0\" line-rate=\"1\"/>";
    assert_eq!(auto_text(empty).unwrap_err().0, ReadError::NoLines);
    let json = r#"{"total":{"lines":{"total":0,"covered":0,"skipped":0,"pct":"Unknown"}}}"#;
    assert_eq!(auto_text(json).unwrap_err().0, ReadError::NoLines);
    assert_eq!(auto_text("mode: set\n").unwrap_err().0, ReadError::NoLines);
    for unknown in ["hello", "<html/>", "{}", "[1]", r#"{"a":1}"#, "<report/>"] {
        assert_eq!(
            read(unknown, "x.txt", CoverageFormat::Auto).unwrap_err().0,
            ReadError::Unknown,
            "{unknown}"
        );
    }
    assert!(matches!(
        read("<report/>", "x.xml", CoverageFormat::Cobertura)
            .unwrap_err()
            .0,
        ReadError::Malformed(..)
    ));
    assert!(matches!(
        read("mode: set\nf.go:1.1 1 1\n", "c.out", CoverageFormat::Go)
            .unwrap_err()
            .0,
        ReadError::Malformed(..)
    ));
}

/// A Cobertura root and a Clover root are told apart by shape, not by name.
#[test]
fn clover_is_not_read_as_cobertura() {
    let clover = r#"<coverage generated="1" clover="3.2.0"><project><metrics statements="4" coveredstatements="3"/><file name="a.js" path="/r/a.js"><metrics statements="4" coveredstatements="3"/></file></project></coverage>"#;
    assert_eq!(auto_text(clover).unwrap(), (75.0, CoverageFormat::Clover));
    // PHPUnit writes no `clover` attribute; the `<project>` child tells.
    let phpunit = r#"<coverage generated="1"><project timestamp="1"><file name="/r/a.php"><metrics statements="8" coveredstatements="2"/></file><metrics files="1" statements="8" coveredstatements="2"/></project></coverage>"#;
    assert_eq!(auto_text(phpunit).unwrap(), (25.0, CoverageFormat::Clover));
    // Read as Cobertura, a Clover file is a clear error, not a number.
    assert_eq!(
        read(clover, "c.xml", CoverageFormat::Cobertura)
            .unwrap_err()
            .0,
        ReadError::NoLines
    );
}

#[test]
fn the_search_paths_are_the_usual_ones_in_order() {
    let auto = search_paths(None, CoverageFormat::Auto);
    assert_eq!(auto[0], Path::new("coverage/lcov.info"));
    assert_eq!(auto[1], Path::new("lcov.info"));
    assert_eq!(auto[2], Path::new("coverage.lcov"));
    let mut all: Vec<&str> = auto.iter().map(|p| p.to_str().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        known_report_paths(),
        "auto searches every usual path once"
    );
    assert_eq!(
        search_paths(None, CoverageFormat::Go),
        [Path::new("coverage.out"), Path::new("cover.out")]
    );
    assert_eq!(
        search_paths(Some(Path::new("x/y.xml")), CoverageFormat::Auto),
        [Path::new("x/y.xml")]
    );
}

/// Counts no real report can hold: each is a classified error naming the field,
/// never a panic, a wrap-around or a clamped 100%.
#[test]
fn impossible_counts_are_bad_reports_naming_the_field() {
    let max = u64::MAX;
    let go_over = format!("mode: set\na.go:1.1,2.1 {max} 1\na.go:3.1,4.1 {max} 1\n");
    let summary_over = format!(
        r#"{{"total":{{"lines":{{"total":1,"covered":1,"pct":100}}}},"a":{{"lines":{{"total":{max},"covered":1}}}},"b":{{"lines":{{"total":{max},"covered":1}}}}}}"#
    );
    let jacoco_over =
        format!(r#"<report name="x"><counter type="LINE" missed="{max}" covered="1"/></report>"#);
    let cases: Vec<(&str, &str, CoverageFormat, &str)> = vec![
        (
            "Go statement sum overflows",
            &go_over,
            CoverageFormat::Go,
            "overflows",
        ),
        (
            "Istanbul summary line sum overflows",
            &summary_over,
            CoverageFormat::Istanbul,
            "overflows",
        ),
        (
            "lcov negative DA hits",
            "SF:a\nDA:1,-1\nend_of_record\n",
            CoverageFormat::Lcov,
            "DA hits",
        ),
        (
            "lcov DA without a line number",
            "SF:a\nDA:x,1\nend_of_record\n",
            CoverageFormat::Lcov,
            "DA line",
        ),
        (
            "cobertura negative hits",
            r#"<coverage><packages><package><classes><class filename="a.py"><lines><line number="1" hits="-2"/></lines></class></classes></package></packages></coverage>"#,
            CoverageFormat::Cobertura,
            "hits",
        ),
        (
            "clover covered > statements",
            r#"<coverage clover="3.2.0"><project><file name="a.js"><metrics statements="3" coveredstatements="4"/></file></project></coverage>"#,
            CoverageFormat::Clover,
            "coveredstatements 4 > statements 3 of a.js",
        ),
        (
            "jacoco negative ci",
            r#"<report name="x"><package name="p"><sourcefile name="A.java"><line nr="1" mi="0" ci="-1"/></sourcefile></package></report>"#,
            CoverageFormat::Jacoco,
            "ci",
        ),
        (
            "jacoco counter overflows",
            &jacoco_over,
            CoverageFormat::Jacoco,
            "LINE counter",
        ),
        (
            "istanbul final negative statement count",
            r#"{"a.js":{"statementMap":{"0":{"start":{"line":1,"column":0},"end":{"line":1,"column":5}}},"s":{"0":-1}}}"#,
            CoverageFormat::IstanbulFinal,
            "a.js.s.0",
        ),
        (
            "coverage.py covered > statements",
            r#"{"meta":{"format":3},"files":{},"totals":{"covered_lines":5,"num_statements":3,"percent_covered":100}}"#,
            CoverageFormat::CoveragePy,
            "totals.covered_lines 5 > totals.num_statements 3",
        ),
        (
            "coverage.py file covered > statements",
            r#"{"meta":{"format":3},"files":{"a.py":{"summary":{"covered_lines":5,"num_statements":3}}},"totals":{"covered_lines":3,"num_statements":3,"percent_covered":100}}"#,
            CoverageFormat::CoveragePy,
            "files.a.py.summary.covered_lines",
        ),
        (
            "coverage.py percent above 100",
            r#"{"meta":{"format":3},"files":{},"totals":{"covered_lines":3,"num_statements":3,"percent_covered":130}}"#,
            CoverageFormat::CoveragePy,
            "totals.percent_covered",
        ),
        (
            "go negative count",
            "mode: set\na.go:1.1,2.1 1 -1\n",
            CoverageFormat::Go,
            "execution count",
        ),
        (
            "go block with two statement counts",
            "mode: set\na.go:1.1,2.1 1 1\na.go:1.1,2.1 2 0\n",
            CoverageFormat::Go,
            "counts 1 statements in one record and 2 in another",
        ),
        (
            "llvm-cov file covered > count",
            r#"{"data":[{"files":[{"filename":"a.rs","summary":{"lines":{"count":3,"covered":4,"percent":100}}}],"totals":{"lines":{"count":3,"covered":3,"percent":100}}}]}"#,
            CoverageFormat::LlvmCov,
            "a.rs: summary.lines.covered 4 > a.rs: summary.lines.count 3",
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
    // A missing report is not low coverage.
    assert_eq!(f.class, FailureClass::ReportMissing);
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
    let da = |hit: usize, found: usize| {
        let lines: String = (1..=found)
            .map(|n| format!("DA:{n},{}\n", u8::from(n <= hit)))
            .collect();
        format!("SF:a\n{lines}LF:{found}\nLH:{hit}\nend_of_record\n")
    };
    std::fs::write(&p, da(5, 8)).unwrap();
    let (f, v) = gate(d, shown, auto, 80.0).unwrap_err();
    assert_eq!(
        f.reason,
        "line coverage 62.5% is below the 80% threshold (lcov report coverage/lcov.info)"
    );
    assert_eq!(v, Some(62.5));
    std::fs::write(&p, da(4, 5)).unwrap();
    assert_eq!(gate(d, shown, auto, 80.0).unwrap(), 80.0);
    assert_eq!(pct(83.333), "83.33");

    let x = dir.path().join("cov.xml");
    std::fs::write(&x, fixture("coveragepy/cobertura.xml")).unwrap();
    let (f, v) = gate(d, Path::new("cov.xml"), auto, 90.0).unwrap_err();
    assert_eq!(
        f.reason,
        "line coverage 75.76% is below the 90% threshold (Cobertura XML report cov.xml)"
    );
    assert_eq!(v, Some(25.0 * 100.0 / 33.0));
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

/// The names a setting or `--coverage-format` takes: the old four unchanged.
#[test]
fn format_names() {
    use clap::ValueEnum;
    let names: Vec<String> = CoverageFormat::value_variants()
        .iter()
        .map(|f| f.to_possible_value().unwrap().get_name().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "auto",
            "lcov",
            "cobertura",
            "istanbul",
            "llvm-cov",
            "clover",
            "istanbul-final",
            "coverage-py",
            "go",
            "jacoco"
        ]
    );
    assert!(known_report_paths().contains(&"target/site/jacoco/jacoco.xml"));
}
