//! [`GithubClient`]: the one HTTP path every GitHub call takes.
//!
//! Owns: building the octocrab client (octocrab's own retries off — this module decides),
//! the `Authorization` header (from [`TokenSource`], marked sensitive), rate-limit waits
//! ([`wait_hint`]) and bounded retries of transient failures (backon's exponential
//! schedule) on tokio time, and turning an unsuccessful response into a classified
//! [`PortError`].
//!
//! TLS: octocrab is built with `rustls` + `aws-lc-rs` only (DESIGN.md §8: compiling ring as
//! well makes rustls panic with "could not determine CryptoProvider"). [`ensure_crypto_provider`]
//! installs aws-lc-rs as the process default once, unless a default is already installed,
//! so every rustls user in the process agrees.
//!
//! Invariant: no error message or log line built here contains a token: every text that
//! could echo one passes through [`GithubClient::scrub`].

use super::auth::TokenSource;
use super::ratelimit::wait_hint;
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
use std::fmt;
use std::sync::{Arc, Once};
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

struct Inner {
    octo: Octocrab,
    settings: GithubSettings,
    tokens: TokenSource,
}

/// A GitHub API client. Cloning shares the connection pool and the token cache.
#[derive(Clone)]
pub struct GithubClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubClient")
            .field("api_base", &self.inner.settings.api_base)
            .field("app", &self.inner.settings.auth.is_app())
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// Build the client. Call it inside a tokio runtime (octocrab spawns its connection
    /// service). Fails only if the App private key is not a usable PEM key.
    pub fn new(settings: GithubSettings) -> Result<Self, PortError> {
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
        let tokens = TokenSource::new(&settings)?;
        Ok(GithubClient {
            inner: Arc::new(Inner {
                octo,
                settings,
                tokens,
            }),
        })
    }

    pub fn settings(&self) -> &GithubSettings {
        &self.inner.settings
    }

    /// `api_base` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.settings.api_base)
    }

    /// Whether App credentials are configured (check runs need them).
    pub fn is_app(&self) -> bool {
        self.inner.settings.auth.is_app()
    }

    /// The current bearer token (an installation token for Apps, minted or refreshed as
    /// needed).
    pub async fn token(&self) -> Result<Secret, PortError> {
        self.inner.tokens.token(self).await
    }

    /// `text` without any token this client knows, nor anything that looks like one.
    pub fn scrub(&self, text: &str) -> String {
        redact(&self.inner.tokens.scrub(text))
    }

    /// Send with the current token; waits and retries as [`super::ratelimit`] says.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, PortError> {
        let token = self.token().await?;
        self.send_with(method, url, body, &token).await
    }

    /// Send and require a 2xx answer, decoded as JSON.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<T, PortError> {
        let resp = self.send(method, url, body).await?;
        if !resp.status.is_success() {
            return Err(self.error_for(&resp, what));
        }
        resp.json(what)
    }

    /// Send with an explicit bearer value (a token or an App JWT).
    pub(crate) async fn send_with(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        bearer: &Secret,
    ) -> Result<Response, PortError> {
        let policy = self.inner.settings.retry;
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
                .send_once(&method, url, payload.as_deref(), bearer)
                .await;
            let (delay, last_error) = match outcome {
                Ok(resp) => {
                    let now = self.inner.settings.clock.now();
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
                        let err = self.error_for(&resp, &format!("{method} {}", path_of(url)));
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
        let resp = self.inner.octo.execute(request).await.map_err(|e| {
            PortError::transient(format!(
                "GitHub {method} {}: {}",
                path_of(url),
                self.scrub(&e.to_string())
            ))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self.inner.octo.body_to_string(resp).await.map_err(|e| {
            PortError::transient(format!(
                "reading GitHub's answer to {}: {}",
                path_of(url),
                self.scrub(&e.to_string())
            ))
        })?;
        debug!(%method, path = %path_of(url), status = status.as_u16(), "GitHub call");
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A classified error for an unsuccessful response, with GitHub's message (scrubbed,
    /// shortened) and never the request's credentials.
    pub fn error_for(&self, resp: &Response, what: &str) -> PortError {
        let message = serde_json::from_str::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| resp.body.chars().take(200).collect());
        let message: String = self.scrub(&message).chars().take(300).collect();
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
