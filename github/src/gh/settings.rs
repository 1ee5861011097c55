//! [`GithubSettings`]: where GitHub is and how to authenticate, parsed from the variables
//! in [`vars`] ([`GithubVars`]) as a binary read them: from its command line, or from an
//! explicit map ([`GithubSettings::from_env_map`]).
//!
//! Invariant: [`GithubVars`] is the one parser of these variables (every binary and the
//! worker's git token use it), and it never touches the process environment itself;
//! credentials are held in [`Secret`] from the moment they are read. Empty values count as
//! unset. App credentials win over a personal access token when both are set; a partial App
//! configuration is an error naming the missing variable.

use super::ratelimit::RequestBackoff;
use kiro_protocol::Secret;
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

/// The values of the variables in [`vars`], as read (unset: `None`; an empty value counts
/// as unset). [`GithubVars::settings`] and [`GithubVars::app_settings`] parse them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GithubVars {
    pub token: Option<Secret>,
    pub app_id: Option<String>,
    pub app_private_key: Option<Secret>,
    pub app_installation_id: Option<String>,
    pub api_url: Option<String>,
}

/// `v` trimmed, unless it is empty.
fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

impl GithubVars {
    /// The variables in [`vars`] from `env`.
    pub fn from_env_map(env: &HashMap<String, String>) -> Self {
        let get = |name: &str| env.get(name).cloned();
        GithubVars {
            token: get(vars::TOKEN).map(Secret::new),
            app_id: get(vars::APP_ID),
            app_private_key: get(vars::APP_PRIVATE_KEY).map(Secret::new),
            app_installation_id: get(vars::APP_INSTALLATION_ID),
            api_url: get(vars::API_URL),
        }
    }

    /// The REST base: [`vars::API_URL`] (an http(s) URL) or [`DEFAULT_API_BASE`].
    pub fn api_base(&self) -> Result<String, SettingsError> {
        let api_base = non_empty(self.api_url.as_deref())
            .unwrap_or(DEFAULT_API_BASE)
            .to_owned();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(SettingsError::Invalid {
                name: vars::API_URL,
                what: "an http(s) URL",
                value: api_base,
            });
        }
        Ok(api_base)
    }

    /// The App credentials when any App variable is set (all three are then required),
    /// `None` when none is.
    pub fn app(&self) -> Result<Option<AuthConfig>, SettingsError> {
        let app_id = non_empty(self.app_id.as_deref());
        let pem = non_empty(self.app_private_key.as_ref().map(Secret::expose));
        let raw_id = non_empty(self.app_installation_id.as_deref());
        let (app_id, pem, raw_id) = match (app_id, pem, raw_id) {
            (None, None, None) => return Ok(None),
            (Some(a), Some(p), Some(i)) => (a, p, i),
            (None, _, _) => return Err(SettingsError::IncompleteApp(vars::APP_ID)),
            (_, None, _) => return Err(SettingsError::IncompleteApp(vars::APP_PRIVATE_KEY)),
            (_, _, None) => return Err(SettingsError::IncompleteApp(vars::APP_INSTALLATION_ID)),
        };
        let installation_id = raw_id.parse().map_err(|_| SettingsError::Invalid {
            name: vars::APP_INSTALLATION_ID,
            what: "a number",
            value: raw_id.to_owned(),
        })?;
        let pem = pem.replace("\\n", "\n");
        if !pem.contains("-----BEGIN") {
            return Err(SettingsError::Invalid {
                name: vars::APP_PRIVATE_KEY,
                what: "a PEM private key",
                value: "(not shown)".into(),
            });
        }
        Ok(Some(AuthConfig::App {
            app_id: app_id.to_owned(),
            private_key: Secret::new(pem),
            installation_id,
        }))
    }

    /// Settings for a GitHub App, `None` when no App variable is set.
    pub fn app_settings(&self) -> Result<Option<GithubSettings>, SettingsError> {
        match self.app()? {
            Some(auth) => Ok(Some(GithubSettings::new(self.api_base()?, auth))),
            None => Ok(None),
        }
    }

    /// Settings for the App when its variables are set, else for the token.
    pub fn settings(&self) -> Result<GithubSettings, SettingsError> {
        let api_base = self.api_base()?;
        let auth = match self.app()? {
            Some(app) => app,
            None => match non_empty(self.token.as_ref().map(Secret::expose)) {
                Some(t) => AuthConfig::Token(Secret::new(t)),
                None => return Err(SettingsError::NoCredentials),
            },
        };
        Ok(GithubSettings::new(api_base, auth))
    }
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

    /// Read the variables in [`vars`] from `env` with [`GithubVars::settings`] (the
    /// binaries read them through their command line, `kiro_runtime::GithubArgs`).
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Self, SettingsError> {
        GithubVars::from_env_map(env).settings()
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

    #[test]
    fn the_app_alone_is_none_without_its_variables_and_named_when_partial() {
        let none = GithubVars {
            token: Some(Secret::new("ghp_abcdefghijkl")),
            ..GithubVars::default()
        };
        assert!(none.app_settings().unwrap().is_none());
        let partial = GithubVars {
            app_id: Some("12".into()),
            app_installation_id: Some(" ".into()),
            ..none.clone()
        };
        assert_eq!(
            partial.app_settings().unwrap_err(),
            SettingsError::IncompleteApp(vars::APP_PRIVATE_KEY)
        );
        let app = GithubVars {
            app_private_key: Some(Secret::new("-----BEGIN KEY-----\\nx")),
            app_installation_id: Some("seven".into()),
            ..partial
        };
        let e = app.app_settings().unwrap_err();
        assert!(e.to_string().contains(vars::APP_INSTALLATION_ID), "{e}");
        let app = GithubVars {
            app_installation_id: Some("7".into()),
            ..app
        };
        let s = app.app_settings().unwrap().unwrap();
        assert!(s.auth.is_app());
        assert_eq!(s.api_base, DEFAULT_API_BASE);
    }
}
