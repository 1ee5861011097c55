//! The emulator's HTTP server: accepts connections on 127.0.0.1, records each AWS call,
//! routes it (CodeBuild and ECS task protection here, the rest to moto) and answers.
//!
//! Invariant: a forwarded request reaches moto byte for byte (method, path, query,
//! headers, body); the call is recorded before routing and its status set when answered.

use super::fault::{Fault, FaultWhen};
use super::record::{self, Answerer, RecordedCall};
use super::wire::{self, Body};
use super::{Shared, codebuild, ecs, lock};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use tracing::debug;

/// Accept connections until the task is aborted.
pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(error = %e, "emulator connection ended");
            }
        });
    }
}

/// What the router needs to know about a request.
pub(crate) struct Parsed {
    pub role: Option<String>,
    pub service: Option<String>,
    pub action: Option<String>,
    pub body: Value,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return wire::text(400, &format!("cannot read the request body: {e}")),
    };
    if parts.uri.path().starts_with("/_emulator/") {
        return internal(&shared, parts.uri.path());
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let auth = header("authorization")
        .as_deref()
        .and_then(record::parse_authorization);
    let target = header("x-amz-target");
    let action = record::action_of(target.as_deref(), parts.uri.query(), &bytes);
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let (akid, region, service) = match auth {
        Some((k, r, s)) => (Some(k), Some(r), Some(s)),
        None => (None, None, None),
    };
    // A request signed for another service name but aimed at CodeBuild by its target.
    let service = match target.as_deref() {
        Some(t) if t.starts_with(codebuild::TARGET_PREFIX) => Some("codebuild".to_owned()),
        _ => service,
    };
    let role = akid.as_deref().and_then(|k| shared.role_of(k));
    let resources = json
        .as_ref()
        .map(|j| record::resources_of(service.as_deref(), action.as_deref(), j))
        .unwrap_or_default();
    let ours = service.as_deref() == Some("codebuild")
        || (service.as_deref() == Some("ecs")
            && matches!(
                action.as_deref(),
                Some("UpdateTaskProtection" | "GetTaskProtection")
            ));
    let index = shared.record(RecordedCall {
        seq: 0,
        access_key_id: akid,
        role: role.clone(),
        service: service.clone(),
        region,
        action: action.clone(),
        target,
        resources,
        response_arn: None,
        status: None,
        answered_by: if ours {
            Answerer::Emulator
        } else {
            Answerer::Moto
        },
        request: json.clone(),
    });
    let parsed = Parsed {
        role,
        service,
        action,
        body: json.unwrap_or(Value::Null),
    };
    let fault = lock(&shared.faults).take(parsed.action.as_deref());
    if let Some(f) = fault.as_ref().filter(|f| f.when == FaultWhen::Before) {
        let resp = fault_answer(f, parsed.service.as_deref());
        shared.answered(index, resp.status().as_u16(), None);
        return resp;
    }
    let (resp, arn) = if ours {
        let resp = match parsed.service.as_deref() {
            Some("codebuild") => codebuild::api::handle(&shared, &parsed).await,
            _ => ecs::handle(&shared, &parsed),
        };
        (resp, None)
    } else {
        forward(&shared, parts, bytes).await
    };
    let resp = match &fault {
        Some(f) => fault_answer(f, parsed.service.as_deref()),
        None => resp,
    };
    shared.answered(index, resp.status().as_u16(), arn);
    resp
}

fn fault_answer(f: &Fault, service: Option<&str>) -> Response<Body> {
    let ct = wire::content_type_for(service.unwrap_or_default());
    wire::aws_error(f.status, &f.code, &f.message, ct)
}

/// The credentials and task-metadata endpoints (not AWS calls).
fn internal(shared: &Shared, path: &str) -> Response<Body> {
    let rest = path.trim_start_matches("/_emulator/");
    if let Some(role) = rest.strip_prefix("credentials/") {
        let c = shared.credentials_for(role);
        let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let body = serde_json::json!({
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key,
            "Token": format!("emulator-session-{role}"),
            "Expiration": humantime::format_rfc3339_seconds(expires).to_string(),
            "RoleArn": format!("arn:aws:iam::{}:role/{role}", shared.cfg.account),
        });
        return wire::json(200, &body, "application/json");
    }
    if let Some(task) = rest.strip_prefix("ecs/") {
        return ecs::metadata(shared, task);
    }
    wire::text(404, "unknown emulator endpoint")
}

/// Send the request to moto unchanged; return its answer and the `ARN` of a JSON answer.
async fn forward(
    shared: &Shared,
    parts: http::request::Parts,
    bytes: Bytes,
) -> (Response<Body>, Option<String>) {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let uri = format!("{}{path}", shared.moto);
    let mut req = Request::new(Full::new(bytes));
    *req.method_mut() = parts.method;
    *req.headers_mut() = parts.headers;
    match uri.parse() {
        Ok(u) => *req.uri_mut() = u,
        Err(e) => return (wire::text(500, &format!("bad moto URI {uri}: {e}")), None),
    }
    let resp = match shared.client.request(req).await {
        Ok(r) => r,
        Err(e) => return (wire::text(502, &format!("moto unreachable: {e}")), None),
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return (
                wire::text(502, &format!("moto answer unreadable: {e}")),
                None,
            );
        }
    };
    let arn = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("ARN").and_then(Value::as_str).map(str::to_owned));
    // The body is re-framed with its full length.
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    (Response::from_parts(parts, Full::new(bytes)), arn)
}
