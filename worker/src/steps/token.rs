//! Where the git token for clone and push comes from: a personal access token
//! (`GITHUB_TOKEN`), or — when the `KIRO_GITHUB_APP_*` settings are present — a fresh
//! GitHub App installation token minted through `kiro_github::gh::installation_token`.
//! The App's settings are parsed by the one parser of the GitHub variables
//! (`kiro_runtime::GithubArgs::app_settings`), the one the board and pull requests use.
//!
//! Invariant: a token only ever lives in a [`Secret`] and is handed to git2's credential
//! callback (user `x-access-token`); an App token is minted right before it is used, so it
//! has (nearly) its whole hour left; a failed exchange is an `auth` failure (or a transient
//! one when GitHub was unreachable) whose message holds no token, key or JWT.

use crate::config::Config;
use async_trait::async_trait;
use kiro_github::gh::GithubSettings;
use kiro_protocol::{Failure, FailureClass, Secret};
use std::sync::Arc;

/// A source of git tokens.
#[async_trait]
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// The token to use now (`None`: no authentication, e.g. a `file://` forge).
    async fn token(&self) -> Result<Option<Secret>, Failure>;
    /// What kind of token this is, for logs.
    fn kind(&self) -> &'static str;
}

/// A fixed token (a personal access token, or none).
#[derive(Debug, Clone)]
pub struct PatToken(pub Option<Secret>);

#[async_trait]
impl TokenSource for PatToken {
    async fn token(&self) -> Result<Option<Secret>, Failure> {
        Ok(self.0.clone())
    }

    fn kind(&self) -> &'static str {
        if self.0.is_some() { "token" } else { "none" }
    }
}

/// GitHub App installation tokens.
#[derive(Debug, Clone)]
pub struct AppToken(pub GithubSettings);

#[async_trait]
impl TokenSource for AppToken {
    async fn token(&self) -> Result<Option<Secret>, Failure> {
        let t = kiro_github::gh::installation_token(&self.0)
            .await
            .map_err(|e| {
                let class = match e.class {
                    FailureClass::Transient | FailureClass::Throttled => e.class,
                    _ => FailureClass::Auth,
                };
                Failure::new(
                    class,
                    format!("cannot get a GitHub App installation token: {}", e.message),
                )
            })?;
        Ok(Some(Secret::new(t.expose())))
    }

    fn kind(&self) -> &'static str {
        "app-installation"
    }
}

/// The token source `cfg` describes: an App when any `KIRO_GITHUB_APP_*` setting is
/// present (all three are then required), else the personal access token.
pub fn from_config(cfg: &Config) -> Result<Arc<dyn TokenSource>, Failure> {
    let app = cfg
        .github
        .app_settings()
        .map_err(|e| Failure::new(FailureClass::PermanentInput, e.to_string()))?;
    Ok(match app {
        Some(settings) => Arc::new(AppToken(settings)),
        None => Arc::new(PatToken(cfg.github.token.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn test_key() -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../github/tests/fixtures/test-app-key.pem");
        std::fs::read_to_string(p).unwrap()
    }

    #[tokio::test]
    async fn pat_without_app_settings() {
        let mut cfg = Config::defaults();
        let src = from_config(&cfg).unwrap();
        assert_eq!(src.kind(), "none");
        assert!(src.token().await.unwrap().is_none());
        cfg.github.token = Some(Secret::new("ghp_x"));
        let src = from_config(&cfg).unwrap();
        assert_eq!(src.token().await.unwrap().unwrap().expose(), "ghp_x");
        cfg.github.app_id = Some("12".into());
        let e = from_config(&cfg).unwrap_err();
        assert_eq!(e.class, FailureClass::PermanentInput);
        assert!(
            e.reason.contains("KIRO_GITHUB_APP_PRIVATE_KEY"),
            "{}",
            e.reason
        );
    }

    #[tokio::test]
    async fn app_settings_mint_an_installation_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/app/installations/42/access_tokens"))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "token": "ghs_minted_for_push",
                "expires_at": "2099-01-01T00:00:00Z"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let mut cfg = Config::defaults();
        cfg.github.token = Some(Secret::new("ghp_ignored"));
        cfg.github.app_id = Some("12".into());
        cfg.github.app_private_key = Some(Secret::new(test_key().replace('\n', "\\n")));
        cfg.github.app_installation_id = Some("42".into());
        cfg.github.api_url = Some(server.uri());
        let src = from_config(&cfg).unwrap();
        assert_eq!(src.kind(), "app-installation");
        let t = src.token().await.unwrap().unwrap();
        assert_eq!(t.expose(), "ghs_minted_for_push");
        assert!(!format!("{src:?}").contains("BEGIN"));
    }

    #[tokio::test]
    async fn a_refused_exchange_is_auth() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/app/installations/42/access_tokens"))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "message": "A JSON web token could not be decoded"
            })))
            .mount(&server)
            .await;
        let mut cfg = Config::defaults();
        cfg.github.app_id = Some("12".into());
        cfg.github.app_private_key = Some(Secret::new(test_key()));
        cfg.github.app_installation_id = Some("42".into());
        cfg.github.api_url = Some(server.uri());
        let e = from_config(&cfg).unwrap().token().await.unwrap_err();
        assert_eq!(e.class, FailureClass::Auth, "{}", e.reason);
        assert!(!e.reason.contains("BEGIN"));
    }
}
