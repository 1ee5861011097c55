//! Where `kiro-consumer run` finds the board and the pull requests ([`ForgeConfig`]):
//! the embedded board file, or a GitHub project reached with the consumer's own back-off.
//!
//! Invariant: the consumer's GitHub calls never wait out a rate limit ([`forge_backoff`]):
//! they run on the loop that renews the leases, so a throttled call fails and the next
//! round tries again.

use super::InvalidSetting;
use kiro_consumer::defaults;
use kiro_github::gh::{GithubSettings, ProjectRef, RequestBackoff};
use kiro_runtime::{Forge, ForgeArgs, GithubArgs};
use std::path::PathBuf;
use std::time::Duration;

/// Where `run` reads the board (and, on GitHub, comments on pull requests).
#[derive(Debug, Clone)]
pub enum ForgeConfig {
    /// The embedded forge: its board file, when one is given (without one, no board is
    /// read: nothing is withdrawn or marked failed).
    Embedded { board_file: Option<PathBuf> },
    /// A GitHub Projects (v2) board, reached with `settings` (the consumer's own
    /// [`forge_backoff`]).
    Github {
        project: ProjectRef,
        settings: GithubSettings,
    },
}

/// How the consumer's calls to GitHub retry: once, briefly, and a rate limit is never
/// waited out (the call fails `throttled`; the next round tries again). The engine's
/// supervision runs on the loop that makes these calls, so none may hold it for long.
pub fn forge_backoff() -> RequestBackoff {
    RequestBackoff {
        max_attempts: 2,
        min_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(2),
        max_rate_limit_wait: Duration::ZERO,
    }
}

impl ForgeConfig {
    /// The forge `run` uses, checked: `--forge github` needs its project and credentials,
    /// and takes no board file.
    pub(super) fn new(
        board: Option<PathBuf>,
        forge: ForgeArgs,
        github: &GithubArgs,
    ) -> Result<ForgeConfig, InvalidSetting> {
        match forge.forge {
            Forge::Embedded => Ok(ForgeConfig::Embedded { board_file: board }),
            Forge::Github => {
                if let Some(file) = board {
                    return Err(InvalidSetting(format!(
                        "--board (KIRO_BOARD_FILE) {} is the embedded board's file: with \
                         --forge github the board is the GitHub project; unset one of them",
                        file.display()
                    )));
                }
                let raw = forge
                    .github_project
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        InvalidSetting(
                            "--forge github needs --github-project or KIRO_GITHUB_PROJECT \
                         (e.g. orgs/acme/7)"
                                .to_owned(),
                        )
                    })?;
                let project = ProjectRef::parse(&raw).map_err(|e| {
                    InvalidSetting(format!("--github-project (KIRO_GITHUB_PROJECT): {e}"))
                })?;
                let mut settings = github
                    .settings()
                    .map_err(|e| InvalidSetting(format!("--forge github: {e}")))?;
                settings.retry = forge_backoff();
                Ok(ForgeConfig::Github { project, settings })
            }
        }
    }

    /// `--board-every` when set, else this forge's default: [`defaults::GITHUB_BOARD_EVERY`]
    /// on GitHub, every poll round (`None`) on the embedded board.
    pub(super) fn board_every(&self, set: Option<Duration>) -> Option<Duration> {
        match self {
            ForgeConfig::Github { .. } => {
                Some(set.unwrap_or_else(|| defaults::duration(defaults::GITHUB_BOARD_EVERY)))
            }
            ForgeConfig::Embedded { .. } => set,
        }
    }
}
