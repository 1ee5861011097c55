//! Test support: a state directory with a buildspec and a `LocalBuildRunner` on it
//! (`Local`, also the build contract suite's harness), the requests the tests send, and
//! small waits and reads. Builds run the real `kiro-local-build` binary.

use async_trait::async_trait;
use kiro_backends::testing::contract::build::{
    self as contract, BuildHarness, BuildScript, ScriptEnd,
};
use kiro_local_build::{LocalBuildConfig, LocalBuildRunner};
use kiro_protocol::{
    BranchName, BuildId, BuildRequest, BuildRunner, Clock, ItemId, PortError, ProjectKey,
    SystemClock,
};
use kiro_statedb::EmbeddedDb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// The `kiro-local-build` binary cargo built for these tests.
pub const LAUNCHER: &str = env!("CARGO_BIN_EXE_kiro-local-build");

/// A state directory with a buildspec and a runner on it.
#[derive(Debug)]
pub struct Local {
    pub dir: TempDir,
    pub runner: Arc<LocalBuildRunner>,
    pub db: EmbeddedDb,
}

impl Local {
    pub fn new(buildspec: &str) -> Self {
        Self::with(buildspec, Arc::new(SystemClock), |_| {})
    }

    pub fn with(
        buildspec: &str,
        clock: Arc<dyn Clock>,
        tweak: impl FnOnce(&mut LocalBuildConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("buildspec.yml");
        std::fs::write(&spec, buildspec).unwrap();
        let mut config = LocalBuildConfig::new(dir.path().join("state"), &spec, LAUNCHER);
        tweak(&mut config);
        let db = EmbeddedDb::open_dir(&config.state_dir).unwrap();
        let runner = Arc::new(LocalBuildRunner::new(db.clone(), clock, config).unwrap());
        Local { dir, runner, db }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A new runner on the same state directory (as a restarted consumer would make).
    pub fn reopen(&self, clock: Arc<dyn Clock>) -> LocalBuildRunner {
        let db = EmbeddedDb::open_dir(&self.state_dir()).unwrap();
        LocalBuildRunner::new(db, clock, self.runner.config().clone()).unwrap()
    }

    pub fn column(&self, id: &BuildId, column: &str) -> Option<i64> {
        let sql = format!("SELECT {column} FROM builds WHERE id = ?1");
        let id = id.as_str().to_owned();
        self.db
            .call_sync(move |c| Ok(c.query_row(&sql, [id], |r| r.get(0))?))
            .unwrap()
    }
}

/// A build request for CALC-1 of project calc with `key`, `env` overrides and `timeout`.
pub fn request(key: &str, env: &[(&str, &str)], timeout: Duration) -> BuildRequest {
    BuildRequest {
        project: ProjectKey::parse("calc").unwrap(),
        item: ItemId::parse("CALC-1").unwrap(),
        idempotency_key: key.into(),
        source_version: BranchName::parse("feature/x").unwrap(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        timeout: Some(timeout),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[async_trait]
impl BuildHarness for Local {
    fn runner(&self) -> Arc<dyn BuildRunner> {
        self.runner.clone()
    }

    fn request(&self, key: &str, script: &BuildScript) -> BuildRequest {
        let mut code: String = script
            .exports
            .iter()
            .map(|(k, v)| format!("export {k}={}; ", shell_quote(v)))
            .collect();
        code.push_str(match script.end {
            ScriptEnd::Succeed => "true",
            ScriptEnd::Fail => "false",
            ScriptEnd::RunUntilStopped => "sleep 600",
        });
        request(key, &[("CONTRACT_SCRIPT", &code)], Duration::from_secs(120))
    }

    async fn builds_started(&self) -> Result<usize, PortError> {
        self.db
            .call(|c| Ok(c.query_row("SELECT COUNT(*) FROM builds", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(|n| usize::try_from(n).unwrap_or(0))
    }
}

/// Wait until the build has finished; its status.
pub async fn wait(h: &Local, id: &BuildId) -> kiro_protocol::BuildStatus {
    contract::wait_finished(h, id).await
}

/// A file's text, or empty when it cannot be read.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
