//! The local runner's settings ([`LocalBuildConfig`]), its limits, and where builds and
//! the launcher binary are found.
//!
//! Invariant: a build's directory is a function of its id alone, so any runner (and the
//! build process) on the same state directory finds it.

use kiro_protocol::BuildId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a build whose process was never recorded may stay QUEUED before it is
/// declared vanished (covers the moment between recording a build and spawning it).
pub const SPAWN_GRACE: Duration = Duration::from_secs(30);

/// How long a recorded build may wait for its starter to spawn its process; after that,
/// any runner that looks at it launches it (the starter died in between).
pub const LAUNCH_GRACE: Duration = Duration::from_secs(2);

/// The time limit of a build whose request sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How long a killed build's processes get between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Environment variables a build keeps when `inherit_env` is off.
pub(super) const MINIMAL_ENV: [&str; 6] = ["PATH", "HOME", "USER", "LANG", "TMPDIR", "TZ"];

/// Configuration of the local runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBuildConfig {
    /// The state directory; builds live in `<state_dir>/builds/<build dir>/`.
    pub state_dir: PathBuf,
    /// The buildspec every build runs (read when the build starts).
    pub buildspec: PathBuf,
    /// The `kiro-local-build` binary.
    pub launcher: PathBuf,
    /// Extra environment for every build, on top of the inherited one (the buildspec's
    /// `env.variables` and the request's overrides win over it). Passed to the build
    /// process directly, never stored in the database.
    pub base_env: BTreeMap<String, String>,
    /// Whether builds inherit this process's environment, like a local CI runner
    /// (default). When off they get only `PATH`, `HOME`, `USER`, `LANG`, `TMPDIR`, `TZ`.
    pub inherit_env: bool,
}

impl LocalBuildConfig {
    pub fn new(
        state_dir: impl Into<PathBuf>,
        buildspec: impl Into<PathBuf>,
        launcher: impl Into<PathBuf>,
    ) -> Self {
        LocalBuildConfig {
            state_dir: state_dir.into(),
            buildspec: buildspec.into(),
            launcher: launcher.into(),
            base_env: BTreeMap::new(),
            inherit_env: true,
        }
    }
}

/// The file name of the build launcher binary.
pub const LAUNCHER_NAME: &str = "kiro-local-build";

/// Find the `kiro-local-build` binary: next to the running executable (or one level up,
/// for test binaries in `target/<profile>/deps`), else on `PATH`.
pub fn locate_launcher() -> Option<PathBuf> {
    let beside_exe = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?.to_owned();
        [dir.join(LAUNCHER_NAME), dir.parent()?.join(LAUNCHER_NAME)]
            .into_iter()
            .find(|p| p.is_file())
    });
    beside_exe.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(LAUNCHER_NAME))
                .find(|p| p.is_file())
        })
    })
}

/// The directory of build `id` under `state_dir` (`:` becomes `_`).
pub fn build_dir(state_dir: &Path, id: &BuildId) -> PathBuf {
    state_dir
        .join("builds")
        .join(id.as_str().replace([':', '/'], "_"))
}
