//! Spans over the wire: a small OTLP/HTTP receiver (wiremock on 127.0.0.1) gets the
//! spans the producer, the consumer and the worker export while the quick-start pipeline
//! runs, as protobuf, one trace per item with the parent chain send → process → worker;
//! and a token-looking value in a failure never reaches the logs, the span store or the
//! receiver.
//!
//! The worker is started by the consumer's local builds, which inherit the consumer's
//! environment, so `OTEL_EXPORTER_OTLP_ENDPOINT` reaches it without any extra wiring.
//! Every binary flushes its batch exporter when it exits, so once the consumer has
//! returned (`--until-idle`) every span has been received.

use crate::support::*;
use kiro_protocol::JobState;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A token-looking value (the shape of a GitHub personal access token).
const TOKEN: &str = "ghp_0123456789abcdefghijklmnop";

/// A receiver answering 200 to every OTLP/HTTP export (traces, and metrics too so the
/// binaries' metric exports do not log failures).
async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/metrics"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// `kiro-producer --once`, then `kiro-consumer run --until-idle <extra>`, both with
/// `env`; returns the consumer's output (it must succeed).
async fn run_pipeline(bin: &Path, env: &[(String, String)], extra: &[&str]) -> Output {
    let (bin, env) = (bin.to_path_buf(), env.to_vec());
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    // Blocking waits off the runtime's workers, so the receiver keeps answering.
    let out = tokio::task::spawn_blocking(move || {
        produce_once(&bin, &env);
        Command::new(bin.join("kiro-consumer"))
            .args([
                "run",
                "--until-idle",
                "--max-jobs",
                "4",
                "--poll-every",
                "300ms",
                "--receive-wait",
                "300ms",
                "--retry-base",
                "1s",
                "--retry-max",
                "2s",
            ])
            .args(extra)
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "consumer failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `pipeline_env` with `OTEL_EXPORTER_OTLP_ENDPOINT` and `overrides` in place.
fn env_with(state: &Path, endpoint: &str, overrides: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = pipeline_env(state)
        .into_iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .collect();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.to_owned()));
    env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

/// One received span with the service that exported it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }

    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &Option<AnyValue>) -> Option<String> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(&kv.value))
}

/// Every trace export the receiver got: checked to be protobuf, decoded, flattened.
async fn received_spans(server: &MockServer) -> (Vec<Received>, Vec<Vec<u8>>) {
    let requests = server.received_requests().await.expect("recording is on");
    let mut spans = Vec::new();
    let mut bodies = Vec::new();
    for r in requests.iter().filter(|r| r.url.path() == "/v1/traces") {
        let ct = r
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(
            ct, "application/x-protobuf",
            "OTLP/HTTP with protobuf bodies"
        );
        let req = ExportTraceServiceRequest::decode(r.body.as_slice())
            .expect("an ExportTraceServiceRequest");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|span| Received {
                    service: service.clone(),
                    span,
                }));
            }
        }
        bodies.push(r.body.clone());
    }
    (spans, bodies)
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_http_receiver_from_all_three_binaries() {
    let bin = bin_dir();
    let server = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());
    let env = env_with(&state, &server.uri(), &[]);
    let out = run_pipeline(&bin, &env, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);

    let s = State::open(&state);
    let calc1 = s.job("CALC-1").await.expect("CALC-1 job");
    assert_eq!(calc1.state, JobState::Succeeded, "{calc1:?}\n{stderr}");

    let (spans, _) = received_spans(&server).await;
    for service in ["kiro-producer", "kiro-consumer", "kiro-worker"] {
        assert!(
            spans.iter().any(|r| r.service == service),
            "no span from {service} among {} received\n{stderr}",
            spans.len()
        );
    }

    // CALC-1's own spans: the producer's send, the consumer's process, the worker's run.
    let of_item: Vec<&Received> = spans
        .iter()
        .filter(|r| r.attr("kiro.item").as_deref() == Some("CALC-1"))
        .collect();
    let one = |what: &str, pick: &dyn Fn(&Received) -> bool| -> Received {
        let found: Vec<&&Received> = of_item.iter().filter(|r| pick(r)).collect();
        assert_eq!(found.len(), 1, "one {what} span of CALC-1: {of_item:#?}");
        (*found[0]).clone()
    };
    let op = |r: &Received| r.attr("messaging.operation.type");
    let send = one("send", &|r| {
        r.service == "kiro-producer" && op(r).as_deref() == Some("send")
    });
    let process = one("process", &|r| {
        r.service == "kiro-consumer" && op(r).as_deref() == Some("process")
    });
    let worker = one("worker", &|r| {
        r.service == "kiro-worker" && r.span.name == "worker"
    });

    // One trace, the id the job record carries, in the X-Ray form (epoch second first).
    let trace = send.trace_id();
    assert_eq!(trace.len(), 32);
    assert_eq!(process.trace_id(), trace);
    assert_eq!(worker.trace_id(), trace);
    assert_eq!(calc1.trace.trace_id(), Some(trace.as_str()));
    let epoch = u64::from_str_radix(&trace[..8], 16).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(epoch <= now && now - epoch < 3600, "X-Ray trace id {trace}");

    // send → process → worker.
    assert!(send.span.parent_span_id.is_empty(), "send is the root");
    assert_eq!(process.parent_id(), send.span_id());
    assert_eq!(worker.parent_id(), process.span_id());
    // Every CALC-1 span of the three services sits in that trace.
    assert!(
        of_item.iter().all(|r| r.trace_id() == trace),
        "{of_item:#?}"
    );
    // The worker's steps are its children, in the same trace.
    assert!(
        spans
            .iter()
            .any(|r| r.service == "kiro-worker" && r.parent_id() == worker.span_id()),
        "the worker's steps are exported under it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_a_failure_never_reaches_logs_spans_or_the_collector() {
    let bin = bin_dir();
    let server = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());
    // A git base whose path holds a token-looking value: every clone fails, and git's
    // message (which names the path) travels into the worker's logs, the failure
    // reason, the consumer's logs and the spans' errors.
    let base: PathBuf = tmp.path().join(TOKEN);
    let env = env_with(
        &state,
        &server.uri(),
        &[("KIRO_GIT_BASE", format!("file://{}", base.display()))],
    );
    let out = run_pipeline(&bin, &env, &["--max-attempts", "1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);

    let s = State::open(&state);
    let calc1 = s.job("CALC-1").await.expect("CALC-1 job");
    assert_eq!(calc1.state, JobState::DeadLettered, "{calc1:?}\n{stderr}");
    let reason = calc1.last_failure.expect("a failure").reason;
    assert!(reason.contains("clone failed"), "{reason}");

    // The consumer's logs.
    assert!(stderr.contains("[REDACTED]"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    // The worker's logs (its stderr goes to the build logs).
    let logs: Vec<(PathBuf, String)> = files(&state.join("builds"), "build.log");
    assert!(!logs.is_empty());
    for (p, text) in &logs {
        assert!(text.contains("[REDACTED]"), "{}:\n{text}", p.display());
        assert!(!text.contains(TOKEN), "{}:\n{text}", p.display());
    }
    // The span store of the embedded default.
    let stored = files(&kiro_telemetry::spans::span_dir(&state), ".jsonl");
    assert!(!stored.is_empty());
    let all: String = stored.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.contains("[REDACTED]"), "{all}");
    for (p, text) in &stored {
        assert!(!text.contains(TOKEN), "{}:\n{text}", p.display());
    }
    // The collector.
    let (spans, bodies) = received_spans(&server).await;
    assert!(
        spans.iter().any(|r| r.service == "kiro-worker"),
        "the worker exported its spans"
    );
    let token = TOKEN.as_bytes();
    for b in &bodies {
        assert!(
            !b.windows(token.len()).any(|w| w == token),
            "an exported span carries the token"
        );
    }
}

/// The files under `dir` (recursively) whose name ends with `suffix`, with their text.
fn files(dir: &Path, suffix: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap_or_default()));
        }
    }
    out
}
