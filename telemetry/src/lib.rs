//! Telemetry set-up shared by `kiro-producer`, `kiro-consumer` and `kiro-worker`.
//!
//! Owns how a binary writes its logs: to stderr, filtered by `RUST_LOG` (default
//! `info`), as readable text on a terminal and as JSON lines otherwise (`auto`), or as
//! forced by `--log-format` / `KIRO_LOG_FORMAT`. Invariant: logs never go to stdout, which
//! is kept for command output (tables, JSON, summaries) and, when `KIRO_METRICS=emf`, for
//! the CloudWatch Embedded Metric Format lines of [`metrics`].

pub mod metrics;
pub mod otel_env;
pub mod otlp_metrics;

use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

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

/// Install the global subscriber. Calling it twice keeps the first one.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed; keep that one.
    let _ = if format.is_json(terminal) {
        builder.json().try_init()
    } else {
        builder.with_ansi(terminal).with_target(false).try_init()
    };
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
