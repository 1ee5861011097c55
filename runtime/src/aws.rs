//! The AWS settings the binaries share: the region and the endpoint ([`AwsArgs`] →
//! `AwsSettings`), the SQS queues ([`SqsArgs`]) and the DynamoDB lease table
//! ([`LeaseTableArgs`]).
//!
//! Invariant: the region falls back to the platform's `AWS_REGION` (set by ECS and
//! CodeBuild) here and nowhere else; an empty value counts as unset; a setting the AWS
//! backend needs and does not have is a [`MissingSetting`] naming its variable.

use clap::Args;
use kiro_backends::aws::settings::AwsSettings;
use kiro_backends::aws::sqs::SqsSettings;
use kiro_protocol::env;

/// The platform's region variable, read when `KIRO_AWS_REGION` is not set.
pub const REGION_FALLBACK: &str = "AWS_REGION";

/// How a missing region is named: the setting and its fallback.
const REGION_SETTING: &str = "KIRO_AWS_REGION (or AWS_REGION)";

/// A setting the AWS backend needs is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--backend aws needs {0}")]
pub struct MissingSetting(pub &'static str);

/// A required setting, or an error naming it (`name`: its variable).
pub fn require<'a>(
    value: &'a Option<String>,
    name: &'static str,
) -> Result<&'a str, MissingSetting> {
    non_empty(value.as_deref()).ok_or(MissingSetting(name))
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|v| !v.is_empty())
}

/// Where AWS is (global: accepted before or after a subcommand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct AwsArgs {
    /// AWS region (falls back to AWS_REGION).
    #[arg(long = "aws-region", global = true, env = env::AWS_REGION)]
    pub region: Option<String>,
    /// One endpoint for every AWS service (an emulator such as moto).
    #[arg(long = "aws-endpoint-url", global = true, env = env::AWS_ENDPOINT_URL)]
    pub endpoint_url: Option<String>,
}

impl AwsArgs {
    /// The region: `--aws-region`/`KIRO_AWS_REGION`, else `AWS_REGION`.
    pub fn region(&self) -> Result<String, MissingSetting> {
        self.region_or(std::env::var(REGION_FALLBACK).ok())
    }

    /// The region, with `fallback` as the value of `AWS_REGION`.
    pub fn region_or(&self, fallback: Option<String>) -> Result<String, MissingSetting> {
        non_empty(self.region.as_deref())
            .map(str::to_owned)
            .or_else(|| fallback.filter(|r| !r.is_empty()))
            .ok_or(MissingSetting(REGION_SETTING))
    }

    /// The endpoint override, if one is set.
    pub fn endpoint_url(&self) -> Option<&str> {
        non_empty(self.endpoint_url.as_deref())
    }

    /// The connection settings every AWS client is built from.
    pub fn settings(&self) -> Result<AwsSettings, MissingSetting> {
        let settings = AwsSettings::new(self.region()?);
        Ok(match self.endpoint_url() {
            Some(url) => settings.with_endpoint(url),
            None => settings,
        })
    }
}

/// The SQS FIFO work queue and its dead-letter queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct SqsArgs {
    /// URL of the SQS FIFO work queue (`--backend aws`).
    #[arg(long, global = true, env = env::QUEUE_URL)]
    pub queue_url: Option<String>,
    /// URL of the SQS FIFO dead-letter queue (`--backend aws`).
    #[arg(long, global = true, env = env::DLQ_URL)]
    pub dlq_url: Option<String>,
}

impl SqsArgs {
    /// The queues, both required.
    pub fn settings(&self) -> Result<SqsSettings, MissingSetting> {
        let queue_url = require(&self.queue_url, env::QUEUE_URL)?;
        let dlq_url = require(&self.dlq_url, env::DLQ_URL)?;
        Ok(SqsSettings::new(queue_url, dlq_url))
    }
}

/// The DynamoDB table of leases and job records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct LeaseTableArgs {
    /// DynamoDB table of leases and job records (`--backend aws`).
    #[arg(long, global = true, env = env::LEASE_TABLE)]
    pub lease_table: Option<String>,
}

impl LeaseTableArgs {
    /// The table, required.
    pub fn table(&self) -> Result<&str, MissingSetting> {
        require(&self.lease_table, env::LEASE_TABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_falls_back_to_aws_region_and_empty_is_unset() {
        let mut a = AwsArgs::default();
        let e = a.region_or(None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--backend aws needs KIRO_AWS_REGION (or AWS_REGION)"
        );
        assert!(
            REGION_SETTING.starts_with(env::AWS_REGION) && REGION_SETTING.contains(REGION_FALLBACK)
        );
        assert!(a.region_or(Some(String::new())).is_err());
        assert_eq!(a.region_or(Some("us-east-1".into())).unwrap(), "us-east-1");
        a.region = Some(String::new());
        assert_eq!(a.region_or(Some("us-east-1".into())).unwrap(), "us-east-1");
        a.region = Some("eu-west-1".into());
        assert_eq!(a.region_or(Some("us-east-1".into())).unwrap(), "eu-west-1");
    }

    #[test]
    fn the_endpoint_reaches_the_settings_and_empty_is_none() {
        let mut a = AwsArgs {
            region: Some("eu-west-1".into()),
            endpoint_url: Some(String::new()),
        };
        assert_eq!(a.settings().unwrap(), AwsSettings::new("eu-west-1"));
        a.endpoint_url = Some("http://127.0.0.1:5000".into());
        let s = a.settings().unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(s.region, "eu-west-1");
    }

    #[test]
    fn missing_queue_settings_are_named() {
        let mut q = SqsArgs {
            queue_url: Some("q".into()),
            dlq_url: None,
        };
        assert_eq!(q.settings().unwrap_err(), MissingSetting("KIRO_DLQ_URL"));
        q.dlq_url = Some("d".into());
        let s = q.settings().unwrap();
        assert_eq!((s.queue_url.as_str(), s.dlq_url.as_str()), ("q", "d"));
        let t = LeaseTableArgs::default();
        assert_eq!(t.table().unwrap_err(), MissingSetting("KIRO_LEASE_TABLE"));
    }
}
