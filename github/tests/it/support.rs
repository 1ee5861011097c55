//! Shared test helpers: fixtures, settings pointed at a mock server, request inspection.

use kiro_github::gh::{AuthConfig, GithubSettings};
use kiro_protocol::ManualClock;
use kiro_protocol::Secret;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use wiremock::MockServer;

/// A personal access token without a known prefix, so only exact scrubbing can hide it.
pub const TOKEN: &str = "pat-NOPREFIX-0123456789abcdef";
pub const APP_ID: &str = "123456";
pub const INSTALLATION: u64 = 4242;

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap()
}

pub fn fixture(rel: &str) -> Value {
    serde_json::from_str(&fixture_text(rel)).unwrap()
}

/// Token settings against `server`, no request timeout (paused-time tests), fixed clock.
pub fn settings(server: &MockServer, clock: &ManualClock) -> GithubSettings {
    let mut s = GithubSettings::with_token(server.uri(), Secret::new(TOKEN))
        .with_clock(Arc::new(clock.clone()));
    s.timeout = None;
    s
}

pub fn app_settings(server: &MockServer, clock: &ManualClock) -> GithubSettings {
    let mut s = GithubSettings::new(
        server.uri(),
        AuthConfig::App {
            app_id: APP_ID.into(),
            private_key: Secret::new(fixture_text("test-app-key.pem")),
            installation_id: INSTALLATION,
        },
    )
    .with_clock(Arc::new(clock.clone()));
    s.timeout = None;
    s
}

/// Bodies (as JSON) of the requests received on `path` with `method`.
pub async fn bodies(server: &MockServer, method: &str, path: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == method && r.url.path() == path)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}
