//! AWS connection settings and the one function that turns them into an `SdkConfig`.
//!
//! Invariant: every AWS client of this crate is built from the `SdkConfig` returned by
//! [`sdk_config`], so one endpoint override (`endpoint_url`) reaches every service, and the
//! SDK's own retries are off — retrying is decided by [`super::retry`] from the error's
//! class, in one place.
//!
//! Credentials come from the SDK's default chain (environment, profile, web identity, ECS
//! task role, instance metadata). Only when an endpoint override is set (an emulator such
//! as moto) and the environment names no credentials at all, static test credentials
//! (`test`/`test`) are used so a local run needs no AWS account.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use std::time::Duration;

/// How to reach AWS (or an emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// One endpoint for every service (an emulator such as `http://127.0.0.1:5000`).
    pub endpoint_url: Option<String>,
    /// Time limit for connecting.
    pub connect_timeout: Duration,
    /// Time limit for one attempt of one call (must exceed the long-poll wait of 20 s).
    pub attempt_timeout: Duration,
}

impl AwsSettings {
    /// Settings for `region` with default timeouts and no endpoint override.
    pub fn new(region: impl Into<String>) -> Self {
        AwsSettings {
            region: region.into(),
            endpoint_url: None,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(40),
        }
    }

    /// The same settings with every service sent to `url`.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }
}

/// Environment variables that mean "credentials are configured" for the default chain.
const CREDENTIAL_VARS: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

fn credentials_in_environment() -> bool {
    CREDENTIAL_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Whether [`sdk_config`] will use the static test credentials for `settings`.
pub fn uses_test_credentials(settings: &AwsSettings) -> bool {
    settings.endpoint_url.is_some() && !credentials_in_environment()
}

/// Build the `SdkConfig` every AWS client of this crate uses.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_attempt_timeout(settings.attempt_timeout)
                .build(),
        );
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if uses_test_credentials(settings) {
        loader =
            loader.credentials_provider(Credentials::new("test", "test", None, None, "kiro-test"));
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_and_region_reach_the_config() {
        let s = AwsSettings::new("eu-west-1").with_endpoint("http://127.0.0.1:1");
        let c = sdk_config(&s).await;
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:1"));
        assert_eq!(c.retry_config().map(|r| r.max_attempts()), Some(1));
        let t = c.timeout_config().map(|t| t.operation_attempt_timeout());
        assert_eq!(t, Some(Some(Duration::from_secs(40))));
    }

    #[tokio::test]
    async fn no_endpoint_means_no_override() {
        let c = sdk_config(&AwsSettings::new("us-east-1")).await;
        assert_eq!(c.endpoint_url(), None);
        assert!(!uses_test_credentials(&AwsSettings::new("us-east-1")));
    }
}
