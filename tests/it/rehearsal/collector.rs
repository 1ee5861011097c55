//! Stand-ins for the OpenTelemetry collectors the stack configures: OTLP/HTTP receivers on
//! 127.0.0.1 that answer 200 and keep what they got (a trimmed copy of the receiver in
//! `tests/it/otlp.rs`, which keeps its own private).
//!
//! Invariant: a span counts only when its export request decodes as an OTLP protobuf
//! `ExportTraceServiceRequest`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/(traces|metrics|logs)$"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// How many OTLP metric exports the receiver got.
pub async fn metric_exports(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/v1/metrics")
        .count()
}

/// (service.name, span name) of every span received.
pub async fn spans(server: &MockServer) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in server.received_requests().await.unwrap_or_default() {
        if r.url.path() != "/v1/traces" {
            continue;
        }
        let Ok(req) = ExportTraceServiceRequest::decode(r.body.as_slice()) else {
            continue;
        };
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|res| res.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| (service.clone(), s.name)));
            }
        }
    }
    out
}
