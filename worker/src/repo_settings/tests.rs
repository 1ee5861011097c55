//! Parsing, validation and resolution of a repository's settings file, table-driven:
//! every bad value is refused naming the key, and resolution names repository and file.

use super::file::{self, FileError};
use super::*;
use crate::config::Config;
use crate::steps::coverage::CoverageFormat;
use kiro_protocol::{FailureClass, RepoName};
use std::path::Path;

fn key_of(text: &str) -> FileError {
    file::parse(text).expect_err(text)
}

/// A file setting every key, as a README recipe would.
const FULL: &str = r#"
setup = ["python -m venv .venv", ".venv/bin/pip install -e '.[test]'"]
setup_timeout = "4m"
test_command = ".venv/bin/pytest --junitxml=junit.xml"
test_timeout = "8m"
coverage_threshold = 92.5
junit = ["junit.xml", "reports/**/TEST-*.xml"]
fix_rounds = 3
agent_timeout = "30m"
never_commit = [".venv", "dist/", "**/*.log"]

[[coverage]]
format = "coverage-py"
path = "coverage.json"

[[coverage]]
path = "./packages/*/coverage/lcov.info"
"#;

#[test]
fn a_full_file_parses_every_key() {
    let f = file::parse(FULL).unwrap();
    assert_eq!(f.setup.as_ref().unwrap().len(), 2);
    assert_eq!(f.setup_timeout, Some(Duration::from_secs(240)));
    assert_eq!(
        f.test_command.as_deref(),
        Some(".venv/bin/pytest --junitxml=junit.xml")
    );
    assert_eq!(f.test_timeout, Some(Duration::from_secs(480)));
    assert_eq!(f.coverage_threshold, Some(92.5));
    assert_eq!(f.fix_rounds, Some(3));
    assert_eq!(f.agent_timeout, Some(Duration::from_secs(1800)));
    let cov = f.coverage.unwrap();
    assert_eq!(cov[0].format, CoverageFormat::CoveragePy);
    assert_eq!(cov[0].path.as_ref().unwrap().to_string(), "coverage.json");
    assert_eq!(cov[1].format, CoverageFormat::Auto);
    let glob = cov[1].path.as_ref().unwrap();
    assert!(glob.is_glob());
    assert_eq!(glob.to_string(), "packages/*/coverage/lcov.info");
    assert!(glob.matches(Path::new("packages/api/coverage/lcov.info")));
    assert!(!glob.matches(Path::new("packages/a/b/coverage/lcov.info")));
    let junit = f.junit.unwrap();
    assert!(junit[1].matches(Path::new("reports/x/y/TEST-calc.xml")));
    let never = f.never_commit.unwrap();
    assert_eq!(never[1].to_string(), "dist");
    assert!(never[1].covers(Path::new("dist/app.js")));
    assert!(never[2].covers(Path::new("a/b/debug.log")));
    assert!(!never[2].covers(Path::new("a/b/debug.txt")));
}

#[test]
fn an_empty_file_sets_nothing() {
    assert_eq!(file::parse("").unwrap(), RepoFile::default());
    assert_eq!(file::parse("# nothing\n").unwrap(), RepoFile::default());
}

/// Each bad value: the key named as the file spells it, and the message.
#[test]
fn every_bad_value_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "tset_command = \"x\"",
            "tset_command",
            "unknown key (expected one of setup, setup_timeout, test_command, test_timeout, coverage, coverage_threshold, junit, fix_rounds, agent_timeout, never_commit)",
        ),
        (
            "test_command = 1",
            "test_command",
            "expected a string, found an integer",
        ),
        ("test_command = \"  \"", "test_command", "must not be empty"),
        (
            "setup = \"npm ci\"",
            "setup",
            "expected an array of commands, found a string",
        ),
        (
            "setup = [\"npm ci\", 3]",
            "setup[1]",
            "expected a string, found an integer",
        ),
        ("setup = [\"\"]", "setup[0]", "must not be empty"),
        (
            "test_timeout = \"10\"",
            "test_timeout",
            "\"10\" is not a duration (write whole numbers of s, m or h: \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "test_timeout = \"10 minutes\"",
            "test_timeout",
            "\"10 minutes\" is not a duration (write whole numbers of s, m or h: \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "test_timeout = 600",
            "test_timeout",
            "expected a string, found an integer",
        ),
        (
            "test_timeout = \"0s\"",
            "test_timeout",
            "\"0s\" is 0s: must be between 1s and 1day 12h",
        ),
        (
            "agent_timeout = \"37h\"",
            "agent_timeout",
            "\"37h\" is 1day 13h: must be between 1s and 1day 12h",
        ),
        (
            "setup_timeout = \"1h  5m\"",
            "setup_timeout",
            "\"1h  5m\" is not a duration (write whole numbers of s, m or h: \"90s\", \"10m\", \"1h 30m\")",
        ),
        (
            "coverage_threshold = 101",
            "coverage_threshold",
            "is 101: must be a number between 0 and 100",
        ),
        (
            "coverage_threshold = -0.5",
            "coverage_threshold",
            "is -0.5: must be a number between 0 and 100",
        ),
        (
            "coverage_threshold = nan",
            "coverage_threshold",
            "is NaN: must be a number between 0 and 100",
        ),
        (
            "coverage_threshold = \"80\"",
            "coverage_threshold",
            "expected a number, found a string",
        ),
        (
            "fix_rounds = 11",
            "fix_rounds",
            "is 11: must be between 0 and 10",
        ),
        (
            "fix_rounds = -1",
            "fix_rounds",
            "is -1: must not be negative",
        ),
        (
            "fix_rounds = 2.5",
            "fix_rounds",
            "expected a whole number, found a number",
        ),
        (
            "fix_rounds = 12.0",
            "fix_rounds",
            "is 12: must be between 0 and 10",
        ),
        (
            "[coverage]\nformat = \"lcov\"",
            "coverage",
            "expected an array of tables: write each report as [[coverage]], not [coverage]",
        ),
        (
            "coverage = []",
            "coverage",
            "names no report: the coverage gate always runs; name at least one, or leave the key out for the deployment's default",
        ),
        (
            "coverage = [\"lcov.info\"]",
            "coverage[0]",
            "expected a table, found a string",
        ),
        (
            "[[coverage]]\nformat = \"lcov\"\n[[coverage]]\nformat = \"lcovv\"",
            "coverage[1].format",
            "unknown format \"lcovv\" (expected one of auto, lcov, cobertura, istanbul, llvm-cov, clover, istanbul-final, coverage-py, go, jacoco)",
        ),
        (
            "[[coverage]]\nfile = \"lcov.info\"",
            "coverage[0].file",
            "unknown key (expected one of format, path)",
        ),
        (
            "[[coverage]]\npath = \"/tmp/lcov.info\"",
            "coverage[0].path",
            "\"/tmp/lcov.info\" is absolute (write it relative to the repository's root)",
        ),
        (
            "[[coverage]]\npath = \"../other/lcov.info\"",
            "coverage[0].path",
            "\"../other/lcov.info\" must stay inside the repository (no . or .. component)",
        ),
        (
            "junit = [\"a/./b.xml\"]",
            "junit[0]",
            "\"a/./b.xml\" must stay inside the repository (no . or .. component)",
        ),
        (
            "junit = [\"reports\\\\junit.xml\"]",
            "junit[0]",
            "\"reports\\\\junit.xml\" holds a backslash (write paths with /)",
        ),
        (
            "junit = [\"a//b.xml\"]",
            "junit[0]",
            "\"a//b.xml\" holds an empty path component (//)",
        ),
        ("junit = [\"./\"]", "junit[0]", "\"./\" names no path"),
        (
            "junit = [\"[unclosed.xml\"]",
            "junit[0]",
            "\"[unclosed.xml\" is not a valid glob: unclosed character class; missing ']'",
        ),
        (
            "never_commit = \"dist\"",
            "never_commit",
            "expected an array of paths or globs, found a string",
        ),
        (
            "never_commit = [\"a\\u0007b\"]",
            "never_commit[0]",
            "\"a\\u{7}b\" holds a control character",
        ),
    ];
    for (text, key, message) in cases {
        let e = key_of(text);
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            (*key, *message),
            "{text}"
        );
        assert_eq!(e.to_string(), format!("{key}: {message}"));
    }
}

#[test]
fn syntax_errors_say_where() {
    let e = key_of("test_command = \"npm test\"\nfix_rounds = = 2\n");
    assert_eq!(e.key, "");
    assert!(
        e.message.starts_with("not valid TOML at line 2, column "),
        "{e}"
    );
    let e = key_of("fix_rounds = 1\nfix_rounds = 2\n");
    assert!(e.message.contains("duplicate key"), "{e}");
}

#[test]
fn too_many_entries_and_too_long_values_are_refused() {
    let many = format!(
        "junit = [{}]",
        (0..33)
            .map(|i| format!("\"r{i}.xml\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(
        key_of(&many).to_string(),
        "junit: holds 33 entries: at most 32"
    );
    let long = format!("test_command = \"{}\"", "x".repeat(4097));
    assert_eq!(
        key_of(&long).to_string(),
        "test_command: is longer than 4096 characters"
    );
    let long = format!("never_commit = [\"{}\"]", "a".repeat(1025));
    assert!(
        key_of(&long)
            .to_string()
            .ends_with("is longer than 1024 characters"),
    );
}

#[test]
fn durations_add_up_their_parts() {
    let d = |s: &str| file::duration("k", &toml::Value::String(s.into()));
    assert_eq!(d("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(d("1h 30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(d("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(d("36h").unwrap(), Duration::from_secs(36 * 3600));
    for bad in ["", "m", "1", "1d", "1.5h", " 1h", "1h ", "-1s", "1000000s"] {
        assert!(d(bad).is_err(), "{bad:?}");
    }
}

fn repo() -> RepoName {
    RepoName::parse("acme/calc").unwrap()
}

/// No file: exactly the deployment's values (and the file itself never committed).
#[test]
fn without_a_file_the_deployment_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::defaults();
    cfg.test_cmd = "make check".into();
    cfg.coverage_threshold = 70.0;
    cfg.coverage_format = CoverageFormat::Go;
    cfg.junit_path = Some("out/junit.xml".into());
    let s = resolve(&cfg, &repo(), dir.path()).unwrap();
    assert_eq!(s, deployment(&cfg));
    assert_eq!(s.file, None);
    assert_eq!(s.test_command, "make check");
    assert_eq!(s.test_timeout, Duration::from_secs(600));
    assert_eq!(s.agent_timeout, Duration::from_secs(40 * 60));
    assert_eq!(s.coverage_threshold, 70.0);
    assert_eq!(s.coverage.len(), 1);
    assert_eq!(s.coverage[0].format, CoverageFormat::Go);
    assert_eq!(s.coverage[0].path, None);
    assert_eq!(
        s.coverage[0].path_setting,
        "--coverage-path (KIRO_COVERAGE_PATH)"
    );
    assert_eq!(s.junit[0].to_string(), "out/junit.xml");
    assert_eq!(s.junit_setting, "--junit-path (KIRO_JUNIT_PATH)");
    assert_eq!(
        s.fix_rounds,
        Config::defaults().fix_rounds,
        "the deployment's --fix-rounds default"
    );
    assert!(s.setup.is_empty());
    assert_eq!(s.never_commit_paths(), [Path::new(FILE)]);
}

fn with_file(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".kiro")).unwrap();
    std::fs::write(dir.path().join(FILE), text).unwrap();
    dir
}

/// Each key the file sets wins; every other key keeps the deployment's value.
#[test]
fn the_file_wins_key_by_key() {
    let mut cfg = Config::defaults();
    cfg.test_cmd = "npm test".into();
    cfg.coverage_threshold = 80.0;
    cfg.junit_path = Some("junit.xml".into());
    let dir = with_file("coverage_threshold = 50\nfix_rounds = 0\n");
    let s = resolve(&cfg, &repo(), dir.path()).unwrap();
    assert_eq!(s.file, Some(FILE));
    assert_eq!(s.coverage_threshold, 50.0);
    assert_eq!(s.fix_rounds, 0);
    assert_eq!(s.test_command, "npm test");
    assert_eq!(s.junit[0].to_string(), "junit.xml");
    assert_eq!(s.coverage, deployment(&cfg).coverage);

    let dir = with_file(FULL);
    let s = resolve(&cfg, &repo(), dir.path()).unwrap();
    assert_eq!(s.test_command, ".venv/bin/pytest --junitxml=junit.xml");
    assert_eq!(s.setup.len(), 2);
    assert_eq!(s.setup_timeout, Duration::from_secs(240));
    assert_eq!(s.coverage.len(), 2);
    assert_eq!(
        s.coverage[1].path_setting,
        format!("coverage[1].path in {FILE}")
    );
    assert_eq!(s.junit.len(), 2);
    assert_eq!(s.junit_setting, format!("junit in {FILE}"));
    assert_eq!(s.fix_rounds, 3);
    assert_eq!(s.agent_timeout, Duration::from_secs(1800));
    let never: Vec<String> = s.never_commit.iter().map(|p| p.to_string()).collect();
    assert_eq!(never, [FILE, ".venv", "dist", "**/*.log"]);
    // An empty list clears the deployment's JUnit path.
    let dir = with_file("junit = []\n");
    assert!(resolve(&cfg, &repo(), dir.path()).unwrap().junit.is_empty());
}

/// The reason a bad file gives: repository, file, key, what is wrong.
#[test]
fn a_bad_file_is_permanent_input_naming_repository_file_and_key() {
    let dir = with_file("[[coverage]]\nformat = \"lcov\"\n\n[[coverage]]\nformat = \"lcovv\"\n");
    let f = resolve(&Config::defaults(), &repo(), dir.path()).unwrap_err();
    assert_eq!(f.class, FailureClass::PermanentInput);
    assert_eq!(
        f.reason,
        "acme/calc: .kiro/codebuild-worker.toml: coverage[1].format: unknown format \
         \"lcovv\" (expected one of auto, lcov, cobertura, istanbul, llvm-cov, clover, \
         istanbul-final, coverage-py, go, jacoco)"
    );
    let dir = with_file("fix_rounds = = 1");
    let f = resolve(&Config::defaults(), &repo(), dir.path()).unwrap_err();
    assert!(
        f.reason
            .starts_with("acme/calc: .kiro/codebuild-worker.toml: not valid TOML at line 1"),
        "{}",
        f.reason
    );
}

#[cfg(unix)]
#[test]
fn a_settings_file_outside_the_checkout_or_not_a_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".kiro")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join(FILE)).unwrap();
    let f = resolve(&Config::defaults(), &repo(), dir.path()).unwrap_err();
    assert_eq!(f.class, FailureClass::PermanentInput);
    assert_eq!(
        f.reason,
        "acme/calc: the settings file .kiro/codebuild-worker.toml resolves outside the \
         checkout"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(FILE)).unwrap();
    let f = resolve(&Config::defaults(), &repo(), dir.path()).unwrap_err();
    assert_eq!(
        f.reason,
        "acme/calc: the settings file .kiro/codebuild-worker.toml is not a regular file (a \
         directory)"
    );
    let dir = with_file(&"#".repeat(65 * 1024));
    let f = resolve(&Config::defaults(), &repo(), dir.path()).unwrap_err();
    assert!(
        f.reason
            .ends_with("is larger than the limit of 65536 bytes"),
        "{}",
        f.reason
    );
}

/// The file's limits must leave the worker room to report inside a known build time-out.
#[test]
fn the_files_limits_must_fit_in_the_build() {
    let mut cfg = Config::defaults();
    cfg.build_timeout = Some(Duration::from_secs(3600).into());
    // The defaults fit a 60m build with 1m 30s to spare: setup commands need room.
    let dir = with_file("setup = [\"npm ci\"]\n");
    let f = resolve(&cfg, &repo(), dir.path()).unwrap_err();
    assert_eq!(
        f.reason,
        "acme/calc: .kiro/codebuild-worker.toml: setup: --build-timeout \
         (KIRO_BUILD_TIMEOUT) is 1h, but --agent-preflight-timeout \
         (KIRO_AGENT_PREFLIGHT_TIMEOUT) 30s + --agent-timeout (KIRO_AGENT_TIMEOUT) 40m + \
         setup_timeout 5m + --test-timeout (KIRO_TEST_TIMEOUT) 10m + --fence-wait \
         (KIRO_FENCE_WAIT) 3m + 5m for checkout, push and report need 1h 3m 30s: the \
         worker could not report before the build is stopped; lower those limits or raise \
         the build's time-out"
    );
    let dir = with_file("setup = [\"npm ci\"]\nagent_timeout = \"35m\"\n");
    let s = resolve(&cfg, &repo(), dir.path()).unwrap();
    assert_eq!(s.agent_timeout, Duration::from_secs(35 * 60));
    let dir = with_file("agent_timeout = \"50m\"\ntest_timeout = \"5m\"\n");
    let f = resolve(&cfg, &repo(), dir.path()).unwrap_err();
    assert!(
        f.reason.starts_with(
            "acme/calc: .kiro/codebuild-worker.toml: test_timeout, agent_timeout: \
             --build-timeout (KIRO_BUILD_TIMEOUT) is 1h, but --agent-preflight-timeout \
             (KIRO_AGENT_PREFLIGHT_TIMEOUT) 30s + agent_timeout 50m + test_timeout 5m + "
        ),
        "{}",
        f.reason
    );
    // An unknown build time-out: only each value's own range.
    cfg.build_timeout = None;
    assert!(resolve(&cfg, &repo(), dir.path()).is_ok());
}

/// A glob's matches: relative to the checkout, sorted, never through a symlink, never in
/// `.git`, in `node_modules` only when the glob names it.
#[cfg(unix)]
#[test]
fn globs_expand_inside_the_checkout_only() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    for f in [
        "packages/b/coverage/lcov.info",
        "packages/a/coverage/lcov.info",
        "packages/a/deep/coverage/lcov.info",
        ".git/packages/x/coverage/lcov.info",
        "node_modules/m/junit.xml",
        "junit.xml",
        "a/b/junit.xml",
    ] {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "x").unwrap();
    }
    std::fs::create_dir_all(outside.path().join("coverage")).unwrap();
    std::fs::write(outside.path().join("coverage/lcov.info"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("packages/evil")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("linked")).unwrap();
    let expand = |g: &str| -> Vec<String> {
        RepoPattern::parse(g)
            .unwrap()
            .expand(root)
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    assert_eq!(
        expand("packages/*/coverage/lcov.info"),
        [
            "packages/a/coverage/lcov.info",
            "packages/b/coverage/lcov.info"
        ]
    );
    assert_eq!(expand("**/junit.xml"), ["a/b/junit.xml", "junit.xml"]);
    assert_eq!(
        expand("node_modules/*/junit.xml"),
        ["node_modules/m/junit.xml"]
    );
    assert!(expand("linked/*/lcov.info").is_empty());
    assert!(expand("nowhere/*.xml").is_empty());
    // A literal path is itself, whether or not it exists.
    assert_eq!(expand("out/lcov.info"), ["out/lcov.info"]);
}
