//! The tracing set-up with a real subscriber: log lines carry the item's trace id and are
//! redacted; a carrier written by one span and read by another joins them into one
//! trace with X-Ray-shaped ids; spans outside an item's trace are not exported; the
//! exporter wrapper redacts what the spans carry; the span store keeps what the file
//! exporter wrote.

use kiro_protocol::TraceContext;
use kiro_telemetry::otel::{self, Redacting, TraceIdLayer, keys, log_layer_to, otel_layer};
use kiro_telemetry::spans::{self, FileSpanExporter};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

const TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstu";

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

struct Setup {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
    logs: Lines,
}

fn setup() -> (Setup, impl tracing::Subscriber + Send + Sync) {
    let exporter = InMemorySpanExporter::default();
    let provider = otel::tracer_provider_builder("kiro-test")
        .with_simple_exporter(Redacting(exporter.clone()))
        .build();
    let logs = Lines::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(log_layer_to(
            true,
            false,
            move || writer.clone(),
            LevelFilter::INFO,
        ))
        .with(TraceIdLayer)
        .with(otel_layer(&provider));
    (
        Setup {
            provider,
            exporter,
            logs,
        },
        subscriber,
    )
}

fn spans(s: &Setup) -> Vec<SpanData> {
    s.provider.force_flush().unwrap();
    s.exporter.get_finished_spans().unwrap()
}

fn named<'a>(all: &'a [SpanData], name: &str) -> &'a SpanData {
    all.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            all.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn a_carrier_joins_two_spans_into_one_xray_shaped_trace_and_logs_carry_its_id() {
    let (s, subscriber) = setup();
    tracing::subscriber::with_default(subscriber, || {
        // "Producer": a root span whose context travels as the carrier.
        let send = tracing::info_span!(
            target: "kiro_test",
            parent: None,
            "send",
            otel.kind = "producer",
            trace_id = tracing::field::Empty
        );
        otel::record_trace_id(&send);
        let carrier = send.in_scope(|| {
            tracing::info!(target: "kiro_test", "enqueued with {TOKEN}");
            otel::inject(&tracing::Span::current())
        });
        drop(send);
        // Only the X-Ray header survives (a queue that dropped the message attribute).
        let xray_only = TraceContext {
            xray: carrier.xray.clone(),
            ..Default::default()
        };
        let process = tracing::info_span!(
            target: "kiro_test",
            parent: None,
            "process",
            otel.kind = "consumer",
            trace_id = tracing::field::Empty
        );
        otel::continue_trace(&process, &xray_only);
        process.in_scope(|| {
            let child = tracing::info_span!(target: "kiro_test", "settle", kiro.item = "A-1");
            child.in_scope(|| tracing::warn!(target: "kiro_test", token = TOKEN, "dead-lettered"));
        });
        process.add_event(
            "heartbeat",
            vec![opentelemetry::KeyValue::new(keys::FENCE, 3)],
        );
        drop(process);
        // Outside any item span: logged, not exported.
        let stray = tracing::info_span!(target: "kiro_test", "receive");
        stray.in_scope(|| tracing::info!(target: "kiro_test", "idle poll"));
        drop(stray);

        assert!(carrier.traceparent.is_some() && carrier.xray.is_some());
    });

    let all = spans(&s);
    let names: Vec<&str> = all.iter().map(|s| s.name.as_ref()).collect();
    assert!(
        !names.contains(&"receive"),
        "a stray span was exported: {names:?}"
    );
    let send = named(&all, "send");
    let process = named(&all, "process");
    let settle = named(&all, "settle");
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    let trace = send.span_context.trace_id();
    assert_eq!(process.span_context.trace_id(), trace);
    assert_eq!(settle.span_context.trace_id(), trace);
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert!(process.parent_span_is_remote);
    assert_eq!(settle.parent_span_id, process.span_context.span_id());
    assert_eq!(
        process.links.links[0].span_context.span_id(),
        send.span_context.span_id(),
        "process links to the creation context"
    );
    assert!(process.events.iter().any(|e| e.name == "heartbeat"));

    // X-Ray ids: the first 8 hex digits are the epoch second the trace began.
    let hex = trace.to_string();
    let began = u64::from_str_radix(&hex[..8], 16).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        began <= now && now - began < 3600,
        "{hex} began at {began}, now {now}"
    );

    // Nothing secret left in any exported string.
    let dump = format!("{all:?}");
    assert!(!dump.contains(TOKEN), "a token reached an exported span");
    assert!(dump.contains("[REDACTED]"));

    // Logs: JSON lines, the item's lines carry its trace id, every line redacted.
    let text = s.logs.text();
    assert!(!text.contains(TOKEN), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_msg = |m: &str| {
        lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|x| x.starts_with(m))
            })
            .unwrap_or_else(|| panic!("no line {m}: {text}"))
    };
    assert_eq!(by_msg("enqueued")["trace_id"], hex);
    assert_eq!(by_msg("dead-lettered")["trace_id"], hex);
    assert_eq!(by_msg("dead-lettered")["fields"]["token"], "[REDACTED]");
    assert!(by_msg("idle poll").get("trace_id").is_none());
}

#[test]
fn the_file_exporter_keeps_spans_the_trace_command_reads() {
    let dir = tempfile::tempdir().unwrap();
    let provider = otel::tracer_provider_builder("kiro-producer")
        .with_simple_exporter(Redacting(FileSpanExporter::new(dir.path()).unwrap()))
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(TraceIdLayer)
        .with(otel_layer(&provider));
    let trace = tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!(
            target: "kiro_test",
            parent: None,
            "send",
            trace_id = tracing::field::Empty,
            kiro.item = "A-1",
            kiro.project = "calc"
        );
        otel::record_trace_id(&root);
        root.set_attribute("note", format!("token {TOKEN}"));
        root.in_scope(|| {
            tracing::info_span!(target: "kiro_test", "child").in_scope(|| {
                tracing::info!(target: "kiro_test", "inside");
            })
        });
        otel::trace_id_of(&root).unwrap()
    });
    provider.shutdown().unwrap();

    let found = spans::traces_of_item(dir.path(), "A-1").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].trace_id, trace);
    let stored = spans::read_trace(dir.path(), &trace).unwrap();
    assert_eq!(stored, found[0].spans);
    assert_eq!(stored.len(), 2);
    let root = stored.iter().find(|s| s.name == "send").unwrap();
    assert_eq!(root.service, "kiro-producer");
    assert_eq!(root.attributes["note"], "token [REDACTED]");
    let tree = spans::render_tree(&stored);
    assert!(
        tree.starts_with(&format!("trace {trace} · 2 span(s)")),
        "{tree}"
    );
    assert!(tree.contains("└─ send [kiro-producer]"), "{tree}");
    assert!(tree.contains("   └─ child [kiro-producer]"), "{tree}");
    assert!(tree.contains("· +"), "the event is shown: {tree}");
}
