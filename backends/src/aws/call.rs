//! The one shape of an AWS call: build the request, send it, classify a refusal, retry by
//! class.
//!
//! A call site states only what differs: the operation's name (`sqs:SendMessage`), the
//! request (built and sent anew for each attempt, from the [`Attempt`] when it must know
//! about earlier ones) and, rarely, what a refusal says beyond its class (the `refine`
//! of [`classified`]: a DynamoDB cancellation's reasons, the item a failed condition
//! returned).
//!
//! Invariant: every SDK error of every adapter call passes through [`classify`] exactly
//! once, named by its operation, before [`retry`] decides on it; so retries, their log
//! lines and the classes callers see follow the same rules for every service.

use super::classify::{AwsError, ResponseStatus, classify};
use super::retry::{Attempt, CallBackoff, retry};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::fmt;
use std::future::Future;

/// Send what `request` builds for each attempt as `operation`, retried under `backoff`
/// while the classified refusal allows it.
pub(crate) async fn call<O, E, R, Fut>(
    backoff: &CallBackoff,
    operation: &str,
    mut request: impl FnMut(Attempt) -> Fut,
) -> Result<O, AwsError>
where
    Fut: Future<Output = Result<O, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: ResponseStatus + fmt::Debug,
{
    retry(backoff, |a| {
        classified(operation, Box::pin(request(a)), |_, _| {})
    })
    .await
}

/// One attempt of `operation`: the answer of `sent`, a refusal classified; `refine` sees
/// the SDK error beside its classification, to adjust the class where the service's
/// answer says more or to keep what only the SDK error carries.
///
/// Callers hand in `sent` boxed: an SDK request future is kilobytes large, and a future
/// moved into an `async fn` is held twice, so boxing keeps every adapter's futures small.
pub(crate) async fn classified<O, E, R>(
    operation: &str,
    sent: impl Future<Output = Result<O, SdkError<E, R>>>,
    refine: impl FnOnce(&SdkError<E, R>, &mut AwsError),
) -> Result<O, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: ResponseStatus + fmt::Debug,
{
    sent.await.map_err(|e| {
        let mut c = classify(operation, &e);
        refine(&e, &mut c);
        c
    })
}

/// 32 random hex digits: what lets a repeated call be recognised (SQS's
/// `ReceiveRequestAttemptId`, the token a DynamoDB lease acquire writes and re-reads).
pub(crate) fn random_token() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}
