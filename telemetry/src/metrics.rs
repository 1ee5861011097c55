//! Metrics sinks: the implementations of the [`Metrics`] port, and the choice of sink.
//!
//! A [`Metric`] (see [`crate::metric`], re-exported here) is handed to a [`Metrics`] sink,
//! which is [`EmfMetrics`] in production (one CloudWatch Embedded Metric Format JSON line
//! per metric, written to stdout where the awslogs driver or the CloudWatch agent picks it
//! up), [`OtlpMetrics`] when the `OTEL_*` environment names a metrics endpoint, [`FanOut`]
//! when both are on, [`NoMetrics`] when metrics are off, and [`MemoryMetrics`] in tests. [`MetricsMode`] (`KIRO_METRICS`) turns EMF on or
//! off (a value naming no mode is a [`MetricsModeError`], never a silent off); OTLP is turned on by the `OTEL_*` variables alone, so either, both or neither may
//! run. Invariant: recording never fails and never blocks on anything but the writer
//! (never on the network); an I/O or export error is dropped (metrics are best effort,
//! never fatal). [`Metrics::flush`] is for shutdown: it may block the calling thread while
//! buffered data points are sent.

pub use crate::metric::{FAILURE_CLASS_DIMENSION, Metric, Metrics, NAMESPACE, Unit, names};
use crate::otlp_metrics::OtlpMetrics;
use clap::ValueEnum;
use kiro_protocol::env;
use serde_json::{Map, Value, json};
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every data point to each of several sinks (EMF and OTLP both on).
#[derive(Debug, Clone)]
pub struct FanOut {
    sinks: Vec<Arc<dyn Metrics>>,
}

impl FanOut {
    pub fn new(sinks: Vec<Arc<dyn Metrics>>) -> Self {
        FanOut { sinks }
    }
}

impl Metrics for FanOut {
    fn record(&self, m: Metric) {
        if let Some((last, rest)) = self.sinks.split_last() {
            for s in rest {
                s.record(m.clone());
            }
            last.record(m);
        }
    }

    fn flush(&self) {
        for s in &self.sinks {
            s.flush();
        }
    }
}

/// Metrics off: every data point is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _m: Metric) {}
}

/// **Test stand-in**: keeps every data point in memory.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Default)]
pub struct MemoryMetrics {
    recorded: Arc<Mutex<Vec<Metric>>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every data point so far, in order.
    pub fn all(&self) -> Vec<Metric> {
        match self.recorded.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The data points named `name`.
    pub fn named(&self, name: &str) -> Vec<Metric> {
        self.all().into_iter().filter(|m| m.name == name).collect()
    }

    /// The sum of the values of the data points named `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.named(name).iter().map(|m| m.value).sum()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Metrics for MemoryMetrics {
    fn record(&self, m: Metric) {
        match self.recorded.lock() {
            Ok(mut v) => v.push(m),
            Err(p) => p.into_inner().push(m),
        }
    }
}

/// Writes one Embedded Metric Format JSON line per data point.
pub struct EmfMetrics {
    namespace: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for EmfMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmfMetrics")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl EmfMetrics {
    /// EMF lines on stdout, in the [`NAMESPACE`].
    pub fn stdout() -> Self {
        Self::to_writer(std::io::stdout())
    }

    /// EMF lines to `out`, in the [`NAMESPACE`].
    pub fn to_writer(out: impl Write + Send + 'static) -> Self {
        EmfMetrics {
            namespace: NAMESPACE.into(),
            out: Mutex::new(Box::new(out)),
        }
    }

    /// The EMF document of one data point (without the trailing newline).
    pub fn line(namespace: &str, m: &Metric) -> String {
        let at = m.at_ms.unwrap_or_else(now_ms);
        let dims: Vec<&str> = m.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": at,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [dims],
                    "Metrics": [{ "Name": m.name, "Unit": m.unit.as_str() }],
                }],
            }),
        );
        for (k, v) in &m.dimensions {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        // A non-finite value is not valid JSON; CloudWatch would reject it anyway.
        let value = serde_json::Number::from_f64(m.value).map_or(Value::Null, Value::Number);
        root.insert(m.name.clone(), value);
        Value::Object(root).to_string()
    }
}

impl Metrics for EmfMetrics {
    fn record(&self, m: Metric) {
        if !m.value.is_finite() {
            return;
        }
        let mut line = Self::line(&self.namespace, &m);
        line.push('\n');
        let mut out = match self.out.lock() {
            Ok(o) => o,
            Err(p) => p.into_inner(),
        };
        // Best effort: a closed stdout must not stop the consumer.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A `KIRO_METRICS` (`--metrics`) value that names no [`MetricsMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} (--metrics) is {value:?}, which is not a metrics mode: expected `emf` (CloudWatch \
     EMF lines on stdout) or `off`",
    env::METRICS
)]
pub struct MetricsModeError {
    /// The value given, as given.
    pub value: String,
}

/// Which metrics sink a binary uses (`KIRO_METRICS`, or `--metrics` where the binary has
/// it). Parsed with [`FromStr`](std::str::FromStr): `emf` or `off`, in any case, spaces
/// around ignored; anything else is a [`MetricsModeError`], never a silent `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum MetricsMode {
    /// No metrics (the embedded default: keeps the quick start's output readable).
    #[default]
    Off,
    /// CloudWatch Embedded Metric Format lines on stdout.
    Emf,
}

impl std::str::FromStr for MetricsMode {
    type Err = MetricsModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("emf") {
            Ok(MetricsMode::Emf)
        } else if t.eq_ignore_ascii_case("off") {
            Ok(MetricsMode::Off)
        } else {
            Err(MetricsModeError {
                value: s.to_owned(),
            })
        }
    }
}

impl fmt::Display for MetricsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsMode::Off => "off",
            MetricsMode::Emf => "emf",
        })
    }
}

impl MetricsMode {
    /// `v` as a mode: `None` (unset) is off, `Some` must name a mode.
    pub fn parse(v: Option<&str>) -> Result<Self, MetricsModeError> {
        v.map_or(Ok(MetricsMode::Off), str::parse)
    }

    /// The sink for this mode, plus OTLP when the `OTEL_*` environment turns it on
    /// (whatever the mode), for the service named after the running executable
    /// (`kiro-consumer`, …) unless `OTEL_SERVICE_NAME` says otherwise; `None` when both
    /// are off.
    pub fn sink(self) -> Option<Arc<dyn Metrics>> {
        self.sink_for(&default_service())
    }

    /// [`MetricsMode::sink`] with `service` as the default service name.
    pub fn sink_for(self, service: &str) -> Option<Arc<dyn Metrics>> {
        self.sink_with(EmfMetrics::stdout, OtlpMetrics::from_env(service))
    }

    /// The sink for this mode and `otlp`: EMF (built by `emf`, called only in the EMF
    /// mode), OTLP, a [`FanOut`] to both, or `None`.
    pub fn sink_with(
        self,
        emf: impl FnOnce() -> EmfMetrics,
        otlp: Option<OtlpMetrics>,
    ) -> Option<Arc<dyn Metrics>> {
        let emf: Option<Arc<dyn Metrics>> = match self {
            MetricsMode::Off => None,
            MetricsMode::Emf => Some(Arc::new(emf())),
        };
        let otlp: Option<Arc<dyn Metrics>> = otlp.map(|o| Arc::new(o) as Arc<dyn Metrics>);
        match (emf, otlp) {
            (Some(e), Some(o)) => Some(Arc::new(FanOut::new(vec![e, o]))),
            (e, o) => e.or(o),
        }
    }
}

/// The running executable's name (`kiro-consumer`, `kiro-producer`, `kiro-worker`).
fn default_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kiro-codebuild-worker".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(buf: &Shared) -> Vec<Value> {
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn an_alarm_metric_is_one_dimensionless_emf_line() {
        let buf = Shared::default();
        let emf = EmfMetrics::to_writer(buf.clone());
        emf.record(Metric::millis(names::BUILD_DURATION, 1234).at(1_700_000_000_000));
        emf.record(Metric::count(names::BUILDS_FINISHED, 1).at(1_700_000_000_001));
        let docs = lines(&buf);
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "KiroCodebuildWorker");
        assert_eq!(directive["Dimensions"], json!([[]]));
        assert_eq!(
            directive["Metrics"],
            json!([{ "Name": "BuildDuration", "Unit": "Milliseconds" }])
        );
        assert_eq!(d["BuildDuration"], 1234.0);
        assert_eq!(docs[1]["BuildsFinished"], 1.0);
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Count"
        );
    }

    #[test]
    fn dimensions_are_declared_and_carried_as_members() {
        let m = Metric::count(names::BUILDS_FAILED_BY_CLASS, 1)
            .with_dimension(FAILURE_CLASS_DIMENSION, "tests-failed")
            .at(5);
        let d: Value = serde_json::from_str(&EmfMetrics::line(NAMESPACE, &m)).unwrap();
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FailureClass"]])
        );
        assert_eq!(d["FailureClass"], "tests-failed");
        assert_eq!(d["BuildsFailedByClass"], 1.0);
        // Only the members the spec allows in the metadata object.
        let aws = d["_aws"].as_object().unwrap();
        let mut keys: Vec<&String> = aws.keys().collect();
        keys.sort();
        assert_eq!(keys, ["CloudWatchMetrics", "Timestamp"]);
    }

    #[test]
    fn a_missing_time_is_now_and_a_non_finite_value_is_dropped() {
        let buf = Shared::default();
        let emf = EmfMetrics::to_writer(buf.clone());
        emf.record(Metric::new(names::COVERAGE, f64::NAN, Unit::Percent));
        assert!(lines(&buf).is_empty());
        emf.record(Metric::new(names::COVERAGE, 87.5, Unit::Percent));
        let docs = lines(&buf);
        assert!(docs[0]["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        assert_eq!(docs[0]["Coverage"], 87.5);
    }

    #[test]
    fn memory_metrics_keep_every_point_and_sum_by_name() {
        let m = MemoryMetrics::new();
        let sink: Arc<dyn Metrics> = Arc::new(m.clone());
        sink.record(Metric::count(names::DEAD_LETTERS, 1));
        sink.record(Metric::count(names::DEAD_LETTERS, 2));
        sink.record(Metric::count(names::BUILDS_STARTED, 1));
        assert_eq!(m.sum(names::DEAD_LETTERS), 3.0);
        assert_eq!(m.named(names::BUILDS_STARTED).len(), 1);
        assert_eq!(m.all().len(), 3);
        NoMetrics.record(Metric::count(names::DEAD_LETTERS, 1));
    }

    #[test]
    fn kiro_metrics_selects_emf_or_off() {
        assert_eq!(MetricsMode::parse(Some("emf")), Ok(MetricsMode::Emf));
        assert_eq!(MetricsMode::parse(Some(" EMF ")), Ok(MetricsMode::Emf));
        assert_eq!(MetricsMode::parse(Some("off")), Ok(MetricsMode::Off));
        assert_eq!(MetricsMode::parse(Some("Off")), Ok(MetricsMode::Off));
        assert_eq!(MetricsMode::parse(None), Ok(MetricsMode::Off));
        for m in [MetricsMode::Off, MetricsMode::Emf] {
            assert_eq!(m.to_string().parse(), Ok(m), "Display round-trips");
        }
        let no_emf = || -> EmfMetrics { unreachable!("EMF is off") };
        assert!(MetricsMode::Off.sink_with(no_emf, None).is_none());
        let emf = MetricsMode::Emf.sink_with(|| EmfMetrics::to_writer(Shared::default()), None);
        assert!(format!("{emf:?}").contains("EmfMetrics"));
    }

    /// A misspelt mode is an error naming the variable, the value and the accepted
    /// values (it used to mean off, silently).
    #[test]
    fn a_misspelt_kiro_metrics_is_refused_naming_the_variable_and_the_modes() {
        for bad in ["emff", "on", "", "EMF,off"] {
            let e = MetricsMode::parse(Some(bad)).unwrap_err();
            assert_eq!(e.value, bad);
            let msg = e.to_string();
            for want in [
                "KIRO_METRICS",
                "--metrics",
                &format!("{bad:?}"),
                "`emf`",
                "`off`",
            ] {
                assert!(msg.contains(want), "{want:?} missing in {msg}");
            }
        }
    }

    #[test]
    fn a_fan_out_gives_every_sink_every_point_and_flushes_them_all() {
        let (a, b) = (MemoryMetrics::new(), MemoryMetrics::new());
        let fan = FanOut::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
        fan.record(Metric::count(names::DEAD_LETTERS, 2));
        fan.record(Metric::millis(names::DISPATCH_LATENCY, 40));
        fan.flush();
        assert_eq!(a.all(), b.all());
        assert_eq!(a.sum(names::DEAD_LETTERS), 2.0);
        assert_eq!(b.named(names::DISPATCH_LATENCY).len(), 1);
        FanOut::new(Vec::new()).record(Metric::count(names::DEAD_LETTERS, 1));
    }
}
