//! The GitHub settings of `kiro-producer`, `kiro-consumer run` and `kiro-worker`: a
//! token, or a GitHub App, and where GitHub's API is ([`GithubArgs`]).
//!
//! Invariant: the flags read the variables named in `kiro_github::gh::settings::vars`, and
//! their values are parsed by `GithubVars` (the one parser of them) and nowhere else;
//! credentials are held in [`Secret`]s from the moment clap reads them, and their values
//! never appear in `--help`.

use clap::Args;
use kiro_github::gh::settings::{GithubSettings, GithubVars, SettingsError, vars};
use kiro_protocol::Secret;

/// How to reach GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct GithubArgs {
    /// GitHub token (a personal access token) for the API and for https pushes
    /// (`x-access-token`); never logged.
    #[arg(long = "github-token", env = vars::TOKEN, hide_env_values = true)]
    pub token: Option<Secret>,
    /// GitHub App id: with the key and installation id, the API, clone and push use a
    /// fresh installation token instead of `GITHUB_TOKEN`.
    #[arg(long = "github-app-id", env = vars::APP_ID)]
    pub app_id: Option<String>,
    /// GitHub App private key (PEM; literal `\n` accepted); never logged.
    #[arg(
        long = "github-app-private-key",
        env = vars::APP_PRIVATE_KEY,
        hide_env_values = true
    )]
    pub app_private_key: Option<Secret>,
    /// The GitHub App's installation id on the owner of the repositories and the project.
    #[arg(long = "github-app-installation-id", env = vars::APP_INSTALLATION_ID)]
    pub app_installation_id: Option<String>,
    /// GitHub REST base (GitHub Enterprise: `https://HOST/api/v3`).
    #[arg(long = "github-api-url", env = vars::API_URL)]
    pub api_url: Option<String>,
}

impl GithubArgs {
    /// The values as the GitHub adapter's parser takes them.
    pub fn vars(&self) -> GithubVars {
        GithubVars {
            token: self.token.clone(),
            app_id: self.app_id.clone(),
            app_private_key: self.app_private_key.clone(),
            app_installation_id: self.app_installation_id.clone(),
            api_url: self.api_url.clone(),
        }
    }

    /// Settings for the App when its variables are set, else for the token.
    pub fn settings(&self) -> Result<GithubSettings, SettingsError> {
        self.vars().settings()
    }

    /// Settings for the App, `None` when no App variable is set.
    pub fn app_settings(&self) -> Result<Option<GithubSettings>, SettingsError> {
        self.vars().app_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        github: GithubArgs,
    }

    #[test]
    fn flags_reach_the_one_parser_and_secrets_stay_hidden() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "t",
            "--github-token",
            "ghp_flagtoken123",
            "--github-api-url",
            "https://ghe.example.com/api/v3",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("ghp_flagtoken123"));
        let s = cli.github.settings().unwrap();
        assert_eq!(s.api_base, "https://ghe.example.com/api/v3");
        assert!(!s.auth.is_app());
        assert!(cli.github.app_settings().unwrap().is_none());
        let partial = GithubArgs {
            app_id: Some("12".into()),
            ..cli.github
        };
        assert_eq!(
            partial.settings().unwrap_err(),
            SettingsError::IncompleteApp(vars::APP_PRIVATE_KEY)
        );
        let help = Cli::command().render_long_help().to_string();
        for name in [
            vars::TOKEN,
            vars::APP_ID,
            vars::APP_PRIVATE_KEY,
            vars::API_URL,
        ] {
            assert!(help.contains(name), "{help}");
        }
    }
}
