//! [`GithubClient`]: the one HTTP path every GitHub call takes.
//!
//! A client is a `Transport` (the HTTP layer: rate-limit waits, bounded retries, error
//! classification, see [`super::transport`]) plus a `TokenSource` (the bearer value of
//! every call, see [`super::auth`]); cloning shares both, so adapters built from one
//! client share its connection pool and its token cache.
//!
//! Invariant: no error message or log line built here contains a token: every text that
//! could echo one passes through [`GithubClient::scrub`].

use super::auth::TokenSource;
use super::settings::GithubSettings;
use super::transport::{self, Transport};
use http::Method;
use kiro_protocol::PortError;
use kiro_protocol::Secret;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;

pub use super::transport::{Response, ensure_crypto_provider};

struct Inner {
    transport: Transport,
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
            .field("api_base", &self.settings().api_base)
            .field("app", &self.settings().auth.is_app())
            .finish_non_exhaustive()
    }
}

/// The token a git push (or anything else) should use with these settings: the personal
/// access token, or a freshly minted App installation token. A long-lived process should
/// keep one [`GithubClient`] and call [`GithubClient::token`] instead, which caches.
pub async fn installation_token(settings: &GithubSettings) -> Result<Secret, PortError> {
    GithubClient::new(settings.clone())?.token().await
}

impl GithubClient {
    /// Build the client. Call it inside a tokio runtime (octocrab spawns its connection
    /// service). Fails only if the App private key is not a usable PEM key.
    pub fn new(settings: GithubSettings) -> Result<Self, PortError> {
        let transport = Transport::new(settings)?;
        let tokens = TokenSource::new(transport.settings())?;
        Ok(GithubClient {
            inner: Arc::new(Inner { transport, tokens }),
        })
    }

    pub fn settings(&self) -> &GithubSettings {
        self.inner.transport.settings()
    }

    /// `api_base` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        self.inner.transport.url(path)
    }

    /// Whether App credentials are configured (check runs need them).
    pub fn is_app(&self) -> bool {
        self.settings().auth.is_app()
    }

    /// The current bearer token (an installation token for Apps, minted or refreshed as
    /// needed).
    pub async fn token(&self) -> Result<Secret, PortError> {
        self.inner.tokens.token(&self.inner.transport).await
    }

    /// `text` without any token this client knows, nor anything that looks like one.
    pub fn scrub(&self, text: &str) -> String {
        transport::scrub(&self.inner.tokens, text)
    }

    /// Send with the current token; waits and retries as [`super::ratelimit`] says.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, PortError> {
        let token = self.token().await?;
        self.inner
            .transport
            .send(method, url, body, &token, &self.inner.tokens)
            .await
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

    /// A classified error for an unsuccessful response, with GitHub's message (scrubbed,
    /// shortened) and never the request's credentials.
    pub fn error_for(&self, resp: &Response, what: &str) -> PortError {
        transport::error_for(resp, what, &self.inner.tokens)
    }
}
