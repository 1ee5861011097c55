//! `GithubPulls` against fake REST: lookup, the sticky comment, new comments that mention,
//! the body section, check runs.

use crate::support::{app_settings, bodies, fixture, settings};
use kiro_github::gh::{GithubPulls, REPORT_MARKER, ReportMode};
use kiro_protocol::{
    CheckReport, FailureClass, ItemId, ManualClock, PrNumber, PullRequests, RepoName, Report,
};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn repo() -> RepoName {
    RepoName::parse("acme/calc").unwrap()
}

fn report(markdown: &str) -> Report {
    Report {
        item: ItemId::parse("PVTI_lADOBk1Wus4AbCdEzgPq0001").unwrap(),
        markdown: markdown.into(),
    }
}

async fn mount_pull(server: &MockServer, pull: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path("/repos/acme/calc/pulls/12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pull))
        .mount(server)
        .await;
}

#[tokio::test]
async fn get_reads_head_state_and_url_and_404_is_none() {
    let server = MockServer::start().await;
    mount_pull(&server, fixture("rest/pull-12.json")).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/calc/pulls/99"))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("rest/not-found.json")))
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let pulls = GithubPulls::new(settings(&server, &clock), ReportMode::Comment).unwrap();
    let pr = pulls.get(&repo(), PrNumber(12)).await.unwrap().unwrap();
    assert_eq!(pr.head_branch, "feature/subtract");
    assert!(pr.open);
    assert_eq!(pr.url, "https://github.com/acme/calc/pull/12");
    assert_eq!(pr.number, PrNumber(12));
    assert!(pulls.get(&repo(), PrNumber(99)).await.unwrap().is_none());
}

/// Comment pages: page 1 links to page 2 (which holds `extra`, if any).
async fn mount_comments(server: &MockServer, extra: Option<serde_json::Value>) {
    let next = format!(
        "<{}/repos/acme/calc/issues/12/comments?per_page=100&page=2>; rel=\"next\"",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/repos/acme/calc/issues/12/comments"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json({
            let mut page = fixture("rest/comments-page-2.json");
            if let Some(c) = extra {
                page.as_array_mut().unwrap().push(c);
            }
            page
        }))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/calc/issues/12/comments"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", next.as_str())
                .set_body_json(fixture("rest/comments-page-1.json")),
        )
        .with_priority(2)
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_report_comment_is_created_once_then_edited_in_place() {
    let server = MockServer::start().await;
    mount_comments(&server, None).await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/calc/issues/12/comments"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("rest/comment-created.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let pulls = GithubPulls::new(settings(&server, &clock), ReportMode::Comment).unwrap();
    pulls
        .upsert_report(
            &repo(),
            PrNumber(12),
            &report("first run, key ksk_abcdefgh12345678"),
        )
        .await
        .unwrap();
    let created = bodies(&server, "POST", "/repos/acme/calc/issues/12/comments").await;
    let body = created[0]["body"].as_str().unwrap();
    assert!(body.starts_with(REPORT_MARKER));
    assert!(body.contains("first run, key [REDACTED]"), "{body}");
    // Both comment pages were read before deciding to create.
    let listed = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(listed, 2);

    // Second run: the marked comment (id 2001) now exists on page 2 and is patched.
    server.reset().await;
    let mut existing = fixture("rest/comment-created.json");
    existing["body"] = json!(body);
    mount_comments(&server, Some(existing)).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/calc/issues/comments/2001"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("rest/comment-created.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/calc/issues/12/comments"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    pulls
        .upsert_report(&repo(), PrNumber(12), &report("second run"))
        .await
        .unwrap();
    let patched = bodies(&server, "PATCH", "/repos/acme/calc/issues/comments/2001").await;
    assert_eq!(patched.len(), 1);
    assert_eq!(patched[0]["body"], format!("{REPORT_MARKER}\nsecond run"));

    // Third run with the same text: nothing is written.
    server.reset().await;
    let mut same = fixture("rest/comment-created.json");
    same["body"] = json!(format!("{REPORT_MARKER}\nsecond run"));
    mount_comments(&server, Some(same)).await;
    pulls
        .upsert_report(&repo(), PrNumber(12), &report("second run"))
        .await
        .unwrap();
    let writes = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() != "GET")
        .count();
    assert_eq!(writes, 0);
}

#[tokio::test]
async fn every_comment_is_a_new_post_redacted_and_never_marked_as_the_report() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/calc/issues/12/comments"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("rest/comment-mention-created.json")),
        )
        .expect(2)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    // The report mode does not matter: a comment is never the report.
    let pulls = GithubPulls::new(settings(&server, &clock), ReportMode::BodySection).unwrap();
    let text =
        format!("{REPORT_MARKER}\n@octo-cat the item failed for good (key ksk_abcdefgh12345678)");
    pulls
        .comment(&repo(), PrNumber(12), &report(&text))
        .await
        .unwrap();
    pulls
        .comment(&repo(), PrNumber(12), &report(&text))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let calls: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "POST".to_owned(),
                "/repos/acme/calc/issues/12/comments".to_owned()
            );
            2
        ],
        "two calls, two new comments: nothing listed, nothing edited"
    );
    for body in bodies(&server, "POST", "/repos/acme/calc/issues/12/comments").await {
        assert_eq!(
            body,
            json!({"body": "\n@octo-cat the item failed for good (key [REDACTED])"}),
            "only the body, redacted, without the report's marker"
        );
    }
}

#[tokio::test]
async fn a_comment_on_a_missing_pull_request_names_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/calc/issues/99/comments"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(fixture("rest/not-found-issue-comments.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let pulls = GithubPulls::new(settings(&server, &clock), ReportMode::Comment).unwrap();
    let err = pulls
        .comment(&repo(), PrNumber(99), &report("@octo-cat failed"))
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert!(
        err.message.contains("acme/calc#99") && err.message.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn body_section_mode_replaces_only_the_marked_section() {
    let server = MockServer::start().await;
    mount_pull(&server, fixture("rest/pull-12.json")).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/calc/pulls/12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("rest/pull-12.json")))
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let pulls = GithubPulls::new(settings(&server, &clock), ReportMode::BodySection).unwrap();
    pulls
        .upsert_report(&repo(), PrNumber(12), &report("run one"))
        .await
        .unwrap();
    let first = bodies(&server, "PATCH", "/repos/acme/calc/pulls/12").await;
    let body1 = first[0]["body"].as_str().unwrap().to_owned();
    assert!(
        body1.starts_with("Implements the subtraction spec."),
        "{body1}"
    );
    assert!(body1.contains("<!-- kiro-codebuild-worker:report:start -->\nrun one\n<!-- kiro-codebuild-worker:report:end -->"));

    // The PR body now holds the section (plus a human's later edit below it).
    server.reset().await;
    let mut pull = fixture("rest/pull-12.json");
    pull["body"] = json!(format!("{body1}\n\nHuman footer"));
    mount_pull(&server, pull).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/calc/pulls/12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("rest/pull-12.json")))
        .expect(1)
        .mount(&server)
        .await;
    pulls
        .upsert_report(&repo(), PrNumber(12), &report("run two"))
        .await
        .unwrap();
    let second = bodies(&server, "PATCH", "/repos/acme/calc/pulls/12").await;
    let body2 = second[0]["body"].as_str().unwrap();
    assert_eq!(body2.matches("report:start").count(), 1);
    assert!(body2.contains("\nrun two\n"));
    assert!(!body2.contains("run one"));
    assert!(body2.ends_with("Human footer"));
    assert!(body2.starts_with("Implements the subtraction spec."));
}

async fn mount_token_exchange(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/app/installations/4242/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("rest/access-token.json")))
        .mount(server)
        .await;
}

fn check(success: bool) -> CheckReport {
    CheckReport {
        item: ItemId::parse("PVTI_lADOBk1Wus4AbCdEzgPq0001").unwrap(),
        success,
        title: "2 of 3 tasks done".into(),
        summary: "summary with ghp_abcdefghijklmnop1234".into(),
    }
}

#[tokio::test]
async fn check_runs_are_created_then_updated_with_app_credentials() {
    let server = MockServer::start().await;
    mount_token_exchange(&server).await;
    mount_pull(&server, fixture("rest/pull-12.json")).await;
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let list_path = format!("/repos/acme/calc/commits/{sha}/check-runs");
    Mock::given(method("GET"))
        .and(path(list_path.as_str()))
        .and(query_param("check_name", "kiro-codebuild-worker"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("rest/check-runs-none.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(list_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("rest/check-runs-one.json")))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/calc/check-runs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("rest/check-run-4001.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/calc/check-runs/4001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("rest/check-run-4001.json")))
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let pulls = GithubPulls::new(app_settings(&server, &clock), ReportMode::Comment).unwrap();
    pulls
        .publish_check(&repo(), PrNumber(12), &check(false))
        .await
        .unwrap();
    pulls
        .publish_check(&repo(), PrNumber(12), &check(true))
        .await
        .unwrap();

    let created = bodies(&server, "POST", "/repos/acme/calc/check-runs").await;
    assert_eq!(created[0]["name"], "kiro-codebuild-worker");
    assert_eq!(created[0]["head_sha"], sha);
    assert_eq!(created[0]["status"], "completed");
    assert_eq!(created[0]["conclusion"], "failure");
    assert_eq!(created[0]["output"]["title"], "2 of 3 tasks done");
    assert_eq!(created[0]["output"]["summary"], "summary with [REDACTED]");
    let updated = bodies(&server, "PATCH", "/repos/acme/calc/check-runs/4001").await;
    assert_eq!(updated[0]["conclusion"], "success");
    // Both runs used the installation token, minted once.
    let exchanges = bodies(&server, "POST", "/app/installations/4242/access_tokens").await;
    assert_eq!(exchanges.len(), 1);
    for r in server.received_requests().await.unwrap() {
        if r.url.path().starts_with("/repos/") {
            assert_eq!(
                r.headers.get("authorization").unwrap().to_str().unwrap(),
                "Bearer ghs_16C7e42F292c6912E7710c838347Ae178B4a"
            );
        }
    }
}

#[tokio::test]
async fn without_app_credentials_no_check_run_is_written() {
    let server = MockServer::start().await;
    let clock = ManualClock::default();
    let pulls = GithubPulls::new(settings(&server, &clock), ReportMode::Comment).unwrap();
    pulls
        .publish_check(&repo(), PrNumber(12), &check(true))
        .await
        .unwrap();
    assert!(server.received_requests().await.unwrap().is_empty());
}
