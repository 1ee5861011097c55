//! The in-memory build runner of the tests (`kiro_backends::testing::InMemoryBuilds`)
//! keeps the build contract like the real runners, so what the engine's tests learn
//! from it holds for them.

use async_trait::async_trait;
use kiro_backends::testing::contract::build::{BuildHarness, BuildScript, ScriptEnd};
use kiro_backends::testing::{Ending, Finished, InMemoryBuilds};
use kiro_protocol::{
    BranchName, BuildRequest, BuildRunner, BuildState, ItemId, PortError, ProjectKey,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The request's environment says how its build ends: `END` (`succeed`, `fail` or
/// `run`) and `EXPORT_<name>` for each variable it exports.
fn ending(req: &BuildRequest) -> Ending {
    let exported = req
        .env
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("EXPORT_")?.to_owned(), v.clone())))
        .collect();
    let state = match req.env.get("END").map(String::as_str) {
        Some("succeed") => BuildState::Succeeded,
        Some("fail") => BuildState::Failed,
        _ => return Ending::WhenFinished,
    };
    Ending::AtOnce(Finished {
        state,
        exported,
        message: None,
    })
}

#[derive(Debug)]
struct InMemory {
    runner: Arc<InMemoryBuilds>,
}

impl InMemory {
    fn new() -> Self {
        InMemory {
            runner: Arc::new(InMemoryBuilds::with_script(|req, _| ending(req))),
        }
    }
}

#[async_trait]
impl BuildHarness for InMemory {
    fn runner(&self) -> Arc<dyn BuildRunner> {
        self.runner.clone()
    }

    fn request(&self, key: &str, script: &BuildScript) -> BuildRequest {
        let mut env: BTreeMap<String, String> = script
            .exports
            .iter()
            .map(|(k, v)| (format!("EXPORT_{k}"), v.clone()))
            .collect();
        let end = match script.end {
            ScriptEnd::Succeed => "succeed",
            ScriptEnd::Fail => "fail",
            ScriptEnd::RunUntilStopped => "run",
        };
        env.insert("END".to_owned(), end.to_owned());
        BuildRequest {
            project: ProjectKey::parse("calc").unwrap(),
            item: ItemId::parse("CALC-1").unwrap(),
            idempotency_key: key.to_owned(),
            source_version: BranchName::parse("feature/x").unwrap(),
            env,
            timeout: Some(Duration::from_secs(60)),
        }
    }

    async fn builds_started(&self) -> Result<usize, PortError> {
        Ok(self.runner.starts())
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(1)
    }
}

kiro_backends::build_contract!(InMemory::new());
