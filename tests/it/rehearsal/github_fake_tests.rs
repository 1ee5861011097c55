//! The GitHub fake against the real adapters of kiro-github: the board is read (with its
//! assignees) and its statuses change, the sticky report is created once and edited after
//! while every other comment is a new one, check runs need an App installation token, and
//! unknown credentials are refused.

use super::board::{CALC_ASSIGNEE, COVERAGE_ASSIGNEE, PAT, item_id, quickstart_items};
use super::github_fake::{GithubFake, NUMBER, OWNER, item_json};
use crate::support::forge;
use kiro_github::gh::{
    AuthConfig, FieldConfig, GithubBoard, GithubPulls, GithubSettings, OwnerKind, ProjectRef,
    ReportMode,
};
use kiro_protocol::{
    Board, CheckReport, ItemId, ItemStatus, PrNumber, PullRequests, RepoName, Report, Secret,
};

const APP_ID: &str = "424242";
const INSTALLATION: u64 = 77;

fn project() -> ProjectRef {
    ProjectRef {
        owner: OWNER.into(),
        owner_kind: OwnerKind::Org,
        number: NUMBER as u32,
    }
}

fn app_key() -> String {
    std::fs::read_to_string(
        crate::support::repo_root().join("github/tests/fixtures/test-app-key.pem"),
    )
    .unwrap()
}

async fn fake() -> (tempfile::TempDir, GithubFake) {
    let tmp = tempfile::tempdir().unwrap();
    let state = forge(tmp.path());
    let fake = GithubFake::start(
        quickstart_items(),
        state.join("forge"),
        PAT,
        APP_ID,
        INSTALLATION,
    )
    .await;
    (tmp, fake)
}

#[tokio::test]
async fn the_board_reads_ready_items_and_keeps_status_changes() {
    let (_tmp, fake) = fake().await;
    let settings = GithubSettings::with_token(fake.uri(), Secret::new(PAT));
    let board = GithubBoard::new(settings, project(), FieldConfig::default()).unwrap();
    let ready = board.ready_items().await.unwrap();
    assert_eq!(ready.len(), quickstart_items().len(), "{ready:?}");
    assert_eq!(
        ready.len(),
        6,
        "the quick start's five and the one a human moves"
    );
    let calc1 = ready.iter().find(|i| i.id.ends_with("CALC-1")).unwrap();
    assert_eq!(
        (
            calc1.repo.as_str(),
            calc1.branch.as_str(),
            calc1.pr.as_str(),
            calc1.project.as_str(),
            calc1.spec.as_str()
        ),
        (
            "acme/calc",
            "feature/subtract",
            "1",
            "calc",
            ".kiro/specs/subtract"
        )
    );
    assert_eq!(calc1.assignees, [CALC_ASSIGNEE]);
    let greet2 = ready.iter().find(|i| i.id == item_id("GREET-2")).unwrap();
    let logins = greet2.validate().unwrap().assignees;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].as_str(), COVERAGE_ASSIGNEE);
    let greet1 = ready.iter().find(|i| i.id == item_id("GREET-1")).unwrap();
    assert!(greet1.assignees.is_empty());
    board
        .set_status(&calc1.id, ItemStatus::Failed, Some("branch is bad"))
        .await
        .unwrap();
    assert_eq!(board.ready_items().await.unwrap().len(), ready.len() - 1);
    let item = fake.item(&calc1.id);
    assert_eq!(
        (item.status.as_str(), item.note.as_deref()),
        ("Failed", Some("branch is bad"))
    );
    fake.with(|s| assert_eq!(s.status_changes.len(), 1));
    // An unknown item is GitHub's NOT_FOUND, not a silent success.
    let err = board
        .set_status("PVTI_nope", ItemStatus::Done, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PVTI_nope"), "{err}");
}

#[tokio::test]
async fn the_sticky_report_is_created_once_then_edited() {
    let (_tmp, fake) = fake().await;
    let settings = GithubSettings::with_token(fake.uri(), Secret::new(PAT));
    let pulls = GithubPulls::new(settings, ReportMode::Comment).unwrap();
    let repo = RepoName::parse("acme/calc").unwrap();
    let pr = pulls.get(&repo, PrNumber(1)).await.unwrap().unwrap();
    assert_eq!(pr.head_branch, "feature/subtract");
    for text in ["first", "second"] {
        let report = Report {
            item: ItemId::parse("CALC-1").unwrap(),
            markdown: text.into(),
        };
        pulls
            .upsert_report(&repo, PrNumber(1), &report)
            .await
            .unwrap();
    }
    let comments = fake.with(|s| s.comments.clone());
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].body.ends_with("second"));
    assert_eq!(comments[0].edits, 1);
}

/// The fake's item has the keys, at every level, of a pull request item in the fixture
/// kiro-github holds to the real items query (`assignees` included).
#[test]
fn the_fakes_items_answer_has_the_real_querys_shape() {
    fn keys(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let p = format!("{at}.{k}");
                    out.push(p.clone());
                    keys(child, &p, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| keys(c, &format!("{at}[]"), out)),
            _ => {}
        }
    }
    let page: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::support::repo_root().join("github/tests/fixtures/graphql/items-page-1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let real = &page["data"]["owner"]["projectV2"]["items"]["nodes"][0]["content"];
    assert_eq!(real["__typename"], "PullRequest");
    assert!(!real["assignees"]["nodes"].as_array().unwrap().is_empty());
    let items = quickstart_items();
    let calc1 = items.iter().find(|i| i.id == item_id("CALC-1")).unwrap();
    let fake = item_json(calc1);
    let (mut want, mut got) = (Vec::new(), Vec::new());
    keys(real, "content", &mut want);
    keys(&fake["content"], "content", &mut got);
    want.dedup();
    got.dedup();
    assert_eq!(got, want);
    assert_eq!(
        fake["content"]["assignees"],
        serde_json::json!({ "nodes": [{ "login": CALC_ASSIGNEE }] })
    );
}

#[tokio::test]
async fn every_comment_is_new_beside_the_sticky_report() {
    let (_tmp, fake) = fake().await;
    let settings = GithubSettings::with_token(fake.uri(), Secret::new(PAT));
    let pulls = GithubPulls::new(settings, ReportMode::Comment).unwrap();
    let repo = RepoName::parse("acme/greeter").unwrap();
    let say = |markdown: &str| Report {
        item: ItemId::parse("GREET-2").unwrap(),
        markdown: markdown.into(),
    };
    pulls
        .upsert_report(&repo, PrNumber(2), &say("report 1"))
        .await
        .unwrap();
    let mention = format!("@{COVERAGE_ASSIGNEE} GREET-2 failed for good");
    pulls
        .comment(&repo, PrNumber(2), &say(&mention))
        .await
        .unwrap();
    pulls
        .upsert_report(&repo, PrNumber(2), &say("report 2"))
        .await
        .unwrap();
    pulls
        .comment(&repo, PrNumber(2), &say(&mention))
        .await
        .unwrap();
    let bodies = fake.comments_on("acme/greeter", 2);
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert!(
        bodies[0].contains(kiro_github::gh::REPORT_MARKER) && bodies[0].ends_with("report 2"),
        "the report was edited in place, not taken for the comment: {bodies:?}"
    );
    assert_eq!(bodies[1..], [mention.clone(), mention]);
    fake.with(|s| {
        let edits: Vec<u32> = s.comments.iter().map(|c| c.edits).collect();
        assert_eq!(edits, [1, 0, 0], "only the report is edited");
    });
    assert!(fake.comments_on("acme/greeter", 1).is_empty());
}

#[tokio::test]
async fn check_runs_need_an_app_installation_token() {
    let (tmp, fake) = fake().await;
    let repo = RepoName::parse("acme/calc").unwrap();
    let check = CheckReport {
        item: ItemId::parse("CALC-1").unwrap(),
        success: true,
        title: "done".into(),
        summary: "all tasks".into(),
    };
    // A personal access token: the adapter does not even try.
    let pat = GithubPulls::new(
        GithubSettings::with_token(fake.uri(), Secret::new(PAT)),
        ReportMode::Comment,
    )
    .unwrap();
    pat.publish_check(&repo, PrNumber(1), &check).await.unwrap();
    assert!(fake.with(|s| s.check_runs.is_empty()));

    let app = GithubSettings::new(
        fake.uri(),
        AuthConfig::App {
            app_id: APP_ID.into(),
            private_key: Secret::new(app_key()),
            installation_id: INSTALLATION,
        },
    );
    let pulls = GithubPulls::new(app, ReportMode::Comment).unwrap();
    pulls
        .publish_check(&repo, PrNumber(1), &check)
        .await
        .unwrap();
    let runs = fake.with(|s| s.check_runs.clone());
    assert_eq!(runs.len(), 1);
    assert!(runs[0].token.starts_with("ghs_"), "an installation token");
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
    let remote = git2::Repository::open_bare(tmp.path().join("state/forge/acme/calc.git")).unwrap();
    let tip = remote
        .find_reference("refs/heads/feature/subtract")
        .unwrap()
        .target()
        .unwrap()
        .to_string();
    assert_eq!(runs[0].head_sha, tip, "on the pull request's head commit");
    fake.with(|s| assert_eq!(s.token_requests, [INSTALLATION]));

    // A second publish updates the same run.
    pulls
        .publish_check(&repo, PrNumber(1), &check)
        .await
        .unwrap();
    assert_eq!(fake.with(|s| s.check_runs.len()), 1);

    // The PAT cannot write a check run, even when asked directly.
    let refused = reqwest_free_post(&fake.uri(), "/repos/acme/calc/check-runs", PAT).await;
    assert_eq!(refused, 403);
}

#[tokio::test]
async fn unknown_credentials_are_refused() {
    let (_tmp, fake) = fake().await;
    let board = GithubBoard::new(
        GithubSettings::with_token(fake.uri(), Secret::new("ghp_wrong")),
        project(),
        FieldConfig::default(),
    )
    .unwrap();
    let err = board.ready_items().await.unwrap_err();
    assert!(
        err.to_string().contains("401") || err.to_string().to_lowercase().contains("credentials"),
        "{err}"
    );
    assert!(fake.with(|s| s.refused.iter().any(|r| r.contains("Bad credentials"))));
}

/// POST `{}` to `path` with `token`, returning the status (a bare HTTP/1.0 request).
async fn reqwest_free_post(base: &str, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
