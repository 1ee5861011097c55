//! The assertions on one item's exported spans: one X-Ray-shaped trace rooted at the
//! producer's `send`; the message carrying its context (W3C `traceparent` and
//! `AWSTraceHeader`); `process` its child and linked to it, with `finish` and `settle`
//! under it; the worker's span continuing `process` through `TRACEPARENT`, its steps under
//! it; every span in the item's trace; no planted secret in any of them.

use super::{ITEM, PLANTED_API_KEY, PLANTED_TOKEN, PROJECT};
use kiro_backends::testing::InMemoryBuild;
use kiro_protocol::Delivery;
use kiro_protocol::ports::build::env as build_env;
use kiro_telemetry::otel::keys;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use std::time::{SystemTime, UNIX_EPOCH};

/// The assertions on one item's exported spans.
pub(super) fn check_trace(
    spans: &[SpanData],
    delivered: &[Delivery],
    build: &InMemoryBuild,
    fence: u64,
    system: &str,
) {
    let names: Vec<String> = spans.iter().map(describe).collect();
    let find = |what: &str, f: &dyn Fn(&SpanData) -> bool| -> SpanData {
        let found: Vec<&SpanData> = spans.iter().filter(|s| f(s)).collect();
        assert_eq!(found.len(), 1, "one {what} span expected in {names:#?}");
        found[0].clone()
    };
    let is_item = |s: &SpanData| attr(s, keys::ITEM).as_deref() == Some(ITEM);
    let op = |s: &SpanData| attr(s, keys::MESSAGING_OPERATION_TYPE);
    let send = find("send", &|s| is_item(s) && op(s).as_deref() == Some("send"));
    let process = find("process", &|s| {
        is_item(s) && op(s).as_deref() == Some("process")
    });
    let worker = find("worker", &|s| is_item(s) && s.name == "worker");
    let trace = send.span_context.trace_id();

    // The producer's span is the root of the item's trace, with an X-Ray-shaped id.
    assert_eq!(send.parent_span_id, SpanId::INVALID, "send is a root");
    assert_xray_shaped(trace);
    assert_eq!(attr(&send, keys::PROJECT).as_deref(), Some(PROJECT));
    assert_eq!(attr(&send, keys::MESSAGING_SYSTEM).as_deref(), Some(system));

    // What the message carried to the consumer: the send span's context, as W3C
    // traceparent and as X-Ray AWSTraceHeader (on SQS: a message attribute and the system
    // attribute, read back by the adapter).
    let d = delivered
        .iter()
        .find(|d| d.group == PROJECT)
        .expect("the consumer received the item's message");
    let tp = format!("00-{}-{}-01", trace, send.span_context.span_id());
    assert_eq!(d.trace.traceparent.as_deref(), Some(tp.as_str()), "{d:?}");
    assert_eq!(
        d.attributes.get("traceparent").map(String::as_str),
        Some(tp.as_str()),
        "{d:?}"
    );
    let xray = d.trace.xray.as_deref().expect("an AWSTraceHeader");
    let t = trace.to_string();
    assert!(
        xray.starts_with(&format!(
            "Root=1-{}-{};Parent={};",
            &t[..8],
            &t[8..],
            send.span_context.span_id()
        )),
        "{xray}"
    );

    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);

    // The consumer's span continues the producer's trace and links to the send span.
    assert_eq!(process.span_context.trace_id(), trace);
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert!(process.parent_span_is_remote);
    assert!(
        process
            .links
            .iter()
            .any(|l| l.span_context.trace_id() == trace
                && l.span_context.span_id() == send.span_context.span_id()),
        "process links to send: {:?}",
        process.links
    );
    assert_eq!(
        attr(&process, keys::MESSAGING_SYSTEM).as_deref(),
        Some(system)
    );
    assert_eq!(attr(&process, keys::PROJECT).as_deref(), Some(PROJECT));
    assert_eq!(
        attr(&process, keys::BUILD_ID).as_deref(),
        Some(build.id.as_str())
    );
    assert_eq!(
        value(&process, keys::FENCE),
        Some(Value::I64(i64::try_from(fence).unwrap())),
        "kiro.fence of process"
    );

    // Under it: the build's end and the settlement (an ack).
    let children_of = |parent: &SpanData| -> Vec<SpanData> {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_context.span_id())
            .cloned()
            .collect()
    };
    let under_process = children_of(&process);
    let finish = under_process
        .iter()
        .find(|s| s.name == "finish")
        .unwrap_or_else(|| panic!("a finish span under process in {names:#?}"));
    assert_eq!(
        attr(finish, keys::BUILD_ID).as_deref(),
        Some(build.id.as_str())
    );
    let settle = under_process
        .iter()
        .find(|s| attr(s, keys::MESSAGING_OPERATION_TYPE).as_deref() == Some("settle"))
        .unwrap_or_else(|| panic!("a settle span under process in {names:#?}"));
    assert_eq!(
        attr(settle, keys::MESSAGING_OPERATION_NAME).as_deref(),
        Some("ack")
    );

    // The build got the process span's context and the worker continued it.
    assert_eq!(
        build
            .req
            .env
            .get(build_env::TRACEPARENT)
            .map(String::as_str),
        Some(format!("00-{}-{}-01", trace, process.span_context.span_id()).as_str())
    );
    assert_eq!(worker.span_context.trace_id(), trace);
    assert_eq!(worker.parent_span_id, process.span_context.span_id());
    assert!(worker.parent_span_is_remote);
    assert_eq!(attr(&worker, keys::PROJECT).as_deref(), Some(PROJECT));
    let steps: Vec<String> = children_of(&worker)
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    for step in ["checkout_step", "agent_step", "tests_step", "push_step"] {
        assert!(
            steps.iter().any(|s| s == step),
            "{step} under worker: {steps:?}"
        );
    }

    // The item's processing ends with its settlement: `process` outlives the build's
    // worker and the settle span.
    for (what, child) in [("worker", &worker), ("finish", finish), ("settle", settle)] {
        assert!(
            process.end_time >= child.end_time && process.start_time <= child.start_time,
            "process does not enclose {what}"
        );
    }

    // Every span of the run belongs to the item's one trace.
    for s in spans {
        assert_eq!(
            s.span_context.trace_id(),
            trace,
            "a span outside the item's trace: {}\nall: {names:#?}",
            describe(s)
        );
    }

    // Nothing secret anywhere: names, attributes, events, links.
    let all = format!("{spans:?}");
    for secret in [PLANTED_TOKEN, PLANTED_API_KEY] {
        assert!(!all.contains(secret), "a planted secret was exported");
    }
    assert!(!all.contains("ghp_"), "something token-like was exported");
}

/// The first 8 hex digits of an X-Ray trace id are its epoch second: close to now.
fn assert_xray_shaped(trace: TraceId) {
    let t = trace.to_string();
    let epoch = u64::from_str_radix(&t[..8], 16).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        epoch.abs_diff(now) < 24 * 60 * 60,
        "trace id {t} does not start with an epoch second near {now}"
    );
}

/// A span attribute.
fn value(s: &SpanData, key: &str) -> Option<Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// A span attribute as a string.
fn attr(s: &SpanData, key: &str) -> Option<String> {
    value(s, key).map(|v| v.as_str().into_owned())
}

fn describe(s: &SpanData) -> String {
    format!(
        "{} trace={} span={} parent={}",
        s.name,
        s.span_context.trace_id(),
        s.span_context.span_id(),
        s.parent_span_id
    )
}
