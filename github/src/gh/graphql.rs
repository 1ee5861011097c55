//! GraphQL over the shared client, keeping partial data.
//!
//! octocrab's `graphql()` turns any `errors` entry into an error and drops `data`; GitHub
//! often answers with both (an item whose repository the token cannot see comes back as
//! `null` with a `FORBIDDEN` error beside the rest of the page). [`query`] posts the
//! document itself and keeps both.
//!
//! Invariant: a response with data is returned with its errors as warnings (also logged);
//! a response without data is a classified [`PortError`]; a mutation ([`mutate`]) accepts
//! no errors at all.

use super::client::GithubClient;
use http::Method;
use kiro_protocol::{FailureClass, PortError};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

/// Data plus the errors that came with it.
#[derive(Debug, Clone)]
pub struct GraphqlOutcome {
    pub data: Value,
    /// One line per partial error: `path: message (TYPE)`, scrubbed.
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct GqlError {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    path: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct GqlResponse {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<GqlError>,
}

fn describe(client: &GithubClient, e: &GqlError) -> String {
    let path = e
        .path
        .as_ref()
        .map(|p| {
            p.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .filter(|p| !p.is_empty());
    let msg: String = client.scrub(&e.message).chars().take(300).collect();
    let kind = e.kind.as_deref().unwrap_or("ERROR");
    match path {
        Some(p) => format!("{p}: {msg} ({kind})"),
        None => format!("{msg} ({kind})"),
    }
}

fn class_of(kind: Option<&str>) -> FailureClass {
    match kind {
        Some("NOT_FOUND") => FailureClass::PermanentInput,
        Some("FORBIDDEN") | Some("INSUFFICIENT_SCOPES") | Some("UNAUTHORIZED") => {
            FailureClass::Auth
        }
        Some("RATE_LIMITED") => FailureClass::Throttled,
        Some("BAD_USER_INPUT") | Some("UNPROCESSABLE") => FailureClass::PermanentInput,
        _ => FailureClass::Transient,
    }
}

/// POST a GraphQL document and parse the answer (a non-2xx status is an error).
async fn post(
    client: &GithubClient,
    document: &str,
    variables: Value,
    what: &str,
) -> Result<GqlResponse, PortError> {
    let url = client.settings().graphql_endpoint();
    let body = json!({ "query": document, "variables": variables });
    let resp = client.send(Method::POST, &url, Some(&body)).await?;
    if !resp.status.is_success() {
        return Err(client.error_for(&resp, what));
    }
    resp.json(what)
}

/// Run a query; `what` names the operation in errors.
pub async fn query(
    client: &GithubClient,
    document: &str,
    variables: Value,
    what: &str,
) -> Result<GraphqlOutcome, PortError> {
    let parsed = post(client, document, variables, what).await?;
    let warnings: Vec<String> = parsed.errors.iter().map(|e| describe(client, e)).collect();
    match parsed.data {
        Some(data) if !data.is_null() => {
            for w in &warnings {
                warn!(operation = what, error = %w, "GitHub GraphQL partial error; keeping the data");
            }
            Ok(GraphqlOutcome { data, warnings })
        }
        _ => {
            let class = class_of(parsed.errors.first().and_then(|e| e.kind.as_deref()));
            let detail = if warnings.is_empty() {
                "no data and no errors".to_owned()
            } else {
                warnings.join("; ")
            };
            Err(PortError::new(class, format!("{what}: {detail}")))
        }
    }
}

/// Run a mutation: any error fails it (the class of the first error).
pub async fn mutate(
    client: &GithubClient,
    document: &str,
    variables: Value,
    what: &str,
) -> Result<Value, PortError> {
    let parsed = post(client, document, variables, what).await?;
    if let Some(first) = parsed.errors.first() {
        let all: Vec<String> = parsed.errors.iter().map(|e| describe(client, e)).collect();
        return Err(PortError::new(
            class_of(first.kind.as_deref()),
            format!("{what}: {}", all.join("; ")),
        ));
    }
    Ok(parsed.data.unwrap_or(Value::Null))
}
