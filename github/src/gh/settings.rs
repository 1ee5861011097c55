//! [`GithubSettings`]: where GitHub is and how to authenticate, read from an explicit map.
//!
//! Invariant: settings are built from a map handed in by the caller ([`GithubSettings::from_env_map`]),
//! so tests never touch the process environment; credentials are held in [`Secret`] from the
//! moment they are read. App credentials win over a personal access token when both are set;
//! a partial App configuration is an error naming the missing variable.

use super::ratelimit::RequestBackoff;
use super::secret::Secret;
use kiro_protocol::{Clock, SystemClock};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Environment variable names.
pub mod vars {
    /// A personal access token (or any bearer token, e.g. Actions' `GITHUB_TOKEN`).
    pub const TOKEN: &str = "GITHUB_TOKEN";
    /// The App's id (numeric) or client id; the JWT's `iss`.
    pub const APP_ID: &str = "KIRO_GITHUB_APP_ID";
    /// The App's private key, PEM (literal `\n` sequences are accepted as newlines).
    pub const APP_PRIVATE_KEY: &str = "KIRO_GITHUB_APP_PRIVATE_KEY";
    /// The installation id of the App on the owner of the repositories and project.
    pub const APP_INSTALLATION_ID: &str = "KIRO_GITHUB_APP_INSTALLATION_ID";
    /// REST base, default `https://api.github.com` (GitHub Enterprise: `https://HOST/api/v3`).
    pub const API_URL: &str = "KIRO_GITHUB_API_URL";
}

/// The public GitHub API.
pub const DEFAULT_API_BASE: &str = "https://api.github.com";

/// How to authenticate.
#[derive(Clone, Debug)]
pub enum AuthConfig {
    /// A bearer token used as is.
    Token(Secret),
    /// A GitHub App: a JWT signed with `private_key` is exchanged for installation tokens.
    App {
        app_id: String,
        private_key: Secret,
        installation_id: u64,
    },
}

impl AuthConfig {
    pub fn is_app(&self) -> bool {
        matches!(self, AuthConfig::App { .. })
    }
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error(
        "no GitHub credentials: set {} or {}, {} and {}",
        vars::TOKEN,
        vars::APP_ID,
        vars::APP_PRIVATE_KEY,
        vars::APP_INSTALLATION_ID
    )]
    NoCredentials,
    #[error("incomplete GitHub App credentials: {0} is not set")]
    IncompleteApp(&'static str),
    #[error("{name} must be {what}, got {value:?}")]
    Invalid {
        name: &'static str,
        what: &'static str,
        value: String,
    },
}

impl From<SettingsError> for kiro_protocol::PortError {
    fn from(e: SettingsError) -> Self {
        kiro_protocol::PortError::new(kiro_protocol::FailureClass::Auth, e.to_string())
    }
}

/// Everything the GitHub adapters need besides what they are pointed at.
#[derive(Clone)]
pub struct GithubSettings {
    /// REST base URL without a trailing slash.
    pub api_base: String,
    /// The GraphQL endpoint; derived from `api_base` unless set.
    pub graphql_url: Option<String>,
    pub auth: AuthConfig,
    /// Per-request timeout (connect and read). `None` disables it (tests on paused time).
    pub timeout: Option<Duration>,
    pub retry: RequestBackoff,
    /// Wall clock for token expiry and `x-ratelimit-reset`.
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubSettings")
            .field("api_base", &self.api_base)
            .field("graphql_url", &self.graphql_url)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn non_empty<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl GithubSettings {
    /// Settings with a bearer token against `api_base`.
    pub fn with_token(api_base: impl Into<String>, token: Secret) -> Self {
        GithubSettings::new(api_base.into(), AuthConfig::Token(token))
    }

    /// Settings with explicit auth against `api_base`.
    pub fn new(api_base: String, auth: AuthConfig) -> Self {
        GithubSettings {
            api_base: api_base.trim_end_matches('/').to_owned(),
            graphql_url: None,
            auth,
            timeout: Some(Duration::from_secs(30)),
            retry: RequestBackoff::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Read the variables in [`vars`] from `env` (pass `std::env::vars().collect()` in a
    /// binary). Empty values count as unset.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let api_base = non_empty(env, vars::API_URL)
            .unwrap_or(DEFAULT_API_BASE)
            .to_owned();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(SettingsError::Invalid {
                name: vars::API_URL,
                what: "an http(s) URL",
                value: api_base,
            });
        }
        let app_vars = [
            vars::APP_ID,
            vars::APP_PRIVATE_KEY,
            vars::APP_INSTALLATION_ID,
        ];
        let auth = if app_vars.iter().any(|v| non_empty(env, v).is_some()) {
            for v in app_vars {
                if non_empty(env, v).is_none() {
                    return Err(SettingsError::IncompleteApp(v));
                }
            }
            let app_id = non_empty(env, vars::APP_ID).unwrap_or_default().to_owned();
            let raw_id = non_empty(env, vars::APP_INSTALLATION_ID).unwrap_or_default();
            let installation_id = raw_id.parse().map_err(|_| SettingsError::Invalid {
                name: vars::APP_INSTALLATION_ID,
                what: "a number",
                value: raw_id.to_owned(),
            })?;
            let pem = non_empty(env, vars::APP_PRIVATE_KEY)
                .unwrap_or_default()
                .replace("\\n", "\n");
            if !pem.contains("-----BEGIN") {
                return Err(SettingsError::Invalid {
                    name: vars::APP_PRIVATE_KEY,
                    what: "a PEM private key",
                    value: "(not shown)".into(),
                });
            }
            AuthConfig::App {
                app_id,
                private_key: Secret::new(pem),
                installation_id,
            }
        } else if let Some(t) = non_empty(env, vars::TOKEN) {
            AuthConfig::Token(Secret::new(t))
        } else {
            return Err(SettingsError::NoCredentials);
        };
        Ok(GithubSettings::new(api_base, auth))
    }

    /// Read the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        GithubSettings::from_env_map(&std::env::vars().collect())
    }

    /// Use `clock` for token expiry and rate-limit resets.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The GraphQL endpoint: `https://api.github.com/graphql`, or for GitHub Enterprise
    /// (`…/api/v3`) `…/api/graphql`.
    pub fn graphql_endpoint(&self) -> String {
        if let Some(u) = &self.graphql_url {
            return u.clone();
        }
        match self.api_base.strip_suffix("/api/v3") {
            Some(host) => format!("{host}/api/graphql"),
            None => format!("{}/graphql", self.api_base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn token_and_app_and_errors() {
        let s = GithubSettings::from_env_map(&env(&[(vars::TOKEN, "ghp_abcdefghijkl")])).unwrap();
        assert!(matches!(s.auth, AuthConfig::Token(_)));
        assert_eq!(s.api_base, DEFAULT_API_BASE);
        assert_eq!(s.graphql_endpoint(), "https://api.github.com/graphql");
        assert!(!format!("{s:?}").contains("ghp_abcdefghijkl"));

        let s = GithubSettings::from_env_map(&env(&[
            (vars::TOKEN, "ghp_abcdefghijkl"),
            (vars::APP_ID, "42"),
            (
                vars::APP_PRIVATE_KEY,
                "-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----",
            ),
            (vars::APP_INSTALLATION_ID, "7"),
            (vars::API_URL, "https://ghe.example.com/api/v3/"),
        ]))
        .unwrap();
        match &s.auth {
            AuthConfig::App {
                app_id,
                private_key,
                installation_id,
            } => {
                assert_eq!(app_id, "42");
                assert_eq!(*installation_id, 7);
                assert!(private_key.expose().contains("\nabc\n"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.graphql_endpoint(), "https://ghe.example.com/api/graphql");

        assert_eq!(
            GithubSettings::from_env_map(&env(&[(vars::APP_ID, "42")])).unwrap_err(),
            SettingsError::IncompleteApp(vars::APP_PRIVATE_KEY)
        );
        assert_eq!(
            GithubSettings::from_env_map(&env(&[(vars::TOKEN, " ")])).unwrap_err(),
            SettingsError::NoCredentials
        );
    }
}
