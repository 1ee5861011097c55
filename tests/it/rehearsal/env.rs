//! The environment of a process "as deployed": the rendered variables, plus the one short
//! list of additions the rehearsal is allowed to make ([`ADDITIONS`]), and the check that a
//! process got exactly that.
//!
//! Invariant: nothing reaches a rehearsed process that is not either rendered by the
//! Pulumi program (or, for the tasks, set by the image's `ENV`), provided by the AWS
//! platform itself ([`ECS_PROVIDED`],
//! [`CODEBUILD_PROVIDED`]), or in [`ADDITIONS`] — so a setting the stack forgot cannot hide
//! behind a test-only variable. [`diff`] names every extra and every missing variable.

use std::collections::{BTreeMap, BTreeSet};

/// The ONLY variables the rehearsal adds (or whose value it rewrites) beyond what the
/// stack renders. Each points a process at a local stand-in of something AWS or GitHub
/// provides in a deployment.
pub const ADDITIONS: &[(&str, &str)] = &[
    (
        "KIRO_AWS_ENDPOINT_URL",
        "every AWS call goes to the emulator on 127.0.0.1",
    ),
    (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "the role's stand-in credentials from the emulator (ECS and CodeBuild set the \
         RELATIVE_URI form of the same SDK provider, on 169.254.170.2)",
    ),
    ("KIRO_GITHUB_API_URL", "the GitHub fake (REST and GraphQL)"),
    ("KIRO_GIT_BASE", "git remotes as local bare repositories"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "value rewritten to the test's OTLP receiver (the variable itself must be rendered)",
    ),
    (
        "HOME",
        "the emulated image's home directory (a fresh one per process)",
    ),
    (
        "PATH",
        "the emulated image: kiro-worker, the stand-in kiro-cli, git, node, sh",
    ),
];

/// Variables ECS (and the container runtime) set in every Fargate task itself, values
/// rewritten to local stand-ins: `HOSTNAME` differs per task, as the container's host name.
pub const ECS_PROVIDED: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "ECS_CONTAINER_METADATA_URI_V4",
    "HOSTNAME",
];

/// Variables CodeBuild sets in every build itself (besides the `CODEBUILD_*` family).
pub const CODEBUILD_PROVIDED: &[&str] = &["AWS_REGION", "AWS_DEFAULT_REGION"];

/// The prefix of the variables CodeBuild sets in every build (`CODEBUILD_BUILD_ID`, …).
pub const CODEBUILD_PREFIX: &str = "CODEBUILD_";

/// Variables that must be in the rendered environment for the rehearsal to rewrite them.
pub const REWRITTEN_ONLY: &[&str] = &["OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Whether `name` may be added to a process beyond the rendered environment.
pub fn is_addition(name: &str) -> bool {
    ADDITIONS.iter().any(|(n, _)| *n == name) && !REWRITTEN_ONLY.contains(&name)
}

/// How an actual environment differs from the allowed one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvDiff {
    /// Variables the process has that are neither rendered, platform-provided nor listed.
    pub extra: Vec<String>,
    /// Rendered variables the process does not have.
    pub missing: Vec<String>,
    /// Rendered variables whose value the process does not have, and no listed rewrite explains.
    pub changed: Vec<String>,
}

impl EnvDiff {
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty() && self.missing.is_empty() && self.changed.is_empty()
    }
}

/// Compare `actual` with `rendered` ∪ `platform` ∪ [`ADDITIONS`]; a rendered value may only
/// differ when its name is in [`ADDITIONS`] (a rewrite), and a name whose prefix is in
/// `platform_prefixes` counts as platform-provided.
pub fn diff(
    actual: &BTreeMap<String, String>,
    rendered: &BTreeMap<String, String>,
    platform: &[&str],
    platform_prefixes: &[&str],
) -> EnvDiff {
    let mut d = EnvDiff::default();
    for (k, v) in actual {
        match rendered.get(k) {
            Some(r) if r == v => {}
            Some(_) if ADDITIONS.iter().any(|(n, _)| n == k) => {}
            Some(_) => d.changed.push(k.clone()),
            None if is_addition(k)
                || platform.contains(&k.as_str())
                || platform_prefixes.iter().any(|p| k.starts_with(p)) => {}
            None => d.extra.push(k.clone()),
        }
    }
    let have: BTreeSet<&String> = actual.keys().collect();
    d.missing = rendered
        .keys()
        .filter(|k| !have.contains(k))
        .cloned()
        .collect();
    d
}

/// Panic unless `actual` is exactly `rendered` ∪ `platform` ∪ [`ADDITIONS`], naming the process.
pub fn assert_exact(
    process: &str,
    actual: &BTreeMap<String, String>,
    rendered: &BTreeMap<String, String>,
    platform: &[&str],
    platform_prefixes: &[&str],
) {
    let d = diff(actual, rendered, platform, platform_prefixes);
    assert!(
        d.is_empty(),
        "{process}'s environment is not exactly the rendered one plus the rehearsal's listed additions:\n  \
         not rendered and not a listed addition: {:?}\n  rendered but missing: {:?}\n  \
         rendered value changed without a listed rewrite: {:?}\n  (additions allowed: {:?}; \
         the process has: {:?})",
        d.extra,
        d.missing,
        d.changed,
        ADDITIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        actual.keys().collect::<Vec<_>>()
    );
}

/// The environment of a running process, from `/proc/<pid>/environ`.
pub fn of_pid(pid: u32) -> BTreeMap<String, String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("reading the environment of process {pid}: {e}"));
    parse_nul_separated(&raw)
}

/// `NAME=value\0…` (as `/proc/<pid>/environ` and `env -0` print it).
pub fn parse_nul_separated(raw: &[u8]) -> BTreeMap<String, String> {
    raw.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let s = String::from_utf8_lossy(e);
            s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_unlisted_variable_a_missing_one_and_an_unexplained_rewrite_are_named() {
        let rendered = map(&[
            ("KIRO_BACKEND", "aws"),
            ("KIRO_QUEUE_URL", "https://q"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
        ]);
        let actual = map(&[
            ("KIRO_BACKEND", "embedded"),
            ("KIRO_BUILD_RUNNER", "codebuild"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("KIRO_AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_REGION", "eu-west-1"),
            ("CODEBUILD_BUILD_ID", "p:1"),
        ]);
        let d = diff(&actual, &rendered, ECS_PROVIDED, &[]);
        assert_eq!(d.extra, ["CODEBUILD_BUILD_ID", "KIRO_BUILD_RUNNER"]);
        assert_eq!(d.missing, ["KIRO_QUEUE_URL"]);
        assert_eq!(d.changed, ["KIRO_BACKEND"]);
        let d = diff(&actual, &rendered, CODEBUILD_PROVIDED, &["CODEBUILD_"]);
        assert_eq!(d.extra, ["KIRO_BUILD_RUNNER"]);
    }

    #[test]
    fn the_collector_endpoint_is_only_a_rewrite_never_an_addition() {
        let actual = map(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]);
        let d = diff(&actual, &BTreeMap::new(), &[], &[]);
        assert_eq!(d.extra, ["OTEL_EXPORTER_OTLP_ENDPOINT"]);
    }

    #[test]
    fn proc_environ_is_parsed() {
        let m = parse_nul_separated(b"A=1\0B=x=y\0\0");
        assert_eq!(m, map(&[("A", "1"), ("B", "x=y")]));
        let me = of_pid(std::process::id());
        assert_eq!(me.get("PATH"), std::env::var("PATH").ok().as_ref());
    }
}
