//! Credentials: a fixed bearer token, or GitHub App installation tokens.
//!
//! App flow: a JWT (RS256, `iss` = the App id, `iat` 60 s in the past, `exp` 9 minutes
//! ahead, from the settings' [`Clock`](kiro_protocol::Clock)) is exchanged at
//! `POST /app/installations/{id}/access_tokens` for an installation token that lives one
//! hour. The token is cached and replaced [`REFRESH_MARGIN`] before it expires; one
//! exchange at a time (an async mutex), so concurrent callers share it.
//!
//! Invariant: tokens and JWTs live only in [`Secret`]s; every token this source has handed
//! out is remembered so `scrub_known` can remove it from any text.

use super::settings::{AuthConfig, GithubSettings};
use super::transport::{KnownSecrets, Transport, error_for};
use http::Method;
use kiro_protocol::Secret;
use kiro_protocol::{FailureClass, PortError, Timestamp};
use octocrab::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};
use tracing::{info, instrument};

/// An installation token is replaced this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

pub(crate) struct Cached {
    token: Secret,
    expires_at: Timestamp,
}

pub(crate) enum TokenSource {
    Static(Secret),
    App {
        app_id: String,
        key: EncodingKey,
        installation_id: u64,
        cache: tokio::sync::Mutex<Option<Cached>>,
        /// Every installation token handed out (the last few), for scrubbing.
        seen: std::sync::Mutex<Vec<Secret>>,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("TokenSource::Static(***)"),
            TokenSource::App {
                app_id,
                installation_id,
                ..
            } => write!(
                f,
                "TokenSource::App {{ app_id: {app_id}, installation_id: {installation_id} }}"
            ),
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Issuer<'a> {
    Number(u64),
    ClientId(&'a str),
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: Issuer<'a>,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    #[serde(default)]
    expires_at: Option<String>,
}

fn parse_expiry(raw: Option<&str>, now: Timestamp) -> Timestamp {
    raw.and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .map(Timestamp)
        // Unknown expiry: assume a short life so it is refreshed soon.
        .unwrap_or_else(|| now.plus(REFRESH_MARGIN * 2))
}

/// A signed App JWT for `now`.
pub fn app_jwt(app_id: &str, key: &EncodingKey, now: Timestamp) -> Result<Secret, PortError> {
    let secs = now.as_secs();
    let claims = Claims {
        iat: secs - 60,
        exp: secs + 9 * 60,
        iss: match app_id.parse::<u64>() {
            Ok(n) => Issuer::Number(n),
            Err(_) => Issuer::ClientId(app_id),
        },
    };
    encode(&Header::new(Algorithm::RS256), &claims, key)
        .map(Secret::new)
        .map_err(|e| {
            PortError::new(
                FailureClass::Auth,
                format!("signing the GitHub App JWT: {e}"),
            )
        })
}

impl TokenSource {
    pub(crate) fn new(settings: &GithubSettings) -> Result<Self, PortError> {
        Ok(match &settings.auth {
            AuthConfig::Token(t) => TokenSource::Static(t.clone()),
            AuthConfig::App {
                app_id,
                private_key,
                installation_id,
            } => TokenSource::App {
                app_id: app_id.clone(),
                key: EncodingKey::from_rsa_pem(private_key.expose().as_bytes()).map_err(|_| {
                    PortError::new(
                        FailureClass::Auth,
                        "the GitHub App private key is not an RSA key in PEM form",
                    )
                })?,
                installation_id: *installation_id,
                cache: tokio::sync::Mutex::new(None),
                seen: std::sync::Mutex::new(Vec::new()),
            },
        })
    }

    /// The bearer value: the static token, or the cached installation token, exchanged
    /// through `transport` when it is missing or about to expire.
    pub(crate) async fn token(&self, transport: &Transport) -> Result<Secret, PortError> {
        let TokenSource::App {
            app_id,
            key,
            installation_id,
            cache,
            seen,
        } = self
        else {
            let TokenSource::Static(t) = self else {
                return Err(PortError::internal("unreachable token source"));
            };
            return Ok(t.clone());
        };
        let mut cache = cache.lock().await;
        let now = transport.settings().clock.now();
        if let Some(c) = cache.as_ref()
            && now.plus(REFRESH_MARGIN) < c.expires_at
        {
            return Ok(c.token.clone());
        }
        let fresh = exchange(transport, self, app_id, key, *installation_id).await?;
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= 8 {
                seen.remove(0);
            }
            seen.push(fresh.token.clone());
        }
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }
}

impl KnownSecrets for TokenSource {
    fn scrub_known(&self, text: &str) -> String {
        match self {
            TokenSource::Static(t) => t.scrub(text),
            TokenSource::App { seen, .. } => {
                let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.iter().fold(text.to_owned(), |acc, t| t.scrub(&acc))
            }
        }
    }
}

#[instrument(skip_all, fields(installation = installation_id))]
async fn exchange(
    transport: &Transport,
    known: &TokenSource,
    app_id: &str,
    key: &EncodingKey,
    installation_id: u64,
) -> Result<Cached, PortError> {
    let now = transport.settings().clock.now();
    let jwt = app_jwt(app_id, key, now)?;
    let url = transport.url(&format!(
        "/app/installations/{installation_id}/access_tokens"
    ));
    let resp = transport
        .send(Method::POST, &url, None, &jwt, known)
        .await?;
    if !resp.status.is_success() {
        let mut e = error_for(
            &resp,
            "exchanging the GitHub App JWT for an installation token",
            known,
        );
        if e.class == FailureClass::PermanentInput {
            e.class = FailureClass::Auth;
        }
        e.message = jwt.scrub(&e.message);
        return Err(e);
    }
    let body: AccessToken = resp.json("installation token")?;
    let expires_at = parse_expiry(body.expires_at.as_deref(), now);
    let secs_left = expires_at.since(now).as_secs();
    info!(
        expires_in_s = secs_left,
        "minted a GitHub App installation token"
    );
    Ok(Cached {
        token: Secret::new(body.token),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_parsing() {
        let now = Timestamp(1_767_225_600_000); // 2026-01-01T00:00:00Z
        assert_eq!(
            parse_expiry(Some("2026-01-01T01:00:00Z"), now),
            Timestamp(1_767_229_200_000)
        );
        assert_eq!(
            parse_expiry(Some("garbage"), now),
            now.plus(REFRESH_MARGIN * 2)
        );
        assert_eq!(parse_expiry(None, now), now.plus(REFRESH_MARGIN * 2));
    }
}
