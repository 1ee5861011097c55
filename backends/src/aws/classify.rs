//! The ONE place where an AWS SDK error becomes a failure class.
//!
//! Every call site of every AWS adapter passes its `SdkError` through [`classify`] and
//! works with the resulting [`AwsError`]: a [`FailureClass`], the service's error code,
//! whether the request may have been applied anyway ([`AwsError::outcome_unknown`]), and
//! whether it was a conditional-check failure (which only the caller can interpret: a
//! held lease, a lost fence).
//!
//! Rules (first match wins):
//! - construction failures and user-side dispatch errors → `internal` (a bug or bad config);
//! - timeouts, dispatch failures, unparseable responses → `transient`, outcome unknown;
//! - throttling codes (`Throttling*`, `*Throttled*`, `TooManyRequests*`,
//!   `ProvisionedThroughputExceeded*`, `RequestLimitExceeded`, `SlowDown`, HTTP 429) and
//!   CodeBuild's `AccountLimitExceededException` (the concurrent build limit: a build can
//!   start once another ends) and SQS's `OverLimit` (too many messages in flight: a
//!   receive can succeed once some are deleted) → `throttled`;
//! - conditional-check failures → `contention` with [`AwsError::condition_failed`] set;
//! - `*AccessDenied*` (SQS's `KmsAccessDenied` included), `UnrecognizedClient*`, expired
//!   or invalid tokens and signatures → `auth` (an operator's fix, never the item's fault);
//! - a stale SQS receipt (`ReceiptHandleIsInvalid`, `MessageNotInflight`) → `fence-lost`;
//! - `InternalError`/`InternalFailure`/`ServiceUnavailable`/`RequestTimeout`/
//!   `TransactionConflict`, and any HTTP 5xx → `transient`, outcome unknown for 5xx;
//! - any other HTTP 4xx → `permanent-input`; anything else → `internal`.
//!
//! A DynamoDB `TransactionCanceledException` is classified by its cancellation reasons
//! ([`class_of_cancellation`]): a failed condition is the caller's to interpret (a lost
//! fence), a conflict with another transaction is `transient`, a throttled item is
//! `throttled`; other reasons keep the classification above.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use kiro_protocol::{FailureClass, PortError};
use std::fmt;

/// A classified AWS error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub class: FailureClass,
    /// The service's error code (`ThrottlingException`, …), when it sent one.
    pub code: Option<String>,
    /// The operation, e.g. `sqs:SendMessage`.
    pub operation: String,
    pub message: String,
    /// The request may have been applied although no success was seen (timeout, 5xx,
    /// a lost connection): re-read before concluding anything.
    pub outcome_unknown: bool,
    /// The service refused a conditional write (DynamoDB `ConditionalCheckFailed`).
    pub condition_failed: bool,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
}

impl AwsError {
    /// An error built by an adapter itself (a malformed response, a missing field).
    pub fn new(operation: &str, class: FailureClass, message: impl Into<String>) -> Self {
        AwsError {
            class,
            code: None,
            operation: operation.to_owned(),
            message: message.into(),
            outcome_unknown: false,
            condition_failed: false,
            status: None,
        }
    }

    /// Whether retrying the same call may help (transient or throttled).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class,
            FailureClass::Transient | FailureClass::Throttled
        )
    }

    /// Whether the error code is `code`.
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn into_port(self) -> PortError {
        PortError::new(self.class, self.to_string())
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, " failed with {code}")?;
        } else {
            write!(f, " failed")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

impl From<AwsError> for PortError {
    fn from(e: AwsError) -> Self {
        e.into_port()
    }
}

/// Access to the HTTP status of a raw response, so [`classify`] is generic over the
/// response type of `SdkError<E, R>`.
pub trait ResponseStatus {
    fn status_code(&self) -> u16;
}

impl ResponseStatus for HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

const THROTTLING_CODES: [&str; 14] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    // CodeBuild: the account's (or project's) concurrent build limit is reached.
    "AccountLimitExceededException",
    // SQS: the queue's in-flight message limit is reached.
    "OverLimit",
];

const TRANSIENT_CODES: [&str; 10] = [
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionConflictException",
    "TransactionInProgressException",
];

const AUTH_CODES: [&str; 10] = [
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "AuthFailure",
    "NotAuthorized",
];

const CONDITION_CODES: [&str; 1] = ["ConditionalCheckFailedException"];

const STALE_RECEIPT_CODES: [&str; 4] = [
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// The class of a service error code alone (no status), if the code decides it.
pub fn class_of_code(code: &str) -> Option<FailureClass> {
    // SQS's JSON protocol may prefix codes with the service namespace.
    let bare = code.rsplit('.').next().unwrap_or(code);
    let is = |set: &[&str]| set.contains(&code) || set.contains(&bare);
    if is(&THROTTLING_CODES) || bare.contains("Throttl") {
        return Some(FailureClass::Throttled);
    }
    if is(&CONDITION_CODES) {
        return Some(FailureClass::Contention);
    }
    if bare.contains("AccessDenied") || is(&AUTH_CODES) {
        return Some(FailureClass::Auth);
    }
    if is(&STALE_RECEIPT_CODES) {
        return Some(FailureClass::FenceLost);
    }
    if is(&TRANSIENT_CODES) {
        return Some(FailureClass::Transient);
    }
    None
}

/// The class of a cancelled DynamoDB transaction, from the codes of its
/// `CancellationReasons` (one per item; `None` for the items that were fine), when a
/// reason decides it. A failed condition wins (the write must not be retried: the caller
/// learns its fence is gone), then throttling, then a conflict with another transaction
/// (retried soon: nothing was written).
pub fn class_of_cancellation<'a>(
    reasons: impl IntoIterator<Item = Option<&'a str>>,
) -> Option<FailureClass> {
    let codes: Vec<&str> = reasons.into_iter().flatten().collect();
    if codes.contains(&"ConditionalCheckFailed") {
        return Some(FailureClass::Contention);
    }
    if codes.iter().any(|c| {
        matches!(
            *c,
            "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded"
        )
    }) {
        return Some(FailureClass::Throttled);
    }
    if codes.contains(&"TransactionConflict") {
        return Some(FailureClass::Transient);
    }
    None
}

/// Classify one SDK error of `operation` (e.g. `"sqs:SendMessage"`).
pub fn classify<E, R>(operation: &str, err: &SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: ResponseStatus + fmt::Debug,
{
    let mut out = AwsError::new(operation, FailureClass::Internal, "");
    match err {
        SdkError::ConstructionFailure(_) => {
            out.message = format!("request could not be built: {}", source_text(err));
        }
        SdkError::TimeoutError(_) => {
            out.class = FailureClass::Transient;
            out.outcome_unknown = true;
            out.message = "timed out".to_owned();
        }
        SdkError::DispatchFailure(d) => {
            if d.is_user() {
                out.message = format!("request could not be sent: {}", source_text(err));
            } else {
                out.class = FailureClass::Transient;
                out.outcome_unknown = true;
                out.message = format!("dispatch failure: {}", source_text(err));
            }
        }
        SdkError::ResponseError(r) => {
            out.class = FailureClass::Transient;
            out.outcome_unknown = true;
            out.status = Some(r.raw().status_code());
            out.message = format!("unreadable response: {}", source_text(err));
        }
        SdkError::ServiceError(s) => {
            let e = s.err();
            let status = s.raw().status_code();
            out.status = Some(status);
            out.code = e.code().map(str::to_owned);
            out.message = e.message().unwrap_or_default().to_owned();
            let by_code = out.code.as_deref().and_then(class_of_code);
            out.class = match by_code {
                Some(c) => c,
                None if status == 429 => FailureClass::Throttled,
                None if status >= 500 => FailureClass::Transient,
                None if (400..500).contains(&status) => FailureClass::PermanentInput,
                None => FailureClass::Internal,
            };
            out.condition_failed = out.class == FailureClass::Contention;
            out.outcome_unknown = status >= 500;
        }
        _ => {
            out.message = format!("unexpected SDK error: {}", source_text(err));
        }
    }
    if out.message.is_empty() {
        out.message = format!("HTTP {}", out.status.unwrap_or_default());
    }
    out
}

/// The innermost source's text (the SDK's Display is terse: "dispatch failure").
fn source_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(s) = cur {
        text = s.to_string();
        cur = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug)]
    struct Svc(ErrorMetadata);
    impl fmt::Display for Svc {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "svc")
        }
    }
    impl std::error::Error for Svc {}
    impl ProvideErrorMetadata for Svc {
        fn meta(&self) -> &ErrorMetadata {
            &self.0
        }
    }

    fn service(code: Option<&str>, status: u16) -> AwsError {
        let mut meta = ErrorMetadata::builder().message("boom");
        if let Some(c) = code {
            meta = meta.code(c);
        }
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        let err: SdkError<Svc, HttpResponse> = SdkError::service_error(Svc(meta.build()), raw);
        classify("test:Op", &err)
    }

    #[test]
    fn throttling_codes_and_429_are_throttled() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "AWS.SimpleQueueService.RequestThrottled",
            "RequestLimitExceeded",
        ] {
            let e = service(Some(code), 400);
            assert_eq!(e.class, FailureClass::Throttled, "{code}");
            assert!(e.is_retryable());
        }
        assert_eq!(service(None, 429).class, FailureClass::Throttled);
    }

    #[test]
    fn the_concurrent_build_limit_is_throttled_never_input() {
        let e = service(Some("AccountLimitExceededException"), 400);
        assert_eq!(e.class, FailureClass::Throttled);
        assert!(e.is_retryable());
        assert!(!e.outcome_unknown, "refused: no build started");
    }

    #[test]
    fn sqs_in_flight_limit_is_throttled_and_kms_denial_is_auth() {
        for code in ["OverLimit", "AWS.SimpleQueueService.OverLimit"] {
            assert_eq!(
                service(Some(code), 403).class,
                FailureClass::Throttled,
                "{code}"
            );
        }
        assert_eq!(
            service(Some("KmsAccessDenied"), 400).class,
            FailureClass::Auth
        );
        assert_eq!(
            service(Some("AWS.SimpleQueueService.KmsAccessDenied"), 400).class,
            FailureClass::Auth
        );
    }

    #[test]
    fn cancellation_reasons_decide_the_class() {
        let c = |r: &[Option<&str>]| class_of_cancellation(r.iter().copied());
        assert_eq!(
            c(&[Some("None"), Some("ConditionalCheckFailed")]),
            Some(FailureClass::Contention)
        );
        assert_eq!(
            c(&[Some("ConditionalCheckFailed"), Some("TransactionConflict")]),
            Some(FailureClass::Contention),
            "a failed condition wins"
        );
        assert_eq!(
            c(&[Some("TransactionConflict"), None]),
            Some(FailureClass::Transient)
        );
        for t in [
            "ThrottlingError",
            "ProvisionedThroughputExceeded",
            "RequestLimitExceeded",
        ] {
            assert_eq!(
                c(&[Some("None"), Some(t)]),
                Some(FailureClass::Throttled),
                "{t}"
            );
        }
        assert_eq!(c(&[Some("None"), Some("ValidationError")]), None);
        assert_eq!(c(&[]), None);
    }

    #[test]
    fn server_errors_are_transient_with_unknown_outcome() {
        let e = service(Some("InternalError"), 500);
        assert_eq!(e.class, FailureClass::Transient);
        assert!(e.outcome_unknown);
        let e = service(None, 503);
        assert_eq!(e.class, FailureClass::Transient);
        assert!(e.outcome_unknown);
        let e = service(Some("ServiceUnavailable"), 400);
        assert_eq!(e.class, FailureClass::Transient);
        assert!(!e.outcome_unknown);
    }

    #[test]
    fn auth_condition_stale_receipt_and_input() {
        assert_eq!(
            service(Some("AccessDeniedException"), 400).class,
            FailureClass::Auth
        );
        assert_eq!(
            service(Some("UnrecognizedClientException"), 400).class,
            FailureClass::Auth
        );
        assert_eq!(
            service(Some("ExpiredTokenException"), 400).class,
            FailureClass::Auth
        );
        let c = service(Some("ConditionalCheckFailedException"), 400);
        assert!(c.condition_failed);
        assert!(!c.is_retryable());
        assert_eq!(
            service(Some("ReceiptHandleIsInvalid"), 400).class,
            FailureClass::FenceLost
        );
        let v = service(Some("ValidationException"), 400);
        assert_eq!(v.class, FailureClass::PermanentInput);
        assert!(!v.is_retryable());
        assert!(v.to_string().contains("ValidationException"));
    }

    #[test]
    fn timeouts_and_dispatch_failures_are_transient_and_unknown() {
        let t: SdkError<Svc, HttpResponse> = SdkError::timeout_error("slow");
        let e = classify("test:Op", &t);
        assert_eq!(e.class, FailureClass::Transient);
        assert!(e.outcome_unknown);
        let c: SdkError<Svc, HttpResponse> = SdkError::construction_failure("bad");
        assert_eq!(classify("test:Op", &c).class, FailureClass::Internal);
    }
}
