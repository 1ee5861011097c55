//! OpenTelemetry tracing for the three binaries: one trace per work item.
//!
//! Owns the subscriber every binary installs ([`init`]): logs (text on a terminal, JSON
//! lines otherwise, every line inside a work item's spans carrying its `trace_id`, and
//! every line passed through [`redact`]) plus an OpenTelemetry layer whose spans get
//! X-Ray-compatible trace ids (`XrayIdGenerator`: the first 8 hex digits are the epoch
//! second) and go to
//! - the OTLP/HTTP exporter when the `OTEL_*` environment names an endpoint
//!   ([`crate::otel_env`]; off otherwise, and then no connection is ever attempted), and
//! - the span store of the embedded default ([`crate::spans`]) when a span directory is
//!   given (`kiro-consumer trace <item>` reads it).
//!
//! It also owns the carrier conversions ([`inject`], [`continue_trace`]): a span's
//! context becomes a [`TraceContext`] holding both a W3C `traceparent` and an X-Ray
//! `AWSTraceHeader`; reading prefers the W3C value and falls back to the X-Ray header;
//! and the messaging attributes every queue span carries ([`set_messaging`]).
//!
//! Invariants: telemetry never fails a binary (an exporter that cannot be built is
//! logged and skipped); only spans and events of the project's own crates (targets
//! `kiro…`) at INFO or above, inside a work item's root span, become OpenTelemetry
//! data, so no dependency's spans (HTTP clients carrying credentials) are exported; every
//! exported span name, string attribute, error status and event passes through
//! [`redact`]; the process must keep the returned
//! [`Telemetry`] alive and drop it (or call [`Telemetry::shutdown`]) before exiting, which
//! flushes what is buffered.

use crate::LogFormat;
use crate::otel_env::{self, Signal};
use crate::spans::FileSpanExporter;
use kiro_protocol::redact::redact;
use kiro_protocol::{Destination, TraceContext};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_aws::trace::XrayIdGenerator;
use opentelemetry_aws::trace::xray_propagator::{span_context_from_str, span_context_to_string};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

/// The attribute keys (at home in [`crate::keys`]; also here, beside the spans that carry
/// them).
pub use crate::keys;

/// The name of the span field that carries a work item's trace id into log lines.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The service name (`OTEL_SERVICE_NAME` wins when set).
    pub service: String,
    /// How logs are written.
    pub log_format: LogFormat,
    /// Where the embedded default keeps spans for `kiro-consumer trace` (none: not kept).
    pub span_dir: Option<PathBuf>,
    /// The log filter when `RUST_LOG` is unset (`info`; operator commands use `warn` so
    /// their output and progress bars are not interleaved with adapter chatter).
    pub default_filter: &'static str,
}

impl TelemetryConfig {
    pub fn new(service: &str, log_format: LogFormat) -> Self {
        TelemetryConfig {
            service: service.to_owned(),
            log_format,
            span_dir: None,
            default_filter: "info",
        }
    }

    pub fn with_default_filter(mut self, filter: &'static str) -> Self {
        self.default_filter = filter;
        self
    }

    pub fn with_span_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.span_dir = dir;
        self
    }
}

/// The installed tracer provider; dropping it flushes and shuts the exporters down.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flush every exporter now (spans of finished work reach the collector / store).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }

    /// Flush and stop the exporters.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Install the global subscriber: logs plus OpenTelemetry. Calling it twice keeps the
/// first subscriber (the second provider is shut down at once).
pub fn init(cfg: TelemetryConfig) -> Telemetry {
    let service = otel_env::service_name(&cfg.service, |k| std::env::var(k).ok());
    let mut warnings = Vec::new();
    let mut builder = tracer_provider_builder(&service);
    if otel_env::otlp_enabled_from_env(Signal::Traces) {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => builder = builder.with_batch_exporter(Redacting(e)),
            Err(e) => warnings.push(format!("OTLP trace exporter not started: {e}")),
        }
    }
    if let Some(dir) = &cfg.span_dir {
        match FileSpanExporter::new(dir) {
            Ok(e) => builder = builder.with_simple_exporter(Redacting(e)),
            Err(e) => warnings.push(format!("span store {} not opened: {e}", dir.display())),
        }
    }
    let provider = builder.build();
    let terminal = std::io::stderr().is_terminal();
    let installed = tracing_subscriber::registry()
        .with(log_layer_to(
            cfg.log_format.is_json(terminal),
            terminal,
            std::io::stderr,
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(cfg.default_filter)),
        ))
        .with(TraceIdLayer)
        .with(otel_layer(&provider))
        .try_init()
        .is_ok();
    for w in warnings {
        tracing::warn!("{w}");
    }
    if !installed {
        let _ = provider.shutdown();
        return Telemetry { provider: None };
    }
    Telemetry {
        provider: Some(provider),
    }
}

/// A provider builder with X-Ray ids and the service resource, no exporter yet.
pub fn tracer_provider_builder(service: &str) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    SdkTracerProvider::builder()
        .with_id_generator(XrayIdGenerator::default())
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
}

/// The OpenTelemetry layer over `provider`, limited to the project's own spans and
/// events at INFO or above.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let tracer = provider.tracer("kiro-codebuild-worker");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_filter(filter::dynamic_filter_fn(|m, cx| {
            // A span belongs to a work item's trace when it declares the trace id field
            // (the item's root spans) or opens inside such a span; everything else (a
            // receive poll, a renewal round) would be a stray one-span trace.
            m.target().starts_with("kiro")
                && *m.level() <= Level::INFO
                && (m.fields().field(TRACE_ID_FIELD).is_some() || cx.lookup_current().is_some())
        }))
}

/// The log layer: `writer` (stderr in the binaries), `filter` (`RUST_LOG` or the
/// binary's default), the item's trace id on each line, every line redacted.
pub fn log_layer_to<S, W, F>(
    json: bool,
    ansi: bool,
    writer: W,
    filter: F,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    F: tracing_subscriber::layer::Filter<S> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .event_format(KiroFormat {
                inner: Format::default().json(),
                json: true,
            })
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .event_format(KiroFormat {
                inner: Format::default().with_target(false).with_ansi(ansi),
                json: false,
            })
            .with_filter(filter)
            .boxed()
    }
}

/// A work item's trace id, kept on the span that recorded [`TRACE_ID_FIELD`].
#[derive(Debug, Clone)]
struct ItemTrace(String);

/// Keeps the recorded `trace_id` field of a span where the log formatter finds it.
#[derive(Debug, Clone, Copy)]
pub struct TraceIdLayer;

struct TraceIdVisitor(Option<String>);

impl Visit for TraceIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl TraceIdLayer {
    fn keep<S>(id: &Id, found: Option<String>, ctx: &LayerContext<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if let (Some(t), Some(span)) = (found, ctx.span(id)) {
            span.extensions_mut().replace(ItemTrace(t));
        }
    }
}

impl<S> Layer<S> for TraceIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut v = TraceIdVisitor(None);
        attrs.record(&mut v);
        Self::keep(id, v.0, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let mut v = TraceIdVisitor(None);
        values.record(&mut v);
        Self::keep(id, v.0, &ctx);
    }
}

/// The event format: the inner format, redacted, with the trace id of the nearest span
/// that has one (a top-level `"trace_id"` key in JSON, a `trace_id=` suffix in text).
struct KiroFormat<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for KiroFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut buf = String::new();
        self.inner.format_event(ctx, Writer::new(&mut buf), event)?;
        let trace = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<ItemTrace>().map(|t| t.0.clone()))
        });
        writer.write_str(&decorate(&buf, trace.as_deref(), self.json))
    }
}

/// One formatted log line, redacted and carrying `trace` when there is one.
fn decorate(line: &str, trace: Option<&str>, json: bool) -> String {
    let line = redact(line);
    let Some(t) = trace else { return line };
    if json {
        match line.strip_prefix('{') {
            Some(rest) => format!("{{\"{TRACE_ID_FIELD}\":\"{t}\",{rest}"),
            None => line,
        }
    } else {
        match line.strip_suffix('\n') {
            Some(body) => format!("{body} {TRACE_ID_FIELD}={t}\n"),
            None => format!("{line} {TRACE_ID_FIELD}={t}"),
        }
    }
}

/// An exporter wrapper that redacts every string the spans carry.
#[derive(Debug)]
pub struct Redacting<E>(pub E);

fn redact_value(v: &mut Value) {
    if let Value::String(s) = v {
        let clean = redact(s.as_str());
        if clean != s.as_str() {
            *v = Value::from(clean);
        }
    }
}

fn redact_attrs(attrs: &mut [KeyValue]) {
    for kv in attrs {
        redact_value(&mut kv.value);
    }
}

/// `span` with its name, every string attribute, its error status, every event name and
/// event field redacted.
pub fn redact_span(mut span: SpanData) -> SpanData {
    let clean = redact(&span.name);
    if clean != span.name {
        span.name = clean.into();
    }
    redact_attrs(&mut span.attributes);
    if let opentelemetry::trace::Status::Error { description } = &mut span.status {
        let clean = redact(description);
        if clean != *description {
            *description = clean.into();
        }
    }
    for e in span.events.events.iter_mut() {
        let clean = redact(&e.name);
        if clean != e.name {
            e.name = clean.into();
        }
        redact_attrs(&mut e.attributes);
    }
    span
}

impl<E: SpanExporter> SpanExporter for Redacting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .export(batch.into_iter().map(redact_span).collect())
            .await
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// The carrier of `cx`'s span: W3C `traceparent` (+ `tracestate`) and X-Ray header.
/// Empty when `cx` has no valid span (telemetry not installed).
pub fn inject_context(cx: &Context) -> TraceContext {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return TraceContext::default();
    }
    let state = sc.trace_state().header();
    TraceContext {
        traceparent: Some(format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )),
        tracestate: (!state.is_empty()).then_some(state),
        xray: span_context_to_string(sc),
    }
}

/// The carrier of `span` (see [`inject_context`]).
pub fn inject(span: &tracing::Span) -> TraceContext {
    inject_context(&span.context())
}

/// The remote span context a carrier names: its W3C `traceparent` when well-formed,
/// else its X-Ray header; `None` when neither is usable.
pub fn remote_span_context(tc: &TraceContext) -> Option<SpanContext> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    if let Some(tp) = tc
        .traceparent
        .as_deref()
        .filter(|tp| TraceContext::valid_traceparent(tp))
    {
        let mut carrier = std::collections::HashMap::new();
        carrier.insert("traceparent".to_owned(), tp.to_owned());
        if let Some(ts) = &tc.tracestate {
            carrier.insert("tracestate".to_owned(), ts.clone());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            return Some(sc);
        }
    }
    tc.xray
        .as_deref()
        .and_then(span_context_from_str)
        .filter(SpanContext::is_valid)
}

/// Make `span` (not yet entered) a child of the carrier's span, link it to that span
/// too (the messaging conventions' creation-context link), and record its trace id for
/// the logs. With an empty or unusable carrier the span starts a trace of its own.
pub fn continue_trace(span: &tracing::Span, tc: &TraceContext) {
    if let Some(sc) = remote_span_context(tc) {
        let _ = span.set_parent(Context::new().with_remote_span_context(sc.clone()));
        span.add_link(sc);
    }
    record_trace_id(span);
}

/// Record `span`'s trace id in its [`TRACE_ID_FIELD`] (declared `Empty` on the span),
/// so every log line inside it carries the id. Starts the span's OpenTelemetry context:
/// call it after the parent and links are set.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id_of(span) {
        span.record(TRACE_ID_FIELD, id);
    }
}

/// The trace id of `span` (32 hex digits), if it has one.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let id = span.context().span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// Put the messaging conventions' attributes of one queue operation on `span`:
/// the system and destination of `dest`, the operation type (`send`, `process`,
/// `settle`) and its name (the same, or how a message was settled).
pub fn set_messaging(
    span: &tracing::Span,
    dest: &Destination,
    op_type: &'static str,
    op_name: &'static str,
) {
    span.set_attribute(keys::MESSAGING_SYSTEM, dest.system);
    span.set_attribute(keys::MESSAGING_DESTINATION_NAME, dest.name.clone());
    span.set_attribute(keys::MESSAGING_OPERATION_TYPE, op_type);
    span.set_attribute(keys::MESSAGING_OPERATION_NAME, op_name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_redacted_and_carry_the_trace_id() {
        let t = "6932a5f1c0ffee00112233445566778a";
        let json = decorate("{\"msg\":\"token ghp_abcdefghijklmnop\"}\n", Some(t), true);
        assert_eq!(
            json,
            format!("{{\"trace_id\":\"{t}\",\"msg\":\"token [REDACTED]\"}}\n")
        );
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["trace_id"], t);
        let text = decorate("INFO build started\n", Some(t), false);
        assert_eq!(text, format!("INFO build started trace_id={t}\n"));
        assert_eq!(decorate("INFO idle\n", None, false), "INFO idle\n");
    }

    #[test]
    fn xray_header_round_trips_through_the_carrier() {
        let header = "Root=1-6932a5f1-c0ffee00112233445566778a;Parent=53995c3f42cd8ad8;Sampled=1";
        let tc = TraceContext {
            xray: Some(header.to_owned()),
            ..Default::default()
        };
        let sc = remote_span_context(&tc).expect("an X-Ray header alone is enough");
        assert_eq!(
            sc.trace_id().to_string(),
            "6932a5f1c0ffee00112233445566778a"
        );
        assert_eq!(sc.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(sc.is_sampled());
        let back = inject_context(&Context::new().with_remote_span_context(sc));
        assert_eq!(back.xray.as_deref(), Some(header));
        assert_eq!(
            back.traceparent.as_deref(),
            Some("00-6932a5f1c0ffee00112233445566778a-53995c3f42cd8ad8-01")
        );
    }

    #[test]
    fn w3c_wins_over_xray_and_garbage_is_ignored() {
        let tc = TraceContext {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
            xray: Some(
                "Root=1-6932a5f1-c0ffee00112233445566778a;Parent=53995c3f42cd8ad8;Sampled=1".into(),
            ),
        };
        let sc = remote_span_context(&tc).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let bad = TraceContext {
            traceparent: Some("00-zz; rm -rf /-01".into()),
            tracestate: None,
            xray: Some("Root=nonsense".into()),
        };
        assert!(remote_span_context(&bad).is_none());
        assert!(remote_span_context(&TraceContext::default()).is_none());
    }
}
