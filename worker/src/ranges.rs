//! The valid range of every duration and count setting of `kiro-worker run`, and the
//! relation between them, checked once after parsing ([`check`]) with kiro-runtime's
//! shared range checks.
//!
//! Invariant: a setting outside its range, or limits that leave the worker no time to
//! report inside the build's own time-out, is an [`InvalidSetting`] naming the flag and
//! its variable; `main` prints it, still writes the outcome (`permanent-input`) and exits
//! 2. The ranges stated here are the ones `--help` and README.md state.

use crate::config::Config;
use kiro_runtime::range::{InvalidSetting, count_in_range, in_range, named, number_in_range};
use std::time::Duration;

/// The longest build CodeBuild runs (36 h): no limit inside a build can be longer.
pub const LONGEST_BUILD: Duration = Duration::from_secs(36 * 3600);

/// The longest preflight (`kiro-cli whoami`).
pub const LONGEST_PREFLIGHT: Duration = Duration::from_secs(10 * 60);

/// The longest fence wait.
pub const LONGEST_FENCE_WAIT: Duration = Duration::from_secs(3600);

/// The most fix rounds after the first (`--fix-rounds`).
pub const MOST_FIX_ROUNDS: u32 = 10;

/// What the build needs besides the agent, the tests and the fence wait: checkout,
/// commit, push, report, board, outcome.
pub const REPORT_ROOM: Duration = Duration::from_secs(5 * 60);

/// Every duration and count within its range, and, when the build's time-out is known,
/// the limits inside it: the first problem, named by flag and variable.
pub fn check(cfg: &Config) -> Result<(), InvalidSetting> {
    let s = Duration::from_secs;
    let agent: Duration = cfg.agent_timeout.into();
    let preflight: Duration = cfg.agent_preflight_timeout.into();
    let tests: Duration = cfg.test_timeout.into();
    let fence_wait: Duration = cfg.fence_wait.into();
    in_range(
        "agent-timeout",
        "KIRO_AGENT_TIMEOUT",
        agent,
        s(1),
        LONGEST_BUILD,
    )?;
    in_range(
        "agent-preflight-timeout",
        "KIRO_AGENT_PREFLIGHT_TIMEOUT",
        preflight,
        s(1),
        LONGEST_PREFLIGHT,
    )?;
    in_range(
        "test-timeout",
        "KIRO_TEST_TIMEOUT",
        tests,
        s(1),
        LONGEST_BUILD,
    )?;
    in_range(
        "fence-wait",
        "KIRO_FENCE_WAIT",
        fence_wait,
        s(0),
        LONGEST_FENCE_WAIT,
    )?;
    number_in_range(
        "coverage-threshold",
        "KIRO_COVERAGE_THRESHOLD",
        cfg.coverage_threshold,
        0.0,
        100.0,
    )?;
    count_in_range(
        "fix-rounds",
        "KIRO_FIX_ROUNDS",
        u64::from(cfg.fix_rounds),
        0,
        u64::from(MOST_FIX_ROUNDS),
    )?;
    let Some(build) = cfg.build_timeout.map(Duration::from) else {
        return Ok(());
    };
    in_range(
        "build-timeout",
        "KIRO_BUILD_TIMEOUT",
        build,
        s(1),
        LONGEST_BUILD,
    )?;
    fits_in_build(
        &named("build-timeout", "KIRO_BUILD_TIMEOUT"),
        build,
        &[
            (
                named("agent-preflight-timeout", "KIRO_AGENT_PREFLIGHT_TIMEOUT"),
                preflight,
            ),
            (named("agent-timeout", "KIRO_AGENT_TIMEOUT"), agent),
            (named("test-timeout", "KIRO_TEST_TIMEOUT"), tests),
            (named("fence-wait", "KIRO_FENCE_WAIT"), fence_wait),
        ],
    )
    .map_err(InvalidSetting)
}

/// Whether the named limits (`terms`) and [`REPORT_ROOM`] fit inside the build's time-out
/// `build` (named `build_name`); if not, a message naming each term and what they need.
/// Shared by the start-up check and a repository's settings file
/// ([`crate::repo_settings`]).
pub fn fits_in_build(
    build_name: &str,
    build: Duration,
    terms: &[(String, Duration)],
) -> Result<(), String> {
    // Checked sums: each term is at most 36 h, so this cannot overflow, but never wrap.
    let needed = terms
        .iter()
        .map(|(_, d)| *d)
        .chain([REPORT_ROOM])
        .try_fold(Duration::ZERO, Duration::checked_add)
        .unwrap_or(Duration::MAX);
    if needed <= build {
        return Ok(());
    }
    let f = humantime::format_duration;
    let sum: String = terms
        .iter()
        .map(|(name, d)| format!("{name} {} + ", f(*d)))
        .collect();
    Err(format!(
        "{build_name} is {}, but {sum}{} for checkout, push and report need {}: the worker \
         could not report before the build is stopped; lower those limits or raise the \
         build's time-out",
        f(build),
        f(REPORT_ROOM),
        f(needed),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> humantime::Duration {
        text.parse().unwrap()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(check(&Config::defaults()), Ok(()));
    }

    /// Each setting at the edges of its range: inside passes, outside names the flag and
    /// the variable.
    #[test]
    fn every_setting_outside_its_range_is_named() {
        type Set = fn(&mut Config, &str);
        let cases: [(Set, &str, &str, &str); 14] = [
            (
                |c, v| c.fix_rounds = v.parse().unwrap(),
                "11",
                "10",
                "--fix-rounds (KIRO_FIX_ROUNDS)",
            ),
            (
                |c, v| c.agent_timeout = d(v),
                "0s",
                "1s",
                "--agent-timeout (KIRO_AGENT_TIMEOUT)",
            ),
            (
                |c, v| c.agent_timeout = d(v),
                "37h",
                "36h",
                "--agent-timeout (KIRO_AGENT_TIMEOUT)",
            ),
            (
                |c, v| c.agent_preflight_timeout = d(v),
                "0s",
                "1s",
                "--agent-preflight-timeout (KIRO_AGENT_PREFLIGHT_TIMEOUT)",
            ),
            (
                |c, v| c.agent_preflight_timeout = d(v),
                "11m",
                "10m",
                "--agent-preflight-timeout (KIRO_AGENT_PREFLIGHT_TIMEOUT)",
            ),
            (
                |c, v| c.test_timeout = d(v),
                "0s",
                "1s",
                "--test-timeout (KIRO_TEST_TIMEOUT)",
            ),
            (
                |c, v| c.test_timeout = d(v),
                "999999999999h",
                "36h",
                "--test-timeout (KIRO_TEST_TIMEOUT)",
            ),
            (
                |c, v| c.fence_wait = d(v),
                "61m",
                "1h",
                "--fence-wait (KIRO_FENCE_WAIT)",
            ),
            (
                |c, v| c.fence_wait = d(v),
                "2h",
                "0s",
                "--fence-wait (KIRO_FENCE_WAIT)",
            ),
            (
                |c, v| c.coverage_threshold = v.parse().unwrap(),
                "101",
                "100",
                "--coverage-threshold (KIRO_COVERAGE_THRESHOLD)",
            ),
            (
                |c, v| c.coverage_threshold = v.parse().unwrap(),
                "-1",
                "0",
                "--coverage-threshold (KIRO_COVERAGE_THRESHOLD)",
            ),
            (
                |c, v| c.coverage_threshold = v.parse().unwrap(),
                "NaN",
                "80",
                "--coverage-threshold (KIRO_COVERAGE_THRESHOLD)",
            ),
            (
                |c, v| c.build_timeout = Some(d(v)),
                "0s",
                "36h",
                "--build-timeout (KIRO_BUILD_TIMEOUT)",
            ),
            (
                |c, v| c.build_timeout = Some(d(v)),
                "37h",
                "36h",
                "--build-timeout (KIRO_BUILD_TIMEOUT)",
            ),
        ];
        for (set, bad, good, name) in cases {
            let mut c = Config::defaults();
            set(&mut c, good);
            assert_eq!(check(&c), Ok(()), "{name} = {good}");
            set(&mut c, bad);
            let e = check(&c).unwrap_err().0;
            assert!(e.starts_with(&format!("{name} is ")), "{name} = {bad}: {e}");
            assert!(e.contains("must be"), "{name} = {bad}: {e}");
        }
    }

    /// The limits inside a known build time-out leave the worker room to report: the
    /// agent's time limit equal to the build's used to kill a slow agent's build before
    /// the worker could say why.
    #[test]
    fn the_limits_must_leave_room_inside_a_known_build_timeout() {
        let mut c = Config::defaults();
        // The defaults fit a 60m build (CodeBuild's default, the local runner's).
        c.build_timeout = Some(d("60m"));
        assert_eq!(check(&c), Ok(()));
        c.agent_timeout = d("60m");
        c.test_timeout = d("30m");
        let e = check(&c).unwrap_err().0;
        assert_eq!(
            e,
            "--build-timeout (KIRO_BUILD_TIMEOUT) is 1h, but --agent-preflight-timeout \
             (KIRO_AGENT_PREFLIGHT_TIMEOUT) 30s + --agent-timeout (KIRO_AGENT_TIMEOUT) 1h + \
             --test-timeout (KIRO_TEST_TIMEOUT) 30m + --fence-wait (KIRO_FENCE_WAIT) 3m + \
             5m for checkout, push and report need 1h 38m 30s: the worker could not report \
             before the build is stopped; lower those limits or raise the build's time-out"
        );
        // Exactly enough room.
        c.build_timeout = Some(d("98m 30s"));
        assert_eq!(check(&c), Ok(()));
        c.agent_timeout = d("40m");
        c.test_timeout = d("10m");
        c.build_timeout = Some(d("60m"));
        assert_eq!(check(&c), Ok(()));
        c.fence_wait = d("5m");
        c.agent_preflight_timeout = d("1s");
        assert!(check(&c).is_err());
    }
}
