//! HTTP plumbing of the emulator: response builders in the AWS JSON protocol's shapes,
//! the forwarding client, and signed-looking JSON calls the emulator makes to itself.
//!
//! Invariant: an error answer has the shape the AWS SDKs parse for the JSON protocols —
//! HTTP 4xx/5xx, header `x-amzn-ErrorType: <Code>`, body `{"__type": Code, "message": …}`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The body type of every answer.
pub type Body = Full<Bytes>;

/// The plain-HTTP client used to reach moto and the emulator itself.
pub type HttpClient = Client<HttpConnector, Body>;

/// A new client (HTTP/1.1, connection pool).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A JSON answer with `status`.
pub fn json(status: u16, value: &Value, content_type: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// An AWS JSON-protocol error answer (HTTP `status`, code `code`).
pub fn aws_error(status: u16, code: &str, message: &str, content_type: &str) -> Response<Body> {
    let mut r = json(
        status,
        &serde_json::json!({ "__type": code, "message": message }),
        content_type,
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

/// A plain-text answer.
pub fn text(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

/// The JSON content type a service's SDK uses (`1.0` for SQS and DynamoDB, else `1.1`).
pub fn content_type_for(service: &str) -> &'static str {
    match service {
        "sqs" | "dynamodb" => "application/x-amz-json-1.0",
        _ => "application/x-amz-json-1.1",
    }
}

/// A failed internal call.
#[derive(Debug, thiserror::Error)]
#[error("{target} via {endpoint}: {reason}")]
pub struct CallError {
    pub target: String,
    pub endpoint: String,
    pub reason: String,
}

/// POST a JSON-protocol request to `endpoint` with an `Authorization` header naming
/// `access_key_id` for `region`/`service` (moto does not check signatures; the emulator
/// reads only the credential scope). Returns the HTTP status and the JSON answer
/// (`Value::Null` when the answer is not JSON).
pub async fn signed_json_call(
    client: &HttpClient,
    endpoint: &str,
    access_key_id: &str,
    region: &str,
    service: &str,
    target: &str,
    body: &Value,
) -> Result<(u16, Value), CallError> {
    let err = |reason: String| CallError {
        target: target.to_owned(),
        endpoint: endpoint.to_owned(),
        reason,
    };
    let date = "20260101T000000Z";
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/20260101/{region}/{service}/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00"
    );
    let req = http::Request::post(format!("{}/", endpoint.trim_end_matches('/')))
        .header(http::header::CONTENT_TYPE, content_type_for(service))
        .header("X-Amz-Target", target)
        .header("X-Amz-Date", date)
        .header(http::header::AUTHORIZATION, auth)
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| err(e.to_string()))?;
    let resp = client.request(req).await.map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}
