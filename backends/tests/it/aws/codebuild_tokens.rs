//! CodeBuild's idempotency tokens as the runner must live with them (the in-memory
//! CodeBuild of `fake_codebuild`): the same token with other parameters is refused and
//! never becomes a second build, a token is forgotten after 5 minutes and the build is
//! then found by the key it carries, the concurrent build limit is `throttled`, and an
//! unset time limit leaves the project's own.

use super::codebuild::{Harness, request, runner};
use super::fake_codebuild::{Shared, http};
use aws_sdk_codebuild::Client;
use aws_smithy_mocks::mock;
use kiro_protocol::{BuildRunner, FailureClass, Timestamp};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn the_same_token_with_other_parameters_is_refused_never_a_second_build() {
    let h = Harness::new();
    let req = request("calc-CALC-1-0");
    h.runner.start(&req).await.unwrap();
    // The build is not listed yet (an eventually consistent list).
    h.state.lock().unwrap().unlisted = 1;
    let mut other = req.clone();
    other.env.insert("KIRO_FENCE".into(), "8".into());
    other.env.insert(
        "TRACEPARENT".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    let e = h.runner.start(&other).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Contention, "{e}");
    assert!(e.message.contains("InvalidInputException"), "{e}");
    assert!(e.message.contains("no second build"), "{e}");
    let st = h.state.lock().unwrap();
    assert_eq!((st.starts, st.mismatches), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_refused_repeat_names_the_first_build_once_it_is_listed() {
    let h = Harness::new();
    let req = request("calc-CALC-1-0");
    let a = h.runner.start(&req).await.unwrap();
    let mut other = req.clone();
    other.timeout = None;
    let b = h.runner.start(&other).await.unwrap();
    assert_eq!(a, b);
    let st = h.state.lock().unwrap();
    assert_eq!((st.starts, st.mismatches), (1, 1));
    assert!(st.list_calls >= 1);
}

#[tokio::test(start_paused = true)]
async fn an_identical_repeat_within_five_minutes_is_the_same_build() {
    let h = Harness::new();
    let req = request("calc-CALC-1-0");
    let a = h.runner.start(&req).await.unwrap();
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(h.runner.start(&req).await.unwrap(), a);
    let st = h.state.lock().unwrap();
    assert_eq!((st.starts, st.mismatches, st.list_calls), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn after_five_minutes_the_build_is_found_by_its_key() {
    let h = Harness::new();
    let a = h.runner.start(&request("calc-CALC-1-0")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(301)).await;
    let found = h.runner.find("calc-CALC-1-0", Timestamp(0)).await.unwrap();
    assert_eq!(found, Some(a));
    assert_eq!(
        h.runner.find("calc-CALC-1-1", Timestamp(0)).await.unwrap(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn find_pages_newest_first_and_stops_before_the_intent() {
    let h = Harness::new();
    let first = h.runner.start(&request("k-0")).await.unwrap();
    for n in 1..150 {
        h.runner.start(&request(&format!("k-{n}"))).await.unwrap();
    }
    // The oldest build is on the second page.
    assert_eq!(
        h.runner.find("k-0", Timestamp(0)).await.unwrap(),
        Some(first)
    );
    assert_eq!(h.state.lock().unwrap().list_calls, 2);
    // An intent recorded long after every build: the first page already reaches builds
    // started before it, so the search stops there.
    h.state.lock().unwrap().list_calls = 0;
    let late = Timestamp(150_000 + 11 * 60 * 1000);
    assert_eq!(h.runner.find("k-0", late).await.unwrap(), None);
    assert_eq!(h.state.lock().unwrap().list_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn the_concurrent_build_limit_is_throttled_and_starts_nothing() {
    let state = Shared::default();
    let limit = mock!(Client::start_build).then_http_response(|| {
        http(
            400,
            r#"{"__type":"AccountLimitExceededException","message":"Cannot have more than 10 active builds for the account"}"#,
        )
    });
    let r = runner(&state, std::slice::from_ref(&limit));
    let e = r.start(&request("calc-CALC-1-0")).await.unwrap_err();
    assert_eq!(e.class, FailureClass::Throttled, "{e}");
    assert!(e.message.contains("AccountLimitExceededException"), "{e}");
    assert_eq!(
        limit.num_calls(),
        5,
        "retried with backoff, then classified"
    );
    assert_eq!(state.lock().unwrap().starts, 0);
}

#[tokio::test(start_paused = true)]
async fn no_time_limit_sends_no_override_and_the_project_timeout_applies() {
    let h = Harness::new();
    let mut req = request("calc-CALC-1-0");
    req.timeout = None;
    h.runner.start(&req).await.unwrap();
    let st = h.state.lock().unwrap();
    assert_eq!(st.start_inputs[0].timeout_in_minutes_override(), None);
}
