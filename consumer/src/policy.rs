//! The retry policy: the one place that decides retry-with-backoff or dead-letter.
//!
//! Adapters classify failures; this module only reads the class and the attempts
//! counted in the job record (counted by `JobRecord`'s methods only). Contention and
//! lost fences never burn an attempt; a non-retryable class is dead-lettered at once; a
//! retryable one is retried with exponential backoff and full jitter (from `backon`)
//! until the budget is spent.

use crate::defaults;
use backon::{BackoffBuilder, ExponentialBuilder};
use kiro_protocol::Failure;
use std::time::Duration;

/// What to do with a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Try again after this delay.
    Retry { delay: Duration },
    /// Give up: dead-letter with this reason.
    DeadLetter { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts (builds that count) before an item is dead-lettered.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: defaults::MAX_ATTEMPTS,
            base_delay: defaults::duration(defaults::RETRY_BASE),
            max_delay: defaults::duration(defaults::RETRY_MAX),
        }
    }
}

impl RetryPolicy {
    /// Decide after `attempts` counted attempts ended in `failure`.
    pub fn decide(&self, failure: &Failure, attempts: u32) -> Decision {
        if !failure.class.is_retryable() {
            return Decision::DeadLetter {
                reason: format!("not retryable: {}", failure.reason),
            };
        }
        if failure.class.burns_attempt() && attempts >= self.max_attempts {
            return Decision::DeadLetter {
                reason: format!(
                    "after {attempts} of {} attempts: {}",
                    self.max_attempts, failure.reason
                ),
            };
        }
        Decision::Retry {
            delay: self.delay(attempts),
        }
    }

    /// The backoff before retry number `attempts` (1-based), with jitter.
    pub fn delay(&self, attempts: u32) -> Duration {
        let n = usize::try_from(attempts.max(1) - 1).unwrap_or(usize::MAX);
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(n)
            .unwrap_or(self.max_delay)
            .min(self.max_delay.saturating_mul(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiro_protocol::FailureClass;
    use proptest::prelude::*;

    fn f(class: FailureClass) -> Failure {
        Failure::new(class, "x")
    }

    #[test]
    fn permanent_classes_dead_letter_at_once() {
        let p = RetryPolicy::default();
        assert!(matches!(
            p.decide(&f(FailureClass::PermanentInput), 1),
            Decision::DeadLetter { .. }
        ));
        assert!(matches!(
            p.decide(&f(FailureClass::CoverageBelow), 1),
            Decision::DeadLetter { .. }
        ));
    }

    #[test]
    fn retryable_classes_retry_until_the_budget_is_spent() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..Default::default()
        };
        assert!(matches!(
            p.decide(&f(FailureClass::TestsFailed), 1),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            p.decide(&f(FailureClass::TestsFailed), 2),
            Decision::Retry { .. }
        ));
        let Decision::DeadLetter { reason } = p.decide(&f(FailureClass::TestsFailed), 3) else {
            panic!("expected dead letter");
        };
        assert!(reason.contains("after 3 of 3 attempts"), "{reason}");
        assert!(
            !reason.contains("tests-failed"),
            "the class has its own field; the board note adds it once: {reason}"
        );
    }

    #[test]
    fn a_dead_letter_reason_does_not_repeat_the_class() {
        let p = RetryPolicy::default();
        let Decision::DeadLetter { reason } = p.decide(&f(FailureClass::CoverageBelow), 1) else {
            panic!("expected dead letter");
        };
        assert!(reason.starts_with("not retryable: "), "{reason}");
        assert!(!reason.contains("coverage-below"), "{reason}");
    }

    #[test]
    fn contention_and_fence_loss_never_spend_the_budget() {
        let p = RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        };
        assert!(matches!(
            p.decide(&f(FailureClass::Contention), 99),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            p.decide(&f(FailureClass::FenceLost), 99),
            Decision::Retry { .. }
        ));
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(attempts in 1u32..50) {
            let p = RetryPolicy { max_attempts: 5, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60) };
            let d = p.delay(attempts);
            prop_assert!(d >= Duration::from_secs(1));
            prop_assert!(d <= Duration::from_secs(120));
        }
    }
}
