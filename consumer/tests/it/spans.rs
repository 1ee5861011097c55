//! The engine's spans, through an in-memory exporter: the `process` span continues the
//! message's trace and links to it, the build gets its context as `TRACEPARENT`, and
//! heartbeats, retries and the handoff are events on it; settling is a `settle` span.

use crate::support::Harness;
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::*;
use kiro_telemetry::otel::{self, TraceIdLayer, keys, otel_layer};
use opentelemetry::Value;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

/// The producer's side of the carrier: a `send` span id in a known trace.
const TRACE: &str = "6932a5f1c0ffee00112233445566778a";
const SEND_SPAN: &str = "00f067aa0ba902b7";

async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn collector() -> (
    SdkTracerProvider,
    InMemorySpanExporter,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = otel::tracer_provider_builder("kiro-consumer")
        .with_simple_exporter(exporter.clone())
        .build();
    // Other tests of this binary run the engine at the same time without a subscriber.
    let guard = kiro_telemetry::testing::set_default(
        tracing_subscriber::registry()
            .with(TraceIdLayer)
            .with(otel_layer(&provider)),
    );
    (provider, exporter, guard)
}

async fn send_traced(h: &Harness, id: &str, project: &str) {
    let item = BoardItem {
        id: id.into(),
        project: project.into(),
        title: format!("item {id}"),
        repo: "acme/calc".into(),
        branch: "feature/x".into(),
        spec: "x".into(),
        pr: "1".into(),
        updated_at: "1".into(),
        conflict: None,
        assignees: Vec::new(),
    }
    .validate()
    .unwrap();
    let trace = TraceContext::from_traceparent(&format!("00-{TRACE}-{SEND_SPAN}-01")).unwrap();
    h.queue
        .send(OutgoingMessage {
            body: Envelope::new(item.clone(), trace.clone(), h.clock.now()).encode(),
            group: item.project.clone(),
            dedup: item.dedup_id(),
            attributes: standard_attributes(&trace),
            trace,
        })
        .await
        .unwrap();
}

fn finished(provider: &SdkTracerProvider, exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn event_names(s: &SpanData) -> Vec<String> {
    s.events.iter().map(|e| e.name.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn process_continues_the_message_trace_with_heartbeats_and_a_retry() {
    let (provider, exporter, _guard) = collector();
    let h = Harness::new();
    send_traced(&h, "A-1", "alpha").await;
    let mut e = h.engine("c1");
    e.tick(Duration::ZERO).await;
    for _ in 0..12 {
        pass(Duration::from_secs(5)).await;
        e.tick(Duration::ZERO).await;
    }
    h.runner.fail("A-1", FailureClass::TestsFailed);
    pass(Duration::from_secs(6)).await;
    assert_eq!(e.tick(Duration::ZERO).await.retried, 1);
    // The retry: a second delivery of the same message, a second `process` span.
    pass(Duration::from_secs(40)).await;
    assert_eq!(e.tick(Duration::ZERO).await.started, 1);
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    assert_eq!(e.tick(Duration::ZERO).await.succeeded, 1);
    drop(e);

    let spans = finished(&provider, &exporter);
    let processes: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("process "))
        .collect();
    assert_eq!(
        processes.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for p in &processes {
        assert_eq!(p.span_kind, SpanKind::Consumer);
        assert_eq!(
            p.span_context.trace_id().to_string(),
            TRACE,
            "continues the message's trace"
        );
        assert_eq!(p.parent_span_id.to_string(), SEND_SPAN);
        assert_eq!(p.links.links.len(), 1);
        assert_eq!(
            p.links.links[0].span_context.span_id().to_string(),
            SEND_SPAN
        );
        assert_eq!(
            attr(p, keys::MESSAGING_SYSTEM),
            Some(&Value::from("kiro_sqlite"))
        );
        assert_eq!(
            attr(p, keys::MESSAGING_OPERATION_TYPE),
            Some(&Value::from("process"))
        );
        assert_eq!(attr(p, keys::PROJECT), Some(&Value::from("alpha")));
        assert_eq!(attr(p, keys::ITEM), Some(&Value::from("A-1")));
        assert!(attr(p, keys::BUILD_ID).is_some() && attr(p, keys::FENCE).is_some());
    }
    let (first, second) = if processes[0].start_time <= processes[1].start_time {
        (processes[0], processes[1])
    } else {
        (processes[1], processes[0])
    };
    let events = event_names(first);
    assert!(
        events.iter().filter(|n| *n == "heartbeat").count() >= 3,
        "{events:?}"
    );
    assert!(events.contains(&"retry".to_owned()), "{events:?}");
    assert_eq!(
        attr(first, keys::FAILURE_CLASS),
        Some(&Value::from("tests-failed"))
    );
    assert!(attr(second, keys::FAILURE_CLASS).is_none());

    // The builds ran under their `process` spans.
    let builds = h.runner.builds_of("A-1");
    assert_eq!(builds.len(), 2);
    for (b, p) in builds.iter().zip([first, second]) {
        let tp = TraceContext::from_traceparent(&b.req.env["TRACEPARENT"]).unwrap();
        assert_eq!(tp.trace_id(), Some(TRACE));
        let want = format!("-{}-", p.span_context.span_id());
        assert!(
            b.req.env["TRACEPARENT"].contains(&want),
            "{} vs {want}",
            b.req.env["TRACEPARENT"]
        );
    }

    // Settling: a `retry` settle under the first, an `ack` settle under the second.
    let settle = |p: &SpanData, how: &str| {
        spans.iter().any(|s| {
            s.parent_span_id == p.span_context.span_id()
                && attr(s, keys::MESSAGING_OPERATION_TYPE) == Some(&Value::from("settle"))
                && attr(s, keys::MESSAGING_OPERATION_NAME) == Some(&Value::from(how.to_owned()))
        })
    };
    assert!(settle(first, "retry"));
    assert!(settle(second, "ack"));
    // The process span lasts until its job is settled: it ends after its settle began.
    let ack = spans
        .iter()
        .find(|s| {
            s.parent_span_id == second.span_context.span_id()
                && attr(s, keys::MESSAGING_OPERATION_NAME) == Some(&Value::from("ack"))
        })
        .unwrap();
    assert!(second.end_time >= ack.start_time);
}

#[tokio::test(start_paused = true)]
async fn a_handoff_is_an_event_and_the_next_consumer_continues_the_trace() {
    let (provider, exporter, _guard) = collector();
    let h = Harness::new();
    send_traced(&h, "A-1", "alpha").await;
    let mut first = h.engine("c1");
    first.tick(Duration::ZERO).await;
    first.drain().await;
    drop(first);
    let mut next = h.engine("c2");
    assert_eq!(next.tick(Duration::ZERO).await.adopted, 1);
    h.runner.succeed("A-1");
    pass(Duration::from_secs(6)).await;
    assert_eq!(next.tick(Duration::ZERO).await.succeeded, 1);
    drop(next);

    let spans = finished(&provider, &exporter);
    let processes: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("process "))
        .collect();
    assert_eq!(processes.len(), 2);
    let handed = processes
        .iter()
        .find(|p| event_names(p).contains(&"handoff".to_owned()))
        .expect("the first consumer's process span records the handoff");
    let adopted = processes
        .iter()
        .find(|p| p.span_context.span_id() != handed.span_context.span_id())
        .unwrap();
    assert_eq!(
        adopted.span_context.trace_id(),
        handed.span_context.trace_id()
    );
    assert_eq!(adopted.parent_span_id.to_string(), SEND_SPAN);
    assert!(
        event_names(adopted)
            .iter()
            .any(|n| n.starts_with("re-attached")),
        "{:?}",
        event_names(adopted)
    );
    assert_eq!(h.runner.starts(), 1, "re-attached, not rebuilt");
}
