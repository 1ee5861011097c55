//! The buildspec parser: CodeBuild's `buildspec.yml`, version 0.2 only.
//!
//! Owns the typed [`BuildSpec`] the local runner executes. Invariant: a spec that parses
//! has a supported version, only known phases, every command as a string and every
//! exported variable name a valid shell identifier (it is written into the phase script);
//! anything else is a [`BuildSpecError`] naming the offending key. Keys CodeBuild accepts
//! but the local runner cannot honour (`reports`, `artifacts`, `cache`, secrets, …) are
//! accepted and ignored with a log line that names keys and variables, never values.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use thiserror::Error;
use tracing::{debug, warn};

/// The one buildspec version this runner executes.
pub const SUPPORTED_VERSION: &str = "0.2";

/// Top-level keys CodeBuild accepts that the local runner ignores.
const IGNORED_TOP_LEVEL: [&str; 6] = ["reports", "artifacts", "cache", "run-as", "proxy", "batch"];

/// A buildspec that cannot be used.
#[derive(Debug, Error)]
pub enum BuildSpecError {
    #[error("cannot read buildspec {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("buildspec is not valid YAML: {0}")]
    Yaml(String),
    #[error("buildspec version {found} is not supported (only version {SUPPORTED_VERSION})")]
    Version { found: String },
    #[error("buildspec key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl BuildSpecError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        BuildSpecError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A build phase, in CodeBuild's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PhaseName {
    Install,
    PreBuild,
    Build,
    PostBuild,
}

impl PhaseName {
    /// Every phase, in execution order.
    pub const ALL: [PhaseName; 4] = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];

    /// CodeBuild's phase name (`PRE_BUILD`), as reported in a build's status.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Install => "INSTALL",
            PhaseName::PreBuild => "PRE_BUILD",
            PhaseName::Build => "BUILD",
            PhaseName::PostBuild => "POST_BUILD",
        }
    }

    /// The key under `phases:` in the buildspec (`pre_build`).
    pub fn key(self) -> &'static str {
        match self {
            PhaseName::Install => "install",
            PhaseName::PreBuild => "pre_build",
            PhaseName::Build => "build",
            PhaseName::PostBuild => "post_build",
        }
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failing phase means for the rest of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Stop the build (a failed BUILD still runs POST_BUILD, as CodeBuild does).
    #[default]
    Abort,
    /// Go on with the next phase; the build still ends FAILED.
    Continue,
}

/// One phase: its commands, its `finally` block and its failure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: PhaseName,
    pub commands: Vec<String>,
    pub finally: Vec<String>,
    pub on_failure: OnFailure,
}

/// The `env` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecEnv {
    pub variables: BTreeMap<String, String>,
    pub exported_variables: Vec<String>,
    /// The shell named by `env.shell`; `None` means the runner's default.
    pub shell: Option<String>,
}

/// A parsed buildspec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildSpec {
    pub env: SpecEnv,
    /// The phases present in the file, in execution order.
    pub phases: Vec<Phase>,
}

impl BuildSpec {
    /// Read and parse the buildspec at `path`.
    pub fn load(path: &Path) -> Result<BuildSpec, BuildSpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| BuildSpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        BuildSpec::parse(&text)
    }

    /// Parse buildspec text.
    pub fn parse(text: &str) -> Result<BuildSpec, BuildSpecError> {
        let doc: Value =
            serde_saphyr::from_str(text).map_err(|e| BuildSpecError::Yaml(e.to_string()))?;
        let top = match doc {
            Value::Object(m) => m,
            Value::Null => return Err(BuildSpecError::Yaml("the file is empty".into())),
            _ => {
                return Err(BuildSpecError::Yaml(
                    "the top level must be a mapping".into(),
                ));
            }
        };
        let version = match top.get("version") {
            None => return Err(BuildSpecError::invalid("version", "missing")),
            Some(v) => scalar(v).ok_or_else(|| {
                BuildSpecError::invalid("version", "must be a scalar such as 0.2")
            })?,
        };
        if version != SUPPORTED_VERSION {
            return Err(BuildSpecError::Version { found: version });
        }
        let mut spec = BuildSpec::default();
        for (key, value) in &top {
            match key.as_str() {
                "version" => {}
                "env" => spec.env = parse_env(value)?,
                "phases" => spec.phases = parse_phases(value)?,
                k if IGNORED_TOP_LEVEL.contains(&k) => {
                    debug!(key = k, "buildspec key ignored by the local runner");
                }
                other => {
                    return Err(BuildSpecError::invalid(
                        other,
                        "unknown top-level key (expected version, env, phases, reports, artifacts, cache, run-as, proxy or batch)",
                    ));
                }
            }
        }
        Ok(spec)
    }

    /// The phase called `name`, if the file has it.
    pub fn phase(&self, name: PhaseName) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// A YAML scalar as text: strings as they are, numbers and booleans as written.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn mapping<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, BuildSpecError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(BuildSpecError::invalid(key, "must be a mapping")),
    }
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, BuildSpecError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                scalar(item).ok_or_else(|| {
                    BuildSpecError::invalid(format!("{key}[{i}]"), "must be a string")
                })
            })
            .collect(),
        _ => Err(BuildSpecError::invalid(key, "must be a list of strings")),
    }
}

/// Whether `name` can be used as a shell variable name.
pub fn is_shell_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_env(v: &Value) -> Result<SpecEnv, BuildSpecError> {
    let mut env = SpecEnv::default();
    if v.is_null() {
        return Ok(env);
    }
    for (key, value) in mapping(v, "env")? {
        let path = format!("env.{key}");
        match key.as_str() {
            "variables" => {
                if value.is_null() {
                    continue;
                }
                for (name, val) in mapping(value, &path)? {
                    let var_key = format!("{path}.{name}");
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(BuildSpecError::invalid(
                            var_key,
                            "is not a valid environment variable name",
                        ));
                    }
                    let text = scalar(val)
                        .ok_or_else(|| BuildSpecError::invalid(&var_key, "must be a string"))?;
                    env.variables.insert(name.clone(), text);
                }
            }
            "exported-variables" => {
                for (i, name) in string_list(value, &path)?.into_iter().enumerate() {
                    if !is_shell_identifier(&name) {
                        return Err(BuildSpecError::invalid(
                            format!("{path}[{i}]"),
                            format!("{name:?} is not a valid variable name"),
                        ));
                    }
                    if !env.exported_variables.contains(&name) {
                        env.exported_variables.push(name);
                    }
                }
            }
            "shell" => {
                let shell = scalar(value)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| BuildSpecError::invalid(&path, "must name a shell"))?;
                env.shell = Some(shell);
            }
            "secrets-manager" | "parameter-store" => {
                if let Value::Object(m) = value {
                    for name in m.keys() {
                        warn!(
                            variable = %name,
                            source = %key,
                            "the local runner cannot resolve this variable; it stays unset"
                        );
                    }
                } else if !value.is_null() {
                    return Err(BuildSpecError::invalid(&path, "must be a mapping"));
                }
            }
            "git-credential-helper" => debug!(key = %path, "buildspec key ignored"),
            other => {
                return Err(BuildSpecError::invalid(
                    format!("env.{other}"),
                    "unknown key (expected variables, exported-variables, shell, secrets-manager, parameter-store or git-credential-helper)",
                ));
            }
        }
    }
    Ok(env)
}

fn parse_phases(v: &Value) -> Result<Vec<Phase>, BuildSpecError> {
    let mut phases = Vec::new();
    if v.is_null() {
        return Ok(phases);
    }
    let map = mapping(v, "phases")?;
    for key in map.keys() {
        if !PhaseName::ALL.iter().any(|p| p.key() == key) {
            return Err(BuildSpecError::invalid(
                format!("phases.{key}"),
                "unknown phase (expected install, pre_build, build or post_build)",
            ));
        }
    }
    for name in PhaseName::ALL {
        let Some(body) = map.get(name.key()) else {
            continue;
        };
        let path = format!("phases.{}", name.key());
        let mut phase = Phase {
            name,
            commands: Vec::new(),
            finally: Vec::new(),
            on_failure: OnFailure::Abort,
        };
        if !body.is_null() {
            for (key, value) in mapping(body, &path)? {
                let key_path = format!("{path}.{key}");
                match key.as_str() {
                    "commands" => phase.commands = string_list(value, &key_path)?,
                    "finally" => phase.finally = string_list(value, &key_path)?,
                    "on-failure" => {
                        phase.on_failure = match scalar(value).as_deref() {
                            Some("ABORT") => OnFailure::Abort,
                            Some("CONTINUE") => OnFailure::Continue,
                            _ => {
                                return Err(BuildSpecError::invalid(
                                    key_path,
                                    "must be ABORT or CONTINUE",
                                ));
                            }
                        }
                    }
                    "run-as" | "runtime-versions" => {
                        debug!(key = %key_path, "buildspec key ignored by the local runner");
                    }
                    other => {
                        return Err(BuildSpecError::invalid(
                            format!("{path}.{other}"),
                            "unknown key (expected commands, finally, on-failure, run-as or runtime-versions)",
                        ));
                    }
                }
            }
        }
        phases.push(phase);
    }
    Ok(phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
version: 0.2
env:
  shell: bash
  variables:
    GREETING: "hello world"
    COUNT: 3
    FLAG: true
  exported-variables:
    - KIRO_OUTCOME
    - GREETING
  secrets-manager:
    KIRO_API_KEY: "arn:aws:secretsmanager:eu-west-1:1:secret:kiro:key"
  parameter-store:
    OTHER: /some/param
phases:
  post_build:
    commands:
      - echo post
  install:
    runtime-versions:
      python: 3.12
    commands:
      - echo install
  build:
    on-failure: CONTINUE
    commands:
      - echo build
      - |
        if true; then
          echo multi
        fi
    finally:
      - echo finally
reports:
  junit:
    files: ["**/*.xml"]
artifacts:
  files: ["**/*"]
cache:
  paths: ["/root/.cargo"]
"#;

    #[test]
    fn parses_a_full_buildspec_in_phase_order() {
        let spec = BuildSpec::parse(FULL).unwrap();
        assert_eq!(spec.env.shell.as_deref(), Some("bash"));
        assert_eq!(spec.env.variables["GREETING"], "hello world");
        assert_eq!(spec.env.variables["COUNT"], "3");
        assert_eq!(spec.env.variables["FLAG"], "true");
        assert!(!spec.env.variables.contains_key("KIRO_API_KEY"));
        assert_eq!(
            spec.env.exported_variables,
            vec!["KIRO_OUTCOME", "GREETING"]
        );
        let names: Vec<_> = spec.phases.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            vec![PhaseName::Install, PhaseName::Build, PhaseName::PostBuild]
        );
        let build = spec.phase(PhaseName::Build).unwrap();
        assert_eq!(build.on_failure, OnFailure::Continue);
        assert_eq!(build.commands.len(), 2);
        assert!(build.commands[1].contains("echo multi"));
        assert_eq!(build.finally, vec!["echo finally"]);
        assert_eq!(
            spec.phase(PhaseName::Install).unwrap().on_failure,
            OnFailure::Abort
        );
        assert!(spec.phase(PhaseName::PreBuild).is_none());
    }

    #[test]
    fn only_version_0_2_is_accepted() {
        let err = BuildSpec::parse("version: 0.1\nphases: {}\n").unwrap_err();
        assert!(
            matches!(err, BuildSpecError::Version { ref found } if found == "0.1"),
            "{err}"
        );
        let err = BuildSpec::parse("version: \"1.0\"\n").unwrap_err();
        assert!(err.to_string().contains("1.0"), "{err}");
        let err = BuildSpec::parse("phases: {}\n").unwrap_err();
        assert!(err.to_string().contains("`version`"), "{err}");
        assert!(BuildSpec::parse("version: \"0.2\"\n").is_ok());
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            ("version: 0.2\nprebuild: {}\n", "`prebuild`"),
            (
                "version: 0.2\nphases:\n  prebuild:\n    commands: [x]\n",
                "`phases.prebuild`",
            ),
            (
                "version: 0.2\nphases:\n  build:\n    commands: echo\n",
                "`phases.build.commands`",
            ),
            (
                "version: 0.2\nphases:\n  build:\n    commands:\n      - a: b\n",
                "`phases.build.commands[0]`",
            ),
            (
                "version: 0.2\nphases:\n  build:\n    on-failure: RETRY\n",
                "`phases.build.on-failure`",
            ),
            (
                "version: 0.2\nphases:\n  build:\n    comands: [x]\n",
                "`phases.build.comands`",
            ),
            (
                "version: 0.2\nenv:\n  exported-variables: [\"A-B\"]\n",
                "`env.exported-variables[0]`",
            ),
            ("version: 0.2\nenv:\n  variables: [a]\n", "`env.variables`"),
            (
                "version: 0.2\nenv:\n  variables:\n    X: [1]\n",
                "`env.variables.X`",
            ),
            ("version: 0.2\nenv:\n  varables: {}\n", "`env.varables`"),
        ];
        for (text, key) in cases {
            let err = BuildSpec::parse(text).unwrap_err();
            assert!(err.to_string().contains(key), "{text:?} -> {err}");
        }
    }

    #[test]
    fn malformed_yaml_and_empty_files_are_errors() {
        assert!(matches!(
            BuildSpec::parse("version: [0.2\n"),
            Err(BuildSpecError::Yaml(_))
        ));
        assert!(matches!(BuildSpec::parse(""), Err(BuildSpecError::Yaml(_))));
        assert!(matches!(
            BuildSpec::parse("- a\n- b\n"),
            Err(BuildSpecError::Yaml(_))
        ));
    }

    #[test]
    fn load_reports_the_path() {
        let err = BuildSpec::load(Path::new("/nonexistent/buildspec.yml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/buildspec.yml"),
            "{err}"
        );
    }

    #[test]
    fn shell_identifiers() {
        assert!(is_shell_identifier("KIRO_OUTCOME"));
        assert!(is_shell_identifier("_x1"));
        assert!(!is_shell_identifier("1x"));
        assert!(!is_shell_identifier("a-b"));
        assert!(!is_shell_identifier(""));
    }
}
