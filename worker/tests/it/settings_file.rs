//! The repository settings file's two descriptions agree: the JSON Schema
//! (`schemas/codebuild-worker.schema.json`) and the worker's parser give the same answer
//! on a table of good and bad files (the few things a schema cannot say are listed, and
//! the schema must then be the looser one); and every recipe in README.md parses,
//! validates and fits the default 60m build.

use kiro_worker::repo_settings::file;
use std::path::Path;
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas/codebuild-worker.schema.json"))
        .expect("the schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

/// The file as JSON (the TOML document read as a JSON value), or `None` when the text
/// is not TOML at all.
fn as_json(text: &str) -> Option<serde_json::Value> {
    let table: toml::Table = text.parse().ok()?;
    Some(serde_json::to_value(table).expect("TOML converts to JSON"))
}

/// What the schema says of `text`, with its errors.
fn schema_says(v: &jsonschema::Validator, text: &str) -> Result<(), String> {
    let json = as_json(text).ok_or_else(|| "not TOML".to_owned())?;
    let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Both accept.
    Good,
    /// Both refuse.
    Bad,
    /// Only the worker refuses: a rule no JSON Schema keyword states (said why).
    OnlyTheWorkerRefuses(&'static str),
}
use Expect::*;

const TABLE: &[(&str, Expect)] = &[
    ("", Good),
    ("test_command = \"npm test\"", Good),
    (
        "setup = [\"npm ci\", \"npm run build\"]\nsetup_timeout = \"3m\"",
        Good,
    ),
    ("test_timeout = \"1h 30m\"", Good),
    ("test_timeout = \"1h30m\"", Good),
    ("agent_timeout = \"90s\"", Good),
    ("coverage_threshold = 0", Good),
    ("coverage_threshold = 100", Good),
    ("coverage_threshold = 87.5", Good),
    ("fix_rounds = 0", Good),
    ("fix_rounds = 10", Good),
    ("fix_rounds = 2.0", Good),
    ("junit = []", Good),
    (
        "junit = [\"junit.xml\", \"target/surefire-reports/TEST-*.xml\", \"**/junit.xml\"]",
        Good,
    ),
    (
        "never_commit = [\".venv\", \"dist/\", \"./build\", \"**/*.log\", \"{a,b}/*.tmp\", \"..hidden\", \".env\"]",
        Good,
    ),
    (
        "[[coverage]]\nformat = \"lcov\"\npath = \"coverage/lcov.info\"\n[[coverage]]\npath = \"packages/*/coverage/coverage-final.json\"\nformat = \"istanbul-final\"",
        Good,
    ),
    ("[[coverage]]\nformat = \"go\"", Good),
    ("[[coverage]]", Good),
    // Unknown keys, anywhere.
    ("tset_command = \"npm test\"", Bad),
    ("[[coverage]]\nfile = \"lcov.info\"", Bad),
    ("[extra]\nx = 1", Bad),
    // Types.
    ("test_command = 1", Bad),
    ("test_command = [\"npm\", \"test\"]", Bad),
    ("setup = \"npm ci\"", Bad),
    ("setup = [1]", Bad),
    ("test_timeout = 600", Bad),
    ("coverage_threshold = \"80\"", Bad),
    ("coverage_threshold = true", Bad),
    ("coverage_threshold = nan", Bad),
    ("coverage_threshold = inf", Bad),
    ("fix_rounds = 2.5", Bad),
    ("fix_rounds = \"2\"", Bad),
    ("junit = \"junit.xml\"", Bad),
    ("never_commit = [1]", Bad),
    ("[coverage]\nformat = \"lcov\"", Bad),
    ("coverage = [\"lcov.info\"]", Bad),
    ("agent_timeout = 2026-12-02T10:00:00Z", Bad),
    // Values.
    ("test_command = \"\"", Bad),
    ("test_command = \"   \"", Bad),
    ("setup = [\"\"]", Bad),
    ("test_timeout = \"10\"", Bad),
    ("test_timeout = \"10 m\"", Bad),
    ("test_timeout = \"1d\"", Bad),
    ("test_timeout = \"1.5h\"", Bad),
    ("test_timeout = \"1h  5m\"", Bad),
    ("test_timeout = \" 1h\"", Bad),
    ("coverage_threshold = 100.5", Bad),
    ("coverage_threshold = -1", Bad),
    ("fix_rounds = 11", Bad),
    ("fix_rounds = -1", Bad),
    ("coverage = []", Bad),
    ("[[coverage]]\nformat = \"lcovv\"", Bad),
    ("[[coverage]]\nformat = \"LCOV\"", Bad),
    ("[[coverage]]\npath = \"/abs/lcov.info\"", Bad),
    ("[[coverage]]\npath = \"../up/lcov.info\"", Bad),
    ("[[coverage]]\npath = \"a/../b\"", Bad),
    ("[[coverage]]\npath = \"a/./b\"", Bad),
    ("[[coverage]]\npath = \"./\"", Bad),
    ("[[coverage]]\npath = \"\"", Bad),
    ("junit = [\"a//b.xml\"]", Bad),
    ("junit = [\"a\\\\b.xml\"]", Bad),
    ("junit = [\"a\\tb.xml\"]", Bad),
    ("junit = [\"a\\u0085b.xml\"]", Bad),
    ("junit = [\"..\"]", Bad),
    ("junit = [\"a/.\"]", Bad),
    // Sizes.
    (
        "setup = [\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]",
        Bad,
    ),
    // What a schema cannot say.
    (
        "test_timeout = \"0s\"",
        OnlyTheWorkerRefuses("a duration's range (1s to 36h) is not a pattern"),
    ),
    (
        "agent_timeout = \"37h\"",
        OnlyTheWorkerRefuses("a duration's range (1s to 36h) is not a pattern"),
    ),
    (
        "junit = [\"[unclosed.xml\"]",
        OnlyTheWorkerRefuses("a glob's syntax is not a pattern"),
    ),
    (
        "never_commit = [\"logs/[z-a].log\"]",
        OnlyTheWorkerRefuses("a glob's syntax is not a pattern"),
    ),
];

#[test]
fn the_schema_and_the_worker_agree_on_good_and_bad_files() {
    let v = validator();
    for (text, expect) in TABLE {
        let worker = file::parse(text).map(|_| ()).map_err(|e| e.to_string());
        let schema = schema_says(&v, text);
        match expect {
            Good => {
                assert_eq!(worker, Ok(()), "the worker refuses {text:?}");
                assert_eq!(schema, Ok(()), "the schema refuses {text:?}");
            }
            Bad => {
                assert!(worker.is_err(), "the worker accepts {text:?}");
                assert!(schema.is_err(), "the schema accepts {text:?}");
            }
            OnlyTheWorkerRefuses(why) => {
                assert!(worker.is_err(), "the worker accepts {text:?}");
                assert_eq!(schema, Ok(()), "{why}: {text:?}");
            }
        }
    }
}

/// Longer than a limit by one character: refused by both (built here, not in the table).
#[test]
fn the_length_limits_agree() {
    let v = validator();
    for (text, good) in [
        (format!("test_command = \"{}\"", "x".repeat(4096)), true),
        (format!("test_command = \"{}\"", "x".repeat(4097)), false),
        (format!("junit = [\"{}\"]", "é".repeat(1024)), true),
        (format!("junit = [\"{}\"]", "é".repeat(1025)), false),
    ] {
        assert_eq!(
            file::parse(&text).is_ok(),
            good,
            "worker, {} chars",
            text.len()
        );
        assert_eq!(
            schema_says(&v, &text).is_ok(),
            good,
            "schema, {} chars",
            text.len()
        );
    }
}

/// Every key the worker knows is in the schema, and no other.
#[test]
fn the_schema_lists_exactly_the_workers_keys() {
    let text =
        std::fs::read_to_string(root().join("schemas/codebuild-worker.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut known = file::KEYS.to_vec();
    known.sort_unstable();
    assert_eq!(keys, known);
    let formats: Vec<String> =
        schema["properties"]["coverage"]["items"]["properties"]["format"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
    assert_eq!(formats, file::format_names());
}

/// The README's recipes: the fenced `toml` blocks of its repository-settings section.
fn readme_recipes() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("### Repository settings")
        .expect("README.md has a repository settings section");
    let section = &readme[start..];
    let end = section[4..].find("\n### ").map_or(section.len(), |e| e + 4);
    let mut recipes = Vec::new();
    let mut rest = &section[..end];
    while let Some(open) = rest.find("```toml\n") {
        let body = &rest[open + 8..];
        let close = body.find("```").expect("a closed block");
        recipes.push(body[..close].to_owned());
        rest = &body[close + 3..];
    }
    recipes
}

#[test]
fn every_readme_recipe_parses_validates_and_fits_a_60m_build() {
    let v = validator();
    let recipes = readme_recipes();
    assert!(recipes.len() >= 9, "{} recipes", recipes.len());
    let mut cfg = kiro_worker::Config::defaults();
    cfg.build_timeout = Some(Duration::from_secs(3600).into());
    for recipe in &recipes {
        let f = file::parse(recipe).unwrap_or_else(|e| panic!("{e}\n{recipe}"));
        schema_says(&v, recipe).unwrap_or_else(|e| panic!("{e}\n{recipe}"));
        let s =
            kiro_worker::repo_settings::merge(&cfg, f).unwrap_or_else(|e| panic!("{e}\n{recipe}"));
        assert!(!s.coverage.is_empty());
    }
}
