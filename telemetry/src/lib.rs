//! Telemetry set-up shared by `kiro-producer`, `kiro-consumer` and `kiro-worker`.
//!
//! Owns how a binary writes its logs and traces ([`otel::init`]): logs go to stderr,
//! filtered by `RUST_LOG` (default `info`), as readable text on a terminal and as JSON
//! lines otherwise (`auto`), or as forced by `--log-format` / `KIRO_LOG_FORMAT`, each line
//! inside a work item carrying its trace id and every line redacted; spans go to OTLP
//! when the `OTEL_*` environment says so ([`otel_env`]) and to the embedded span store
//! ([`spans`]) when a directory is given; both name attributes from [`keys`]. Metrics
//! are [`metric`] (the data point and the port), [`metrics`] (EMF and the sink choice)
//! and [`otlp_metrics`]. Invariant: logs never go to stdout, which is kept for command output
//! (tables, JSON, summaries) and, when `KIRO_METRICS=emf`, for the CloudWatch Embedded
//! Metric Format lines of [`metrics`].

pub mod keys;
pub mod metric;
pub mod metrics;
pub mod otel;
pub mod otel_env;
pub mod otlp_metrics;
pub mod spans;
#[cfg(feature = "testing")]
pub mod testing;

pub use otel::{Telemetry, TelemetryConfig, init};

use clap::ValueEnum;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    #[default]
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Whether this format writes JSON, given whether stderr is a terminal.
    pub fn is_json(self, stderr_is_terminal: bool) -> bool {
        match self {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !stderr_is_terminal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_text_on_a_terminal_and_json_otherwise() {
        assert!(!LogFormat::Auto.is_json(true));
        assert!(LogFormat::Auto.is_json(false));
        assert!(LogFormat::Json.is_json(true));
        assert!(!LogFormat::Text.is_json(false));
    }
}
