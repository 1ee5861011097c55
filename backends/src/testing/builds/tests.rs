use super::*;
use kiro_protocol::{BranchName, ItemId, OutcomeStatus, ProjectKey};
use std::time::Duration;

fn req(key: &str) -> BuildRequest {
    BuildRequest {
        project: ProjectKey::parse("calc").unwrap(),
        item: ItemId::parse("CALC-1").unwrap(),
        idempotency_key: key.into(),
        source_version: BranchName::parse("feature/x").unwrap(),
        env: BTreeMap::new(),
        timeout: Some(Duration::from_secs(60)),
    }
}

#[tokio::test]
async fn builds_finish_at_once_with_a_success_outcome() {
    let r = InMemoryBuilds::new();
    let id = r.start(&req("k1")).await.unwrap();
    let st = r.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, BuildState::Succeeded);
    assert_eq!(
        WorkerOutcome::from_vars(&st[0].exported).status,
        OutcomeStatus::Succeeded
    );
    r.stop(&id).await.unwrap();
    assert!(r.stop(&BuildId::new("nope")).await.is_err());
}

#[tokio::test]
async fn idempotent_on_the_key_and_counts_starts() {
    let r = InMemoryBuilds::new();
    let a = r.start(&req("k1")).await.unwrap();
    let b = r.start(&req("k1")).await.unwrap();
    let c = r.start(&req("k2")).await.unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(r.starts(), 2);
    let st = r
        .status(&[a.clone(), BuildId::new("unknown"), c.clone()])
        .await
        .unwrap();
    let ids: Vec<_> = st.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, vec![a, c]);
}

#[tokio::test]
async fn configurable_state_and_variables() {
    let mut vars = BTreeMap::new();
    vars.insert("X".to_owned(), "1".to_owned());
    let r = InMemoryBuilds::new()
        .with_exported(vars.clone())
        .with_final_state(BuildState::Failed);
    let id = r.start(&req("k")).await.unwrap();
    let st = r.status(&[id]).await.unwrap();
    assert_eq!(st[0].state, BuildState::Failed);
    assert_eq!(st[0].exported, vars);
    assert!(st[0].message.is_some());
    let r = InMemoryBuilds::new().with_final_state(BuildState::InProgress);
    let id = r.start(&req("k")).await.unwrap();
    assert_eq!(
        r.status(&[id]).await.unwrap()[0].state,
        BuildState::Succeeded
    );
}

#[tokio::test]
async fn scripted_builds_run_until_the_test_ends_them() {
    let r = InMemoryBuilds::scripted();
    let id = r.start(&req("k1")).await.unwrap();
    let st = r.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st[0].state, BuildState::InProgress);
    r.succeed("CALC-1");
    let st = r.status(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(st[0].state, BuildState::Succeeded);
    let outcome = WorkerOutcome::from_vars(&st[0].exported);
    assert_eq!(outcome.coverage, Some(SCRIPTED_COVERAGE));
    assert!(st[0].ended_at.is_some());
    // A finished build is not changed by a stop, but the stop is recorded.
    r.stop(&id).await.unwrap();
    assert_eq!(
        r.status(std::slice::from_ref(&id)).await.unwrap()[0].state,
        BuildState::Succeeded
    );
    assert_eq!(r.stopped(), vec![id.clone()]);
    assert_eq!(r.builds_of("CALC-1").len(), 1);
    assert_eq!(r.builds_of("CALC-1")[0].req, req("k1"));
}

#[tokio::test]
async fn a_key_reused_with_other_parameters_is_contention() {
    let r = InMemoryBuilds::scripted();
    r.start(&req("k1")).await.unwrap();
    let mut other = req("k1");
    other.timeout = Some(Duration::from_secs(61));
    let e = r.start(&other).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Contention);
    assert!(e.message.contains("parameter mismatch"), "{e}");
    assert_eq!(r.starts(), 1);
    assert_eq!(r.start_calls(), vec![req("k1"), other]);
}

#[tokio::test]
async fn expiring_keys_start_a_new_build_and_find_names_the_first() {
    let clock = kiro_protocol::ManualClock::default();
    let r = InMemoryBuilds::scripted().with_clock(Arc::new(clock.clone()));
    r.expire_keys_after(Some(Duration::from_secs(300)));
    let a = r.start(&req("k1")).await.unwrap();
    clock.advance(Duration::from_secs(299));
    assert_eq!(r.start(&req("k1")).await.unwrap(), a, "still honoured");
    clock.advance(Duration::from_secs(1));
    let b = r.start(&req("k1")).await.unwrap();
    assert_ne!(a, b, "forgotten after its lifetime");
    assert_eq!(r.find("k1", Timestamp(0)).await.unwrap(), Some(a));
    r.hide_from_find(true);
    assert_eq!(r.find("k1", Timestamp(0)).await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_start_is_recorded_and_starts_nothing() {
    let r = InMemoryBuilds::scripted();
    r.fail_starts(Some(PortError::transient("connection reset")));
    assert!(r.start(&req("k1")).await.is_err());
    r.fail_starts(None);
    r.start(&req("k1")).await.unwrap();
    assert_eq!((r.start_calls().len(), r.starts()), (2, 1));
}

#[tokio::test]
async fn a_running_build_ends_as_its_task_says_or_fault_when_it_panics() {
    let r = InMemoryBuilds::running(|req, _id| {
        let fail = req.idempotency_key == "boom";
        Box::pin(async move {
            assert!(!fail, "the task panics");
            Finished {
                state: BuildState::Failed,
                exported: BTreeMap::from([("X".to_owned(), "1".to_owned())]),
                message: Some("red".into()),
            }
        })
    });
    let ok = r.start(&req("k1")).await.unwrap();
    let boom = r.start(&req("boom")).await.unwrap();
    let mut done = Vec::new();
    for _ in 0..100 {
        done = r.status(&[ok.clone(), boom.clone()]).await.unwrap();
        if done.iter().all(|s| s.state.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(done[0].state, BuildState::Failed);
    assert_eq!(done[0].message.as_deref(), Some("red"));
    assert_eq!(done[0].exported["X"], "1");
    assert_eq!(done[1].state, BuildState::Fault);
    assert!(done[1].message.as_deref().unwrap().contains("panicked"));
}

#[tokio::test]
async fn stopping_a_running_build_aborts_its_task() {
    let r = InMemoryBuilds::running(|_, _| Box::pin(std::future::pending()));
    let id = r.start(&req("k1")).await.unwrap();
    r.stop(&id).await.unwrap();
    let st = r.status(&[id]).await.unwrap();
    assert_eq!(st[0].state, BuildState::Stopped);
}
