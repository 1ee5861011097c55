//! Retries with exponential backoff and full jitter for AWS calls, decided by class.
//!
//! Invariant: only errors whose class allows it ([`AwsError::is_retryable`]: transient or
//! throttled) are retried; everything else returns at once. The SDK's own retries are off
//! (see [`super::settings`]), so this is the only retry loop and every retry is logged.
//! Sleeping goes through tokio's timer, so tests on paused time never wait.
//!
//! Call sites that must know about earlier attempts (SQS `ReceiveRequestAttemptId`: same
//! id after a network error, a new one after throttling) get an [`Attempt`] with the class
//! of the previous failure.

use super::classify::AwsError;
use backon::{ExponentialBuilder, Retryable};
use kiro_protocol::FailureClass;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How hard to retry one AWS call: attempts and the delays between them. (Whether a
/// failed *item* is tried again is the consumer's `RetryPolicy`, not this.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBackoff {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for CallBackoff {
    fn default() -> Self {
        CallBackoff {
            max_retries: 4,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl CallBackoff {
    /// No retries at all.
    pub fn none() -> Self {
        CallBackoff {
            max_retries: 0,
            ..CallBackoff::default()
        }
    }

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
    }
}

/// What a call site knows about the attempt it is making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// The class of the previous attempt's failure (`None` on the first attempt).
    pub previous: Option<FailureClass>,
}

/// Run `call` until it succeeds, fails with a class that must not be retried, or the
/// backoff's retries are spent. `call` receives the attempt it is making.
pub async fn retry<T, F, Fut>(backoff: &CallBackoff, mut call: F) -> Result<T, AwsError>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    // Atomics and a mutex (not cells) so the returned future stays `Send`.
    let number = AtomicU32::new(0);
    let previous: Mutex<Option<FailureClass>> = Mutex::new(None);
    let attempt = || {
        let n = number.fetch_add(1, Ordering::Relaxed) + 1;
        let prev = previous.lock().map(|p| *p).unwrap_or(None);
        call(Attempt {
            number: n,
            previous: prev,
        })
    };
    attempt
        .retry(backoff.builder())
        .when(AwsError::is_retryable)
        .notify(|e: &AwsError, wait: Duration| {
            if let Ok(mut p) = previous.lock() {
                *p = Some(e.class);
            }
            tracing::warn!(
                operation = %e.operation,
                class = %e.class,
                code = e.code.as_deref().unwrap_or(""),
                wait_ms = wait.as_millis() as u64,
                "AWS call failed; retrying"
            );
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn err(class: FailureClass) -> AwsError {
        AwsError::new("test:Op", class, "x")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_and_throttled_then_succeeds() {
        let seen = Mutex::new(Vec::new());
        let out = retry(&CallBackoff::default(), |a| {
            seen.lock().unwrap().push(a);
            let r = match a.number {
                1 => Err(err(FailureClass::Throttled)),
                2 => Err(err(FailureClass::Transient)),
                _ => Ok(a.number),
            };
            async move { r }
        })
        .await;
        assert_eq!(out.unwrap(), 3);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen[1].previous, Some(FailureClass::Throttled));
        assert_eq!(seen[2].previous, Some(FailureClass::Transient));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_classes_are_not_retried() {
        for class in [
            FailureClass::PermanentInput,
            FailureClass::Auth,
            FailureClass::Contention,
            FailureClass::FenceLost,
            FailureClass::Internal,
        ] {
            let calls = Cell::new(0);
            let out: Result<(), _> = retry(&CallBackoff::default(), |_| {
                calls.set(calls.get() + 1);
                async move { Err(err(class)) }
            })
            .await;
            assert_eq!(out.unwrap_err().class, class);
            assert_eq!(calls.get(), 1, "{class}");
        }
    }

    fn assert_send<T: Send>(_: T) {}

    #[test]
    fn the_retry_future_is_send() {
        assert_send(retry(&CallBackoff::none(), |_| async {
            Ok::<_, AwsError>(())
        }));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget() {
        let calls = Cell::new(0);
        let out: Result<(), _> = retry(&CallBackoff::default(), |_| {
            calls.set(calls.get() + 1);
            async move { Err(err(FailureClass::Transient)) }
        })
        .await;
        assert_eq!(out.unwrap_err().class, FailureClass::Transient);
        assert_eq!(calls.get(), 5);
    }
}
