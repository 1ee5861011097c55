//! Range checks of the binaries' duration and count settings: one error shape,
//! [`InvalidSetting`], naming the flag and its environment variable, which each binary
//! turns into exit status 2 before anything is wired.
//!
//! Invariant: every check says the value given and the whole valid range, in the units
//! the flag takes (`humantime` for durations), so the message alone tells what to set.
//! The `*_within` forms say the same without a name, for settings named otherwise (the
//! keys of a repository's settings file, which the worker names itself).

use std::time::Duration;

/// A setting outside its valid range, or in conflict with another (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// A setting's name as a user sees it: the flag and its variable, `--flag (VAR)`.
pub fn named(flag: &str, var: &str) -> String {
    format!("--{flag} ({var})")
}

/// `value` within `min..=max`, or an error naming the flag, the variable, the value and
/// the range.
pub fn in_range(
    flag: &str,
    var: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), InvalidSetting> {
    duration_within(value, min, max)
        .map_err(|why| InvalidSetting(format!("{} {why}", named(flag, var))))
}

/// `value` within `min..=max`, or why not, without the setting's name: `is 0s: must be
/// between 1s and 36h` (for settings named otherwise than by a flag, such as a key of a
/// repository's settings file).
pub fn duration_within(value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "is {}: must be between {} and {}",
        humantime::format_duration(value),
        humantime::format_duration(min),
        humantime::format_duration(max)
    ))
}

/// A count within `min..=max`, or an error naming the flag, the variable, the value and
/// the range.
pub fn count_in_range(
    flag: &str,
    var: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), InvalidSetting> {
    count_within(value, min, max)
        .map_err(|why| InvalidSetting(format!("{} {why}", named(flag, var))))
}

/// A count within `min..=max`, or why not, without the setting's name.
pub fn count_within(value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!("is {value}: must be between {min} and {max}"))
}

/// A finite number within `min..=max` (NaN and infinities are outside every range), or an
/// error naming the flag, the variable, the value and the range.
pub fn number_in_range(
    flag: &str,
    var: &str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<(), InvalidSetting> {
    number_within(value, min, max)
        .map_err(|why| InvalidSetting(format!("{} {why}", named(flag, var))))
}

/// A finite number within `min..=max`, or why not, without the setting's name.
pub fn number_within(value: f64, min: f64, max: f64) -> Result<(), String> {
    if value.is_finite() && (min..=max).contains(&value) {
        return Ok(());
    }
    Err(format!(
        "is {value}: must be a number between {min} and {max}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_flag_variable_value_and_range() {
        let s = Duration::from_secs;
        assert_eq!(
            in_range("lease-ttl", "KIRO_LEASE_TTL", s(60), s(1), s(3600)),
            Ok(())
        );
        assert_eq!(
            in_range("lease-ttl", "KIRO_LEASE_TTL", s(1), s(1), s(3600)),
            Ok(())
        );
        assert_eq!(
            in_range("lease-ttl", "KIRO_LEASE_TTL", s(0), s(1), s(3600))
                .unwrap_err()
                .0,
            "--lease-ttl (KIRO_LEASE_TTL) is 0s: must be between 1s and 1h"
        );
        assert_eq!(
            count_in_range("max-jobs", "KIRO_MAX_JOBS", 5000, 1, 5000),
            Ok(())
        );
        assert_eq!(
            count_in_range("max-jobs", "KIRO_MAX_JOBS", 0, 1, 5000)
                .unwrap_err()
                .0,
            "--max-jobs (KIRO_MAX_JOBS) is 0: must be between 1 and 5000"
        );
        let pct = |v| {
            number_in_range(
                "coverage-threshold",
                "KIRO_COVERAGE_THRESHOLD",
                v,
                0.0,
                100.0,
            )
        };
        assert_eq!(pct(0.0), Ok(()));
        assert_eq!(pct(100.0), Ok(()));
        for bad in [-0.5, 100.5, f64::NAN, f64::INFINITY] {
            let e = pct(bad).unwrap_err().0;
            assert!(
                e.starts_with("--coverage-threshold (KIRO_COVERAGE_THRESHOLD) is ")
                    && e.ends_with("must be a number between 0 and 100"),
                "{e}"
            );
        }
    }
}
