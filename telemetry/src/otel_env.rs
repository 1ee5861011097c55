//! Which OpenTelemetry exporters the standard `OTEL_*` environment turns on.
//!
//! Invariant: an OTLP exporter runs only when the environment names an endpoint for its
//! signal (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), the signal's exporter is not `none`
//! (`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`) and the SDK is not disabled
//! (`OTEL_SDK_DISABLED=true`). With nothing set, nothing is exported and no connection is
//! ever attempted. [`otlp_endpoint`] resolves the endpoint as the specification says (a
//! signal endpoint is used as is; the general one gets `/v1/<signal>`): the metrics sink
//! uses it, and the trace exporter of `opentelemetry-otlp` reads the same variables the
//! same way.

/// A telemetry signal with its own exporter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// `TRACES` or `METRICS`, as in the variable names.
    fn upper(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }

    /// `traces` or `metrics`, as in the OTLP/HTTP paths.
    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

/// The OTLP/HTTP endpoint of `signal` the environment names, as the specification
/// reads it: `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT` as is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/<signal>` appended; `None` when neither is set.
pub fn otlp_endpoint(signal: Signal, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    set(&format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.upper())).or_else(|| {
        set("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|base| format!("{}/v1/{}", base.trim_end_matches('/'), signal.path()))
    })
}

/// Whether the OTLP exporter of `signal` is on, reading variables through `var`.
pub fn otlp_enabled(signal: Signal, var: impl Fn(&str) -> Option<String>) -> bool {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    let exporter = var(&format!("OTEL_{}_EXPORTER", signal.upper()));
    if exporter.is_some_and(|v| v.split(',').all(|e| e.trim().eq_ignore_ascii_case("none"))) {
        return false;
    }
    otlp_endpoint(signal, var).is_some()
}

/// [`otlp_enabled`] on the process environment.
pub fn otlp_enabled_from_env(signal: Signal) -> bool {
    otlp_enabled(signal, |k| std::env::var(k).ok())
}

/// The service name: `OTEL_SERVICE_NAME` when set, else `default`.
pub fn service_name(default: &str, var: impl Fn(&str) -> Option<String>) -> String {
    var("OTEL_SERVICE_NAME")
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// An environment of `pairs`, read like [`std::env::var`] (for tests of the readers here
/// and of their callers).
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let m: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| m.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::test_env as env;
    use super::*;

    #[test]
    fn off_unless_an_endpoint_is_named() {
        assert!(!otlp_enabled(Signal::Traces, env(&[])));
        assert!(!otlp_enabled(
            Signal::Traces,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])
        ));
        assert!(otlp_enabled(
            Signal::Traces,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])
        ));
        let only_metrics = env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://x/v1/metrics")]);
        assert!(otlp_enabled(Signal::Metrics, &only_metrics));
        assert!(!otlp_enabled(Signal::Traces, &only_metrics));
    }

    #[test]
    fn none_and_disabled_win_over_an_endpoint() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(!otlp_enabled(
            Signal::Traces,
            env(&[base, ("OTEL_TRACES_EXPORTER", "none")])
        ));
        assert!(otlp_enabled(
            Signal::Metrics,
            env(&[base, ("OTEL_TRACES_EXPORTER", "none")])
        ));
        assert!(!otlp_enabled(
            Signal::Metrics,
            env(&[base, ("OTEL_SDK_DISABLED", "TRUE")])
        ));
        assert!(otlp_enabled(
            Signal::Traces,
            env(&[base, ("OTEL_TRACES_EXPORTER", "otlp")])
        ));
    }

    #[test]
    fn the_signal_endpoint_is_used_as_is_and_the_general_one_gets_the_path() {
        assert_eq!(otlp_endpoint(Signal::Metrics, env(&[])), None);
        assert_eq!(
            otlp_endpoint(
                Signal::Metrics,
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])
            )
            .as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(
            otlp_endpoint(
                Signal::Metrics,
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
                ])
            )
            .as_deref(),
            Some("http://m:9/custom")
        );
        assert_eq!(
            otlp_endpoint(
                Signal::Metrics,
                env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", " ")])
            ),
            None
        );
        assert_eq!(
            otlp_endpoint(
                Signal::Traces,
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            )
            .as_deref(),
            Some("http://c:4318/v1/traces")
        );
    }

    #[test]
    fn service_name_defaults() {
        assert_eq!(service_name("kiro-consumer", env(&[])), "kiro-consumer");
        assert_eq!(
            service_name("kiro-consumer", env(&[("OTEL_SERVICE_NAME", "c1")])),
            "c1"
        );
    }
}
