//! OTLP metrics over the wire: a small OTLP/HTTP receiver (wiremock on 127.0.0.1 answering
//! `POST /v1/metrics`) decodes what [`OtlpMetrics`] exports, alone and beside EMF.
//!
//! No test sets a process environment variable: endpoints are passed explicitly or
//! through a variable-reading closure.

use kiro_telemetry::metrics::{
    EmfMetrics, FAILURE_CLASS_DIMENSION, Metric, Metrics, MetricsMode, Unit, names,
};
use kiro_telemetry::otlp_metrics::OtlpMetrics;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A receiver that accepts every metrics export, after `delay`.
async fn receiver(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/metrics"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-protobuf")
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

/// Every export the receiver got, decoded.
async fn exports(server: &MockServer) -> Vec<ExportMetricsServiceRequest> {
    let requests = server.received_requests().await.expect("recording is on");
    requests
        .iter()
        .map(|r| {
            assert_eq!(r.url.path(), "/v1/metrics");
            let ct = r.headers.get("content-type").expect("content type");
            assert_eq!(ct, "application/x-protobuf");
            ExportMetricsServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf")
        })
        .collect()
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    })
}

/// What the receiver saw, flattened: service names and one entry per metric name.
#[derive(Debug, Default)]
struct Seen {
    services: Vec<String>,
    metrics: HashMap<String, SeenMetric>,
}

#[derive(Debug, Default)]
struct SeenMetric {
    unit: String,
    /// Counter points: (value, attributes).
    sums: Vec<(i64, HashMap<String, String>)>,
    /// Histogram points: (count, sum, attributes).
    histograms: Vec<(u64, f64, HashMap<String, String>)>,
    temporalities: Vec<i32>,
    monotonic: bool,
}

fn attrs_map(attrs: &[KeyValue]) -> HashMap<String, String> {
    attrs
        .iter()
        .filter_map(|kv| string_attr(attrs, &kv.key).map(|v| (kv.key.clone(), v)))
        .collect()
}

fn flatten(requests: &[ExportMetricsServiceRequest]) -> Seen {
    let mut seen = Seen::default();
    for req in requests {
        for rm in &req.resource_metrics {
            let resource = rm.resource.as_ref().expect("resource");
            if let Some(s) = string_attr(&resource.attributes, "service.name") {
                seen.services.push(s);
            }
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let e = seen.metrics.entry(m.name.clone()).or_default();
                    e.unit = m.unit.clone();
                    match m.data.as_ref().expect("data") {
                        metric::Data::Sum(s) => {
                            e.monotonic = s.is_monotonic;
                            e.temporalities.push(s.aggregation_temporality);
                            for p in &s.data_points {
                                let v = match p.value {
                                    Some(number_data_point::Value::AsInt(i)) => i,
                                    other => panic!("a u64 counter exports ints, got {other:?}"),
                                };
                                e.sums.push((v, attrs_map(&p.attributes)));
                            }
                        }
                        metric::Data::Histogram(h) => {
                            e.temporalities.push(h.aggregation_temporality);
                            for p in &h.data_points {
                                let sum = p.sum.expect("histogram sum");
                                e.histograms.push((p.count, sum, attrs_map(&p.attributes)));
                            }
                        }
                        other => panic!("unexpected data {other:?}"),
                    }
                }
            }
        }
    }
    seen
}

fn record_a_build(sink: &dyn Metrics) {
    sink.record(Metric::count(names::BUILDS_STARTED, 1));
    sink.record(Metric::count(names::BUILDS_STARTED, 1));
    sink.record(
        Metric::count(names::BUILDS_FAILED_BY_CLASS, 1)
            .with_dimension(FAILURE_CLASS_DIMENSION, "tests-failed"),
    );
    sink.record(Metric::millis(names::BUILD_DURATION, 1_500));
    sink.record(Metric::new(names::COVERAGE, 87.5, Unit::Percent));
}

fn delta() -> i32 {
    AggregationTemporality::Delta as i32
}

/// The points `record_a_build` leaves at the receiver.
fn assert_a_build(seen: &Seen, service: &str) {
    assert!(!seen.services.is_empty());
    assert!(seen.services.iter().all(|s| s == service), "{seen:?}");

    let started = &seen.metrics[names::BUILDS_STARTED];
    let total: i64 = started.sums.iter().map(|(v, _)| v).sum();
    assert_eq!(total, 2);
    assert!(started.monotonic);
    assert_eq!(started.unit, "1");
    assert!(started.temporalities.iter().all(|t| *t == delta()));

    let failed = &seen.metrics[names::BUILDS_FAILED_BY_CLASS];
    assert_eq!(failed.sums.len(), 1);
    assert_eq!(failed.sums[0].0, 1);
    assert_eq!(
        failed.sums[0]
            .1
            .get(FAILURE_CLASS_DIMENSION)
            .map(String::as_str),
        Some("tests-failed")
    );

    let duration = &seen.metrics[names::BUILD_DURATION];
    assert_eq!(duration.unit, "ms");
    assert_eq!(duration.histograms.len(), 1);
    assert_eq!(duration.histograms[0].0, 1);
    assert_eq!(duration.histograms[0].1, 1_500.0);
    assert!(duration.histograms[0].2.is_empty());
    assert!(duration.temporalities.iter().all(|t| *t == delta()));

    let coverage = &seen.metrics[names::COVERAGE];
    assert_eq!(coverage.unit, "%");
    assert_eq!(coverage.histograms[0].1, 87.5);
}

#[test]
fn recorded_metrics_reach_an_otlp_receiver_on_flush() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(receiver(Duration::ZERO));
    let otlp = OtlpMetrics::new(&format!("{}/v1/metrics", server.uri()), "kiro-test").unwrap();
    record_a_build(&otlp);
    // A name first seen as a duration keeps its instrument: a count under it is dropped.
    otlp.record(Metric::count(names::BUILD_DURATION, 7));
    otlp.record(Metric::new(names::COVERAGE, f64::NAN, Unit::Percent));
    otlp.flush();

    let seen = flatten(&rt.block_on(exports(&server)));
    assert_a_build(&seen, "kiro-test");
    assert!(seen.metrics[names::BUILD_DURATION].sums.is_empty());
    assert_eq!(seen.metrics[names::COVERAGE].histograms.len(), 1);
    assert_eq!(seen.metrics.len(), 4, "{:?}", seen.metrics.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_drop_inside_a_tokio_runtime_export_without_panicking() {
    let server = receiver(Duration::ZERO).await;
    // Built, flushed and dropped on a tokio worker, as the consumer does at shutdown.
    let otlp = OtlpMetrics::new(&format!("{}/v1/metrics", server.uri()), "kiro-consumer").unwrap();
    record_a_build(&otlp);
    otlp.flush();
    assert_a_build(&flatten(&exports(&server).await), "kiro-consumer");

    // Delta temporality: what is recorded after the flush is exported alone, by the drop.
    otlp.record(Metric::count(names::DEAD_LETTERS, 3));
    drop(otlp);
    let all = exports(&server).await;
    let last = flatten(&all[all.len() - 1..]);
    let dead = &last.metrics[names::DEAD_LETTERS];
    assert_eq!(dead.sums.iter().map(|(v, _)| v).sum::<i64>(), 3);
    assert!(!last.metrics.contains_key(names::BUILDS_STARTED));
}

/// Recording while an export hangs at the receiver goes on: every point is taken before
/// the stalled flush returns (an ordering, not a timing: the receiver holds the export
/// far longer than recording could take).
#[test]
fn recording_does_not_wait_for_a_slow_receiver() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(receiver(Duration::from_secs(8)));
    let otlp = Arc::new(OtlpMetrics::new(&format!("{}/v1/metrics", server.uri()), "svc").unwrap());
    otlp.record(Metric::count(names::BUILDS_STARTED, 1));
    let flusher = {
        let otlp = Arc::clone(&otlp);
        std::thread::spawn(move || otlp.flush())
    };
    // Let the flush reach the receiver, then record while the export is stalled there.
    while rt.block_on(server.received_requests()).unwrap().is_empty() {
        assert!(
            !flusher.is_finished(),
            "the flush ended before its export arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..1_000 {
        otlp.record(Metric::count(names::BUILDS_STARTED, 1));
        otlp.record(Metric::millis(names::DISPATCH_LATENCY, 12));
    }
    assert!(
        !flusher.is_finished(),
        "recording waited for the export in flight"
    );
    flusher.join().unwrap();
    // The points recorded during the stall are exported by the next flush.
    otlp.flush();
    let all = rt.block_on(exports(&server));
    let seen = flatten(&all[1..]);
    let started = &seen.metrics[names::BUILDS_STARTED];
    assert_eq!(started.sums.iter().map(|(v, _)| v).sum::<i64>(), 1_000);
}

/// A writer the test reads back.
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

fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<&str, String> = pairs.into_iter().collect();
    move |k| m.get(k).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_and_otlp_both_on_fan_out_to_both() {
    let server = receiver(Duration::ZERO).await;
    // The general endpoint: the exporter posts to `<endpoint>/v1/metrics`.
    let vars = env(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", server.uri()),
        ("OTEL_SERVICE_NAME", "kiro-consumer-7".into()),
    ]);
    let otlp = OtlpMetrics::from_vars("kiro-consumer", vars)
        .unwrap()
        .expect("an endpoint turns OTLP on");
    let emf_out = Shared::default();
    let emf = {
        let out = emf_out.clone();
        move || EmfMetrics::to_writer(out)
    };
    let sink = MetricsMode::Emf.sink_with(emf, Some(otlp)).unwrap();
    record_a_build(sink.as_ref());
    sink.flush();

    let text = String::from_utf8(emf_out.0.lock().unwrap().clone()).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 5);
    assert_eq!(docs[2][FAILURE_CLASS_DIMENSION], "tests-failed");
    assert_eq!(docs[3][names::BUILD_DURATION], 1_500.0);

    assert_a_build(&flatten(&exports(&server).await), "kiro-consumer-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_runs_with_emf_off_and_nothing_runs_without_an_endpoint() {
    let no_emf = || -> EmfMetrics { panic!("EMF is off") };
    let nothing = OtlpMetrics::from_vars("svc", env(vec![])).unwrap();
    assert!(nothing.is_none());
    assert!(MetricsMode::Off.sink_with(no_emf, nothing).is_none());

    let server = receiver(Duration::ZERO).await;
    let vars = env(vec![(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        format!("{}/v1/metrics", server.uri()),
    )]);
    let otlp = OtlpMetrics::from_vars("kiro-worker", vars).unwrap();
    let sink = MetricsMode::Off
        .sink_with(no_emf, otlp)
        .expect("OTLP alone");
    sink.record(Metric::count(names::DEAD_LETTERS, 1));
    drop(sink);
    let seen = flatten(&exports(&server).await);
    assert_eq!(seen.services, ["kiro-worker"]);
    assert_eq!(seen.metrics[names::DEAD_LETTERS].sums[0].0, 1);
}
