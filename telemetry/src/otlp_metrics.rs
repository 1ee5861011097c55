//! OTLP metrics export: the [`OtlpMetrics`] sink.
//!
//! Owns how a [`Metric`] becomes an OpenTelemetry measurement and leaves the process over
//! OTLP/HTTP (protobuf): an `opentelemetry_sdk` [`SdkMeterProvider`] whose
//! [`PeriodicReader`] exports on its own thread through `opentelemetry-otlp`'s blocking
//! HTTP exporter, every `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default), on
//! [`Metrics::flush`] and when the sink is dropped. The sink exists only when the
//! `OTEL_*` environment names an endpoint for metrics ([`crate::otel_env`]); it is
//! independent of `KIRO_METRICS`, and [`crate::metrics::MetricsMode`] fans out to EMF and
//! OTLP when both are on.
//!
//! Mapping: a count is a `u64` counter; milliseconds and percents are `f64` histograms;
//! dimensions are attributes; the metric keeps its EMF name, so a collector that writes
//! EMF (the ADOT `awsemf` exporter) yields the names the alarms read. One instrument per
//! name, created on first use and cached; a later data point with the same name but
//! another unit is dropped. A data point's own time (`at_ms`) is not carried: OpenTelemetry
//! aggregates over the export interval and stamps the interval.
//!
//! Invariant: recording never fails and never waits on the network (it only updates
//! in-memory aggregates); the network is touched only by the reader's thread, and the
//! blocking HTTP client is built and used off any tokio worker, so [`OtlpMetrics::flush`]
//! and dropping the sink are safe inside a tokio runtime (they block the calling thread
//! until the export ends: the exporter's timeout, `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by
//! default, bounds a flush; the SDK bounds the shutdown on drop to 5 s).

use crate::metric::{Metric, Metrics, Unit};
use crate::otel_env::{self, Signal};
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{ExporterBuildError, MetricExporter, Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// Why the OTLP metrics sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpMetricsError {
    /// The exporter rejected its configuration (a malformed endpoint) or could not start.
    #[error("OTLP metric exporter: {0}")]
    Exporter(#[from] ExporterBuildError),
}

/// The variable naming the temporality (`cumulative`, `delta` or `lowmemory`).
const TEMPORALITY_VAR: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";

/// Histogram bucket bounds for milliseconds: dispatch latency runs from milliseconds to
/// minutes and a build from seconds to hours (the SDK's default bounds stop at 10 s).
const MILLIS_BOUNDS: [f64; 16] = [
    10.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    600_000.0,
    1_200_000.0,
    3_600_000.0,
    7_200_000.0,
];

/// Histogram bucket bounds for percents (coverage): deciles.
const PERCENT_BOUNDS: [f64; 9] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0];

/// The export temporality: delta unless `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`
/// asks for `cumulative` or `lowmemory`.
///
/// Delta is the default because CloudWatch reads deltas: the ADOT collector's `awsemf`
/// exporter and CloudWatch's OTLP intake both turn cumulative series back into per-period
/// deltas, which loses the first period after every restart of a consumer; and with delta
/// the SDK forgets a series (a failure class, say) once it is exported instead of keeping
/// every attribute set for the life of the process. A Prometheus-style backend that needs
/// cumulative series can ask for them with the standard variable.
pub fn temporality(var: impl Fn(&str) -> Option<String>) -> Temporality {
    match var(TEMPORALITY_VAR)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("cumulative") => Temporality::Cumulative,
        Some("lowmemory") => Temporality::LowMemory,
        _ => Temporality::Delta,
    }
}

/// One cached instrument, with the unit it was created for.
#[derive(Clone)]
enum Instrument {
    Counter(Counter<u64>),
    Histogram(Histogram<f64>, Unit),
}

/// Exports metrics over OTLP/HTTP (protobuf). Shuts its meter provider down (a last
/// export) when dropped.
pub struct OtlpMetrics {
    provider: SdkMeterProvider,
    meter: Meter,
    endpoint: String,
    instruments: Mutex<HashMap<String, Instrument>>,
}

impl fmt::Debug for OtlpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpMetrics")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpMetrics {
    /// Export to `endpoint`, the full URL of the metrics path (used as is, e.g.
    /// `http://127.0.0.1:4318/v1/metrics`), as the service `service`, with delta
    /// temporality. Headers, timeout and compression still come from the `OTEL_*`
    /// environment, read by the exporter.
    pub fn new(endpoint: &str, service: &str) -> Result<Self, OtlpMetricsError> {
        Self::build(endpoint, service, Temporality::Delta)
    }

    /// The sink the `OTEL_*` variables read through `var` describe, or `None` when they do
    /// not turn OTLP metrics on ([`otel_env::otlp_enabled`]); the service is
    /// `OTEL_SERVICE_NAME`, else `default_service`.
    pub fn from_vars(
        default_service: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, OtlpMetricsError> {
        if !otel_env::otlp_enabled(Signal::Metrics, &var) {
            return Ok(None);
        }
        let Some(endpoint) = otel_env::otlp_endpoint(Signal::Metrics, &var) else {
            return Ok(None);
        };
        let service = otel_env::service_name(default_service, &var);
        Self::build(&endpoint, &service, temporality(&var)).map(Some)
    }

    /// [`OtlpMetrics::from_vars`] on the process environment. A sink that cannot be built
    /// (a malformed endpoint) is logged and left out: metrics are never fatal.
    pub fn from_env(default_service: &str) -> Option<Self> {
        match Self::from_vars(default_service, |k| std::env::var(k).ok()) {
            Ok(sink) => sink,
            Err(error) => {
                tracing::warn!(%error, "OTLP metrics export is off");
                None
            }
        }
    }

    fn build(
        endpoint: &str,
        service: &str,
        temporality: Temporality,
    ) -> Result<Self, OtlpMetricsError> {
        // The exporter builds its blocking reqwest client on a thread of its own, so this is
        // safe to call from async code.
        let exporter = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_temporality(temporality)
            .build()?;
        // The interval comes from `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default: one
        // CloudWatch standard-resolution period).
        let reader = PeriodicReader::builder(exporter).build();
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope);
        Ok(OtlpMetrics {
            provider,
            meter,
            endpoint: endpoint.to_owned(),
            instruments: Mutex::new(HashMap::new()),
        })
    }

    /// Where the metrics go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The instrument for `name`, created for `unit` on first use.
    fn instrument(&self, name: &str, unit: Unit) -> Instrument {
        let mut cache = match self.instruments.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(i) = cache.get(name) {
            return i.clone();
        }
        let i = match unit {
            Unit::Count => Instrument::Counter(
                self.meter
                    .u64_counter(name.to_owned())
                    .with_unit("1")
                    .build(),
            ),
            // A histogram, not a gauge, for coverage too: a gauge keeps only the last value
            // of each export interval, so with several builds finishing in one minute all
            // but one coverage figure would be lost; a histogram keeps count, sum, min and
            // max, which is what the EMF data points give CloudWatch (average, minimum,
            // maximum over the period).
            Unit::Milliseconds | Unit::Percent => {
                let (ucum, bounds) = match unit {
                    Unit::Milliseconds => ("ms", MILLIS_BOUNDS.to_vec()),
                    _ => ("%", PERCENT_BOUNDS.to_vec()),
                };
                Instrument::Histogram(
                    self.meter
                        .f64_histogram(name.to_owned())
                        .with_unit(ucum)
                        .with_boundaries(bounds)
                        .build(),
                    unit,
                )
            }
        };
        cache.insert(name.to_owned(), i.clone());
        i
    }
}

impl Metrics for OtlpMetrics {
    fn record(&self, m: Metric) {
        if !m.value.is_finite() {
            return;
        }
        let attributes: Vec<KeyValue> = m
            .dimensions
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        match self.instrument(&m.name, m.unit) {
            // A counter only goes up; counts are whole and far below 2^53.
            Instrument::Counter(c) if m.unit == Unit::Count && m.value >= 0.0 => {
                c.add(m.value.round() as u64, &attributes);
            }
            Instrument::Histogram(h, unit) if unit == m.unit => h.record(m.value, &attributes),
            // A negative count, or a name first recorded with another unit: dropped (best
            // effort).
            _ => {}
        }
    }

    /// Export what has been recorded now, blocking until the exporter answers or times out.
    fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::debug!(%error, "OTLP metrics flush failed");
        }
    }
}

impl Drop for OtlpMetrics {
    fn drop(&mut self) {
        // A last export; the SDK waits at most 5 s for it.
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "OTLP metrics shutdown failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel_env::test_env as env;

    #[test]
    fn temporality_is_delta_unless_asked_otherwise() {
        assert_eq!(temporality(env(&[])), Temporality::Delta);
        assert_eq!(
            temporality(env(&[(TEMPORALITY_VAR, "Cumulative")])),
            Temporality::Cumulative
        );
        assert_eq!(
            temporality(env(&[(TEMPORALITY_VAR, "lowmemory")])),
            Temporality::LowMemory
        );
        assert_eq!(
            temporality(env(&[(TEMPORALITY_VAR, "bogus")])),
            Temporality::Delta
        );
    }

    #[test]
    fn nothing_is_built_without_an_endpoint() {
        assert!(OtlpMetrics::from_vars("svc", env(&[])).unwrap().is_none());
        let disabled = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(OtlpMetrics::from_vars("svc", disabled).unwrap().is_none());
        let none = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert!(OtlpMetrics::from_vars("svc", none).unwrap().is_none());
    }

    #[test]
    fn a_malformed_endpoint_is_an_error() {
        let bad = env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://[::1")]);
        assert!(OtlpMetrics::from_vars("svc", bad).is_err());
    }
}
