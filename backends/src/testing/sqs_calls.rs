//! [`counted_queue`]: an [`SqsQueue`] on moto whose every SQS call is counted by
//! operation name, so a test can hold an operation's cost in calls to a bound (the
//! request count is what SQS bills and throttles).
//!
//! Invariant: one count per operation the SDK executes (`read_before_serialization`
//! runs once, before the retry loop), never per attempt, so a retried call counts once.

use crate::aws::sqs::{SqsQueue, SqsSettings};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use kiro_protocol::Clock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The SQS calls made so far through one [`counted_queue`], by operation name
/// (`ReceiveMessage`, `SendMessage`, …).
#[derive(Debug, Clone, Default)]
pub struct SqsCalls(Arc<Mutex<BTreeMap<String, usize>>>);

impl SqsCalls {
    /// Every call so far.
    pub fn total(&self) -> usize {
        self.by_operation().values().sum()
    }

    /// The calls so far, per operation.
    pub fn by_operation(&self) -> BTreeMap<String, usize> {
        self.lock().clone()
    }

    /// Forget the calls so far (after a test's setup).
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl Intercept for SqsCalls {
    fn name(&self) -> &'static str {
        "kiro-sqs-call-counter"
    }

    fn read_before_serialization(
        &self,
        _: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map_or_else(|| "unknown".to_owned(), |m| m.name().to_owned());
        *self.lock().entry(name).or_default() += 1;
        Ok(())
    }
}

/// An [`SqsQueue`] on the shared moto server with `settings`, and the counter of every
/// SQS call it makes.
pub async fn counted_queue(settings: SqsSettings, clock: Arc<dyn Clock>) -> (SqsQueue, SqsCalls) {
    let calls = SqsCalls::default();
    let config = aws_sdk_sqs::config::Builder::from(&super::moto::config().await)
        .interceptor(calls.clone())
        .build();
    let queue = SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), settings, clock);
    (queue, calls)
}
