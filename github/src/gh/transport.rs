//! The HTTP layer under [`GithubClient`](super::client::GithubClient): one request with a
//! given bearer value, its rate-limit waits and bounded retries, and the classified error
//! for an unsuccessful answer.
//!
//! Owns: building the octocrab client (octocrab's own retries off — this module decides),
//! the `Authorization` header (marked sensitive), rate-limit waits ([`wait_hint`]) and
//! bounded retries of transient failures (backon's exponential schedule, bounded by
//! [`RequestBackoff`]) on tokio time, and turning an unsuccessful response into a
//! classified [`PortError`]. It knows nothing of where the bearer value comes from: the
//! caller (the client, or the token source exchanging an App JWT) passes it, along with the
//! `KnownSecrets` every message is scrubbed of.
//!
//! TLS: octocrab is built with `rustls` + `aws-lc-rs` only (DESIGN.md §8: compiling ring as
//! well makes rustls panic with "could not determine CryptoProvider"). [`ensure_crypto_provider`]
//! installs aws-lc-rs as the process default once, unless a default is already installed,
//! so every rustls user in the process agrees.
//!
//! Invariant: no error message or log line built here contains a credential: every text
//! that could echo one passes through `scrub` (the known secrets, then
//! [`redact`]).

use super::ratelimit::{RequestBackoff, wait_hint};
use super::settings::GithubSettings;
use crate::redact::redact;
use backon::{BackoffBuilder, ExponentialBuilder};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kiro_protocol::Secret;
use kiro_protocol::{FailureClass, PortError};
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::de::DeserializeOwned;
use std::sync::Once;
use tracing::{debug, warn};

/// Install aws-lc-rs as rustls' process-wide provider, once, unless one is installed.
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one first: equally fine.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
    });
}

/// The credentials a text must be scrubbed of before it is shown (the tokens handed out).
pub(crate) trait KnownSecrets: Send + Sync {
    /// `text` without any of these secrets.
    fn scrub_known(&self, text: &str) -> String;
}

/// `text` without any of `known`, nor anything that looks like a token.
pub(crate) fn scrub(known: &dyn KnownSecrets, text: &str) -> String {
    redact(&known.scrub_known(text))
}

/// A response, read completely.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, PortError> {
        serde_json::from_str(&self.body).map_err(|e| {
            PortError::transient(format!("{what}: unexpected response from GitHub: {e}"))
        })
    }
}

/// The octocrab client and the settings it was built for.
pub(crate) struct Transport {
    octo: Octocrab,
    settings: GithubSettings,
}

impl Transport {
    /// Build the HTTP client. Call it inside a tokio runtime (octocrab spawns its connection
    /// service).
    pub(crate) fn new(settings: GithubSettings) -> Result<Self, PortError> {
        ensure_crypto_provider();
        let octo = Octocrab::builder()
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(settings.timeout)
            .set_read_timeout(settings.timeout)
            .set_write_timeout(settings.timeout)
            .build()
            .map_err(|e| {
                PortError::internal(format!(
                    "building the GitHub client: {}",
                    redact(&e.to_string())
                ))
            })?;
        Ok(Transport { octo, settings })
    }

    pub(crate) fn settings(&self) -> &GithubSettings {
        &self.settings
    }

    /// `api_base` + `path` (`path` starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.api_base)
    }

    /// Send with `bearer` (a token or an App JWT); waits and retries as
    /// [`super::ratelimit`] and the settings' [`RequestBackoff`] say.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        bearer: &Secret,
        known: &dyn KnownSecrets,
    ) -> Result<Response, PortError> {
        let policy: RequestBackoff = self.settings.retry;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_attempts.saturating_sub(1))
            .build();
        let payload = match body {
            Some(b) => {
                Some(serde_json::to_string(b).map_err(|e| PortError::internal(e.to_string()))?)
            }
            None => None,
        };
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let outcome = self
                .send_once(&method, url, payload.as_deref(), bearer, known)
                .await;
            let (delay, last_error) = match outcome {
                Ok(resp) => {
                    let now = self.settings.clock.now();
                    if let Some(wait) = wait_hint(resp.status, &resp.headers, &resp.body, now) {
                        let err = PortError::new(
                            FailureClass::Throttled,
                            format!(
                                "GitHub rate limit on {method} {}: asked to wait {}s",
                                path_of(url),
                                wait.as_secs()
                            ),
                        );
                        if wait > policy.max_rate_limit_wait {
                            return Err(err);
                        }
                        // Rate-limit waits use the policy's attempts too, not the back-off.
                        let _ = backoff.next();
                        (Some(wait), err)
                    } else if resp.status.is_server_error() {
                        let err = error_for(&resp, &format!("{method} {}", path_of(url)), known);
                        (backoff.next(), err)
                    } else {
                        return Ok(resp);
                    }
                }
                Err(err) => (backoff.next(), err),
            };
            match delay {
                Some(d) if attempt < policy.max_attempts => {
                    warn!(attempt, wait_ms = d.as_millis() as u64, error = %last_error, "GitHub call will be retried");
                    tokio::time::sleep(d).await;
                }
                _ => return Err(last_error),
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        payload: Option<&str>,
        bearer: &Secret,
        known: &dyn KnownSecrets,
    ) -> Result<Response, PortError> {
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", bearer.expose())).map_err(|_| {
                PortError::new(
                    FailureClass::Auth,
                    "the GitHub token is not a valid header value",
                )
            })?;
        auth.set_sensitive(true);
        let builder = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header(USER_AGENT, "kiro-codebuild-worker");
        let request = match payload {
            Some(p) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(p.to_owned()),
            None => builder.body(String::new()),
        }
        .map_err(|e| {
            PortError::internal(format!(
                "building a GitHub request to {}: {e}",
                path_of(url)
            ))
        })?;
        let resp = self.octo.execute(request).await.map_err(|e| {
            PortError::transient(format!(
                "GitHub {method} {}: {}",
                path_of(url),
                scrub(known, &e.to_string())
            ))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self.octo.body_to_string(resp).await.map_err(|e| {
            PortError::transient(format!(
                "reading GitHub's answer to {}: {}",
                path_of(url),
                scrub(known, &e.to_string())
            ))
        })?;
        debug!(%method, path = %path_of(url), status = status.as_u16(), "GitHub call");
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A classified error for an unsuccessful response, with GitHub's message (scrubbed of
/// `known`, shortened) and never the request's credentials.
pub(crate) fn error_for(resp: &Response, what: &str, known: &dyn KnownSecrets) -> PortError {
    let message = serde_json::from_str::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| resp.body.chars().take(200).collect());
    let message: String = scrub(known, &message).chars().take(300).collect();
    let class = match resp.status.as_u16() {
        401 | 403 => FailureClass::Auth,
        404 | 410 | 422 => FailureClass::PermanentInput,
        429 => FailureClass::Throttled,
        500..=599 => FailureClass::Transient,
        _ => FailureClass::Internal,
    };
    PortError::new(
        class,
        format!(
            "{what}: GitHub answered {}: {message}",
            resp.status.as_u16()
        ),
    )
}

/// The path of `url`, for messages (no host, no query: queries never carry secrets here,
/// but keep messages short).
fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("/");
    path.split('?').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_for_messages() {
        assert_eq!(
            path_of("https://api.github.com/repos/a/b/pulls/1?x=1"),
            "/repos/a/b/pulls/1"
        );
        assert_eq!(path_of("http://127.0.0.1:9/graphql"), "/graphql");
    }
}
