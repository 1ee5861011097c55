//! `GithubBoard` against fake GraphQL: pagination, raw items, partial errors, rate limits,
//! the status mutation and the id cache.

use crate::support::{TOKEN, bodies, fixture, fixture_text, settings};
use kiro_github::gh::{FieldConfig, GithubBoard, OwnerKind, ProjectRef};
use kiro_protocol::{Board, BoardItem, FailureClass, ItemStatus, ManualClock};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{body_partial_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn org() -> ProjectRef {
    ProjectRef {
        owner: "acme".into(),
        owner_kind: OwnerKind::Org,
        number: 7,
    }
}

fn board(server: &MockServer, clock: &ManualClock) -> GithubBoard {
    GithubBoard::new(settings(server, clock), org(), FieldConfig::default()).unwrap()
}

async fn mount_page(server: &MockServer, cursor: Option<&str>, fixture_name: &str) {
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("items(first: 100, after: $cursor)"))
        .and(body_partial_json(
            json!({ "variables": { "owner": "acme", "number": 7, "cursor": cursor } }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(fixture_name)))
        .expect(1)
        .mount(server)
        .await;
}

fn by_id<'a>(items: &'a [BoardItem], suffix: &str) -> &'a BoardItem {
    items.iter().find(|i| i.id.ends_with(suffix)).unwrap()
}

#[tokio::test]
async fn every_page_is_read_and_ready_items_come_back_raw() {
    let server = MockServer::start().await;
    mount_page(&server, None, "graphql/items-page-1.json").await;
    mount_page(
        &server,
        Some("Y3Vyc29yOnYyOpPOAAAAAw=="),
        "graphql/items-page-2.json",
    )
    .await;
    mount_page(
        &server,
        Some("Y3Vyc29yOnYyOpPOAAAABg=="),
        "graphql/items-page-3.json",
    )
    .await;
    let clock = ManualClock::default();
    let report = board(&server, &clock).ready_items_report().await.unwrap();
    assert_eq!(report.pages, 3);
    assert_eq!(report.scanned, 8);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let ids: Vec<&str> = report
        .items
        .iter()
        .map(|i| &i.id[i.id.len() - 4..])
        .collect();
    // Backlog (0002), archived (0006) and done (0008) items are not ready.
    assert_eq!(ids, ["0001", "0003", "0004", "0005", "0007"]);

    // A pull request item: everything from the PR; spec derived from `feature/<name>`.
    let pr = by_id(&report.items, "0001");
    assert_eq!(
        (
            pr.repo.as_str(),
            pr.branch.as_str(),
            pr.pr.as_str(),
            pr.spec.as_str(),
            pr.project.as_str()
        ),
        (
            "acme/calc",
            "feature/subtract",
            "12",
            ".kiro/specs/subtract",
            "calc"
        )
    );
    assert_eq!(pr.updated_at, "2026-11-20T10:00:00Z");
    assert_eq!(pr.title, "Add subtraction");
    let w = pr.validate().unwrap();
    assert_eq!(w.spec.as_str(), ".kiro/specs/subtract");
    // The assignees of the item's content, as logins.
    assert_eq!(pr.assignees, ["octo-cat"]);
    assert_eq!(w.assignees[0].as_str(), "octo-cat");

    // An issue: its first OPEN closing pull request (the closed one is skipped).
    let issue = by_id(&report.items, "0003");
    assert_eq!(
        (issue.pr.as_str(), issue.branch.as_str()),
        ("42", "feature/multiply")
    );
    assert_eq!(
        issue.assignees,
        ["octo-cat", "mona-lisa"],
        "in GitHub's order"
    );
    assert_eq!(issue.validate().unwrap().assignees.len(), 2);

    // Spec and project from the text fields win over the derived values.
    let fielded = by_id(&report.items, "0004");
    assert_eq!(
        (fielded.spec.as_str(), fielded.project.as_str()),
        (".kiro/specs/division", "calc-core")
    );
    assert!(fielded.assignees.is_empty(), "nobody assigned");

    // A draft issue comes back with empty fields; validation names the repository.
    let draft = by_id(&report.items, "0005");
    assert_eq!(
        (
            draft.repo.as_str(),
            draft.pr.as_str(),
            draft.project.as_str()
        ),
        ("", "", "acme-7")
    );
    assert_eq!(draft.validate().unwrap_err().error.field, "repo");
    assert_eq!(draft.assignees, ["hubot"], "a draft's assignees too");

    // A hostile spec field comes back raw and validation rejects it, naming the field.
    let hostile = by_id(&report.items, "0007");
    assert_eq!(hostile.spec, "../../etc/passwd");
    let err = hostile.validate().unwrap_err();
    assert_eq!(err.error.field, "spec");
    assert!(
        err.to_string().contains("PVTI_lADOBk1Wus4AbCdEzgPq0007"),
        "{err}"
    );

    // Every request carried the token as a bearer header and asked the organization.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(
            r.headers.get("authorization").unwrap().to_str().unwrap(),
            format!("Bearer {TOKEN}")
        );
        assert!(String::from_utf8_lossy(&r.body).contains("organization(login: $owner)"));
    }
}

#[tokio::test]
async fn partial_errors_keep_the_data_and_are_reported() {
    let server = MockServer::start().await;
    mount_page(&server, None, "graphql/items-partial-errors.json").await;
    let clock = ManualClock::default();
    let b = board(&server, &clock);
    let report = b.ready_items_report().await.unwrap();
    assert_eq!(
        report.items.len(),
        2,
        "the null node is skipped, the item with hidden content kept"
    );
    assert_eq!(report.items[0].validate().unwrap().pr.0, 21);
    // The item whose content is not visible comes back empty; validation says why.
    assert_eq!(report.items[1].repo, "");
    assert!(
        report.items[1].assignees.is_empty(),
        "hidden content, no assignees"
    );
    assert_eq!(report.items[0].assignees, ["mona-lisa"]);
    assert_eq!(report.items[1].validate().unwrap_err().error.field, "repo");
    assert_eq!(report.warnings.len(), 2);
    assert!(
        report.warnings[0].contains("owner.projectV2.items.nodes.1.content"),
        "{:?}",
        report.warnings
    );
    assert!(report.warnings[0].contains("Resource not accessible by integration (FORBIDDEN)"));
}

#[tokio::test]
async fn a_missing_project_is_a_permanent_error_and_user_projects_ask_the_user() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("user(login: $owner)"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("graphql/owner-not-found.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let p = ProjectRef::parse("users/nope/3").unwrap();
    let b = GithubBoard::new(settings(&server, &clock), p, FieldConfig::default()).unwrap();
    let err = b.ready_items().await.unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert!(err.message.contains("users/nope/3"), "{err}");
    assert!(
        err.message.contains("Could not resolve to an Organization"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_secondary_rate_limit_is_waited_out_then_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "30")
                .insert_header("x-ratelimit-remaining", "4990")
                .set_body_string(fixture_text("rest/secondary-rate-limit.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_page(&server, None, "graphql/items-page-3.json").await;
    let clock = ManualClock::default();
    let start = tokio::time::Instant::now();
    let items = board(&server, &clock).ready_items().await.unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(30), "waited {waited:?}");
    assert!(waited < Duration::from_secs(60), "waited {waited:?}");
    assert_eq!(items.len(), 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn graphql_rate_limited_waits_until_the_reset() {
    let server = MockServer::start().await;
    let clock = ManualClock::default();
    let reset = clock_now_secs(&clock) + 120;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string())
                .set_body_json(fixture("graphql/rate-limited.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_page(&server, None, "graphql/items-page-3.json").await;
    let start = tokio::time::Instant::now();
    let items = board(&server, &clock).ready_items().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(120),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(items.len(), 1);
}

fn clock_now_secs(clock: &ManualClock) -> i64 {
    use kiro_protocol::Clock;
    clock.now().as_secs()
}

#[tokio::test(start_paused = true)]
async fn a_wait_beyond_the_limit_fails_as_throttled_without_waiting() {
    let server = MockServer::start().await;
    let clock = ManualClock::default();
    let reset = clock_now_secs(&clock) + 3600;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string())
                .set_body_json(json!({"message": "API rate limit exceeded for user ID 1."})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let start = tokio::time::Instant::now();
    let err = board(&server, &clock).ready_items().await.unwrap_err();
    assert_eq!(err.class, FailureClass::Throttled);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_backoff_then_give_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad gateway"))
        .expect(5)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let start = tokio::time::Instant::now();
    let err = board(&server, &clock).ready_items().await.unwrap_err();
    assert_eq!(err.class, FailureClass::Transient);
    // 1 + 2 + 4 + 8 seconds of back-off between the five attempts.
    assert!(
        start.elapsed() >= Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

async fn mount_fields(server: &MockServer, fields: serde_json::Value) {
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("fields(first: 100)"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fields))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn status_changes_use_cached_ids_and_write_the_note() {
    let server = MockServer::start().await;
    mount_fields(&server, fixture("graphql/fields.json")).await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("updateProjectV2ItemFieldValue"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("graphql/set-status-and-note.json")),
        )
        .expect(3)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let b = board(&server, &clock);
    let item = "PVTI_lADOBk1Wus4AbCdEzgPq0001";
    b.set_status(item, ItemStatus::Queued, None).await.unwrap();
    b.set_status(item, ItemStatus::InProgress, None)
        .await
        .unwrap();
    b.set_status(
        item,
        ItemStatus::Failed,
        Some("spec missing\nsee log; token ghp_abcdefghijklmnop1234"),
    )
    .await
    .unwrap();

    let all = bodies(&server, "POST", "/graphql").await;
    let lookups = all
        .iter()
        .filter(|b| b["query"].as_str().unwrap().contains("fields(first: 100)"))
        .count();
    assert_eq!(lookups, 1, "field and option ids are looked up once");
    let mutations: Vec<_> = all
        .iter()
        .filter(|b| {
            b["query"]
                .as_str()
                .unwrap()
                .contains("updateProjectV2ItemFieldValue")
        })
        .collect();
    assert_eq!(mutations.len(), 3);
    let v = &mutations[0]["variables"];
    assert_eq!(v["project"], "PVT_kwDOBk1Wus4AbCdE");
    assert_eq!(v["item"], item);
    assert_eq!(v["field"], "PVTSSF_lADOBk1Wus4AbCdEzgStat");
    assert_eq!(v["option"], "47fc9ee4");
    assert!(v.get("note").is_none());
    assert_eq!(mutations[1]["variables"]["option"], "98236657");
    let v = &mutations[2]["variables"];
    assert_eq!(v["option"], "5e6f7a8b");
    assert_eq!(v["noteField"], "PVTF_lADOBk1Wus4AbCdEzgNote");
    assert_eq!(v["note"], "spec missing see log; token [REDACTED]");
    assert!(
        mutations[2]["query"]
            .as_str()
            .unwrap()
            .contains("value: {text: $note}")
    );
}

#[tokio::test]
async fn without_a_note_field_the_note_is_only_logged_and_unknown_options_fail() {
    let server = MockServer::start().await;
    let mut fields = fixture("graphql/fields.json");
    let nodes = fields
        .pointer_mut("/data/owner/projectV2/fields/nodes")
        .unwrap()
        .as_array_mut()
        .unwrap();
    nodes.retain(|n| n["name"] != "Kiro note");
    mount_fields(&server, fields).await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("updateProjectV2ItemFieldValue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("graphql/set-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let cfg = FieldConfig::default().with_status_name(ItemStatus::Done, "Shipped");
    let b = GithubBoard::new(settings(&server, &clock), org(), cfg).unwrap();
    b.set_status("PVTI_x", ItemStatus::Failed, Some("bad spec"))
        .await
        .unwrap();
    let m = bodies(&server, "POST", "/graphql").await;
    let last = m.last().unwrap();
    assert!(last["variables"].get("note").is_none());
    assert!(!last["query"].as_str().unwrap().contains("note:"));

    let err = b
        .set_status("PVTI_x", ItemStatus::Done, None)
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert!(err.message.contains("\"Shipped\""), "{err}");
    assert!(err.message.contains("For Implementation"), "{err}");
}

#[tokio::test]
async fn a_failed_mutation_is_an_error() {
    let server = MockServer::start().await;
    mount_fields(&server, fixture("graphql/fields.json")).await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("updateProjectV2ItemFieldValue"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"status": null},
            "errors": [{"type": "NOT_FOUND", "path": ["status"], "message": "Could not resolve to a node with the global id of 'PVTI_gone'"}]
        })))
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let err = board(&server, &clock)
        .set_status("PVTI_gone", ItemStatus::Queued, None)
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::PermanentInput);
    assert!(err.message.contains("PVTI_gone"), "{err}");
}

/// Where items stand: ONE `nodes(ids: …)` query for all of them, each id answered
/// (an unresolvable node or an archived item is absent; an unmapped option or no status
/// is "on the board, in no status of ours").
#[tokio::test]
async fn statuses_are_one_nodes_query_and_every_id_is_answered() {
    use kiro_protocol::BoardStanding;
    let server = MockServer::start().await;
    let ids: Vec<String> = ["0001", "0002", "0003", "0004", "0999"]
        .iter()
        .map(|s| format!("PVTI_lADOBk1Wus4AbCdEzgPq{s}"))
        .collect();
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("nodes(ids: $ids)"))
        .and(body_partial_json(
            json!({ "variables": { "ids": ids, "field": "Status" } }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("graphql/statuses.json")))
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let got = board(&server, &clock).statuses(&ids).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[&ids[0]],
        BoardStanding::On(Some(ItemStatus::InProgress))
    );
    assert_eq!(
        got[&ids[1]],
        BoardStanding::Away("Backlog".into()),
        "Backlog is not ours, and named"
    );
    assert_eq!(got[&ids[2]], BoardStanding::Absent, "archived");
    assert_eq!(got[&ids[3]], BoardStanding::On(None), "no status");
    assert_eq!(got[&ids[4]], BoardStanding::Absent, "not found");
}

/// The worker's compare-then-set: an item a human moved away is left where it is (no
/// mutation is sent); one still where expected is moved.
#[tokio::test]
async fn set_status_from_leaves_an_item_moved_elsewhere_alone() {
    use kiro_protocol::{BoardStanding, StatusChange};
    let server = MockServer::start().await;
    for (id, answer) in [
        ("0001", "graphql/statuses-one-in-progress.json"),
        ("0002", "graphql/statuses-one-backlog.json"),
    ] {
        Mock::given(method("POST"))
            .and(path("/graphql"))
            .and(body_string_contains("nodes(ids: $ids)"))
            .and(body_partial_json(
                json!({ "variables": { "ids": [format!("PVTI_lADOBk1Wus4AbCdEzgPq{id}")] } }),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(answer)))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("fields(first: 100)"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("graphql/fields.json")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(body_string_contains("updateProjectV2ItemFieldValue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("graphql/set-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let b = board(&server, &clock);
    let moved_away = b
        .set_status_from(
            "PVTI_lADOBk1Wus4AbCdEzgPq0002",
            ItemStatus::Done.moved_from(),
            ItemStatus::Done,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        moved_away,
        StatusChange::Elsewhere(BoardStanding::Away("Backlog".into()))
    );
    let moved = b
        .set_status_from(
            "PVTI_lADOBk1Wus4AbCdEzgPq0001",
            ItemStatus::Done.moved_from(),
            ItemStatus::Done,
            None,
        )
        .await
        .unwrap();
    assert_eq!(moved, StatusChange::Moved);
}
