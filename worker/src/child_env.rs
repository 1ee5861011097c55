//! The environments of the worker's children (the agent, its preflight, the tests):
//! allow-lists, never the worker's own environment.
//!
//! Invariant: a child starts from an empty environment and gets only
//! - [`COMMON`] variables (and every `LC_*`) from the worker's environment: `PATH`, locale,
//!   `TERM`, `TMPDIR`, `TZ` and the proxy settings;
//! - for the tests also `CI` ([`TESTS_ONLY`]);
//! - the names the operator lists in `KIRO_AGENT_ENV_PASS` / `KIRO_TEST_ENV_PASS`
//!   (comma- or space-separated), except that a name [`refused`] (cloud credentials
//!   `AWS_*`, `ECS_CONTAINER_METADATA_URI*`, the GitHub token, `KIRO_*` internals) is a
//!   `permanent-input` failure naming the setting and the variable;
//! - what the step itself sets (a fresh `HOME`, the agent's own `KIRO_API_KEY`, …).
//!
//! So neither the agent nor the tests ever see `AWS_SECRET_ACCESS_KEY`,
//! `AWS_CONTAINER_CREDENTIALS_*`, `GITHUB_TOKEN`/`GH_TOKEN`, and the tests never see
//! `KIRO_API_KEY`.

use kiro_protocol::{Failure, FailureClass};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use tokio::process::Command;

/// Passed to every child from the worker's environment (plus every `LC_*`).
pub const COMMON: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TMPDIR",
    "TZ",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// Passed to the tests only.
pub const TESTS_ONLY: &[&str] = &["CI"];

/// The operator's extra list for the agent.
pub const AGENT_PASS_SETTING: &str = "KIRO_AGENT_ENV_PASS";
/// The operator's extra list for the tests.
pub const TEST_PASS_SETTING: &str = "KIRO_TEST_ENV_PASS";

/// A name no child is given from the worker's environment, whatever the settings say.
pub fn refused(name: &str) -> bool {
    name.starts_with("AWS_")
        || name.starts_with("ECS_CONTAINER_METADATA_URI")
        || name.starts_with("KIRO_")
        || matches!(name, "GITHUB_TOKEN" | "GH_TOKEN")
}

/// The names of an extra list (`A,B C`), each a plain variable name and not [`refused`].
pub fn parse_extra(setting: &str, raw: Option<&str>) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    for name in raw
        .unwrap_or("")
        .split([',', ' ', '\n', '\t'])
        .filter(|n| !n.is_empty())
    {
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !plain {
            return Err(Failure::new(
                FailureClass::PermanentInput,
                format!(
                    "{setting} holds {}, which is not a variable name",
                    kiro_protocol::ids::quote_for_display(name)
                ),
            ));
        }
        if refused(name) {
            return Err(Failure::new(
                FailureClass::PermanentInput,
                format!(
                    "{setting} names {name}, which is never passed to a child (cloud credentials, the GitHub token and KIRO_* settings are withheld)"
                ),
            ));
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

/// The variables a child inherits, chosen from a snapshot of the worker's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    vars: BTreeMap<OsString, OsString>,
}

impl ChildEnv {
    /// The allow-listed variables of `parent`: [`COMMON`], `LC_*`, `also` and `extra`.
    pub fn allow_listed(
        parent: impl IntoIterator<Item = (OsString, OsString)>,
        also: &[&str],
        extra: &[String],
    ) -> ChildEnv {
        let wanted = |name: &OsStr| {
            let Some(n) = name.to_str() else {
                return false;
            };
            if refused(n) {
                return false;
            }
            COMMON.contains(&n)
                || n.starts_with("LC_")
                || also.contains(&n)
                || extra.iter().any(|e| e == n)
        };
        ChildEnv {
            vars: parent.into_iter().filter(|(k, _)| wanted(k)).collect(),
        }
    }

    /// For the agent: [`COMMON`] and the operator's agent list.
    pub fn for_agent(
        parent: impl IntoIterator<Item = (OsString, OsString)>,
        extra: &[String],
    ) -> ChildEnv {
        Self::allow_listed(parent, &[], extra)
    }

    /// For the tests: [`COMMON`], [`TESTS_ONLY`] and the operator's test list.
    pub fn for_tests(
        parent: impl IntoIterator<Item = (OsString, OsString)>,
        extra: &[String],
    ) -> ChildEnv {
        Self::allow_listed(parent, TESTS_ONLY, extra)
    }

    /// The names passed.
    pub fn names(&self) -> impl Iterator<Item = &OsStr> {
        self.vars.keys().map(OsString::as_os_str)
    }

    /// Clear `cmd`'s environment and give it these variables (the step adds its own).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env_clear();
        cmd.envs(self.vars.iter());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Vec<(OsString, OsString)> {
        [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("CI", "true"),
            ("https_proxy", "http://proxy:3128"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
            ("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("KIRO_API_KEY", "ksk_x"),
            ("KIRO_LEASE_TABLE", "t"),
            ("NPM_CONFIG_REGISTRY", "https://registry.internal"),
            ("SOMETHING_ELSE", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn names(e: &ChildEnv) -> Vec<String> {
        e.names()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn only_the_allow_list_passes() {
        let extra = vec!["NPM_CONFIG_REGISTRY".to_owned()];
        assert_eq!(
            names(&ChildEnv::for_agent(parent(), &[])),
            ["LANG", "LC_ALL", "PATH", "https_proxy"]
        );
        assert_eq!(
            names(&ChildEnv::for_tests(parent(), &extra)),
            [
                "CI",
                "LANG",
                "LC_ALL",
                "NPM_CONFIG_REGISTRY",
                "PATH",
                "https_proxy"
            ]
        );
    }

    #[test]
    fn extra_lists_refuse_credentials_by_name() {
        assert_eq!(
            parse_extra(TEST_PASS_SETTING, Some("NPM_CONFIG_REGISTRY, CARGO_HOME")).unwrap(),
            ["NPM_CONFIG_REGISTRY", "CARGO_HOME"]
        );
        assert!(parse_extra(AGENT_PASS_SETTING, None).unwrap().is_empty());
        for bad in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "ECS_CONTAINER_METADATA_URI",
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "KIRO_API_KEY",
        ] {
            let e = parse_extra(TEST_PASS_SETTING, Some(bad)).unwrap_err();
            assert_eq!(e.class, FailureClass::PermanentInput);
            assert!(
                e.reason
                    .starts_with(&format!("{TEST_PASS_SETTING} names {bad}, ")),
                "{}",
                e.reason
            );
        }
        let e = parse_extra(AGENT_PASS_SETTING, Some("A=B")).unwrap_err();
        assert!(e.reason.contains("not a variable name"), "{}", e.reason);
    }
}
