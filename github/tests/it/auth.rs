//! Credentials: App installation-token exchange and caching, and tokens never leaking into
//! errors or Debug output; the TLS provider decision.

use crate::support::{APP_ID, TOKEN, app_settings, fixture, fixture_text, settings};
use kiro_github::gh::{
    FieldConfig, GithubBoard, GithubClient, GithubPulls, ProjectRef, ReportMode, installation_token,
};
use kiro_protocol::{Board, Clock, FailureClass, ManualClock, PrNumber, PullRequests, RepoName};
use octocrab::jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INSTALLATION_TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

async fn mount_exchange(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/app/installations/4242/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("rest/access-token.json")))
        .mount(server)
        .await;
}

fn jwt_claims(authorization: &str) -> Value {
    let jwt = authorization
        .strip_prefix("Bearer ")
        .expect("a Bearer header");
    let key = DecodingKey::from_rsa_pem(fixture_text("test-app-key.pub.pem").as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    decode::<Value>(jwt, &key, &v)
        .expect("a JWT signed with the App's key")
        .claims
}

#[tokio::test]
async fn the_installation_token_is_exchanged_once_cached_and_refreshed_near_expiry() {
    let server = MockServer::start().await;
    mount_exchange(&server).await;
    // ManualClock::default() is 2026-01-01T00:00:00Z; the token expires at 01:00:00Z.
    let clock = ManualClock::default();
    let client = GithubClient::new(app_settings(&server, &clock)).unwrap();
    let a = client.token().await.unwrap();
    let b = client.token().await.unwrap();
    assert_eq!(a.expose(), INSTALLATION_TOKEN);
    assert_eq!(a, b);
    let exchanges: Vec<_> = server.received_requests().await.unwrap();
    assert_eq!(exchanges.len(), 1, "two calls, one exchange");

    let auth = exchanges[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let claims = jwt_claims(&auth);
    assert_eq!(claims["iss"], json!(APP_ID.parse::<u64>().unwrap()));
    let now = clock.now().as_secs();
    assert_eq!(claims["iat"], json!(now - 60));
    assert_eq!(claims["exp"], json!(now + 540));

    // 54 minutes later: still more than 5 minutes left, cached.
    clock.advance(Duration::from_secs(54 * 60));
    client.token().await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    // 56 minutes: within 5 minutes of expiry, refreshed with a new JWT.
    clock.advance(Duration::from_secs(2 * 60));
    client.token().await.unwrap();
    let exchanges = server.received_requests().await.unwrap();
    assert_eq!(exchanges.len(), 2);
    let claims = jwt_claims(
        exchanges[1]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
    );
    assert_eq!(claims["iat"], json!(clock.now().as_secs() - 60));

    // The free function the worker uses for git pushes.
    let t = installation_token(&app_settings(&server, &clock))
        .await
        .unwrap();
    assert_eq!(t.expose(), INSTALLATION_TOKEN);
    let t = installation_token(&settings(&server, &clock))
        .await
        .unwrap();
    assert_eq!(t.expose(), TOKEN);
}

#[tokio::test]
async fn a_rejected_app_is_an_auth_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/4242/access_tokens"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "A JSON web token could not be decoded",
            "documentation_url": "https://docs.github.com/rest"
        })))
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let err = installation_token(&app_settings(&server, &clock))
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::Auth);
    assert!(err.message.contains("could not be decoded"), "{err}");
    // The JWT is not in the message.
    assert!(!err.message.contains("eyJ"), "{err}");
}

#[tokio::test]
async fn tokens_never_appear_in_errors_or_debug_output() {
    let server = MockServer::start().await;
    // A hostile or careless server that echoes the credential back.
    Mock::given(method("GET"))
        .and(path("/repos/acme/calc/pulls/12"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": format!("Bad credentials: {TOKEN}"),
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": null,
            "errors": [{"type": "FORBIDDEN", "message": format!("token {TOKEN} lacks read:project")}]
        })))
        .mount(&server)
        .await;
    let clock = ManualClock::default();
    let s = settings(&server, &clock);
    let pulls = GithubPulls::new(s.clone(), ReportMode::Comment).unwrap();
    let err = pulls
        .get(&RepoName::parse("acme/calc").unwrap(), PrNumber(12))
        .await
        .unwrap_err();
    assert_eq!(err.class, FailureClass::Auth);
    assert!(err.message.contains("Bad credentials: ***"), "{err}");
    let board = GithubBoard::new(
        s.clone(),
        ProjectRef::parse("orgs/acme/7").unwrap(),
        FieldConfig::default(),
    )
    .unwrap();
    let err2 = board.ready_items().await.unwrap_err();
    assert_eq!(err2.class, FailureClass::Auth);
    assert!(err2.message.contains("token *** lacks"), "{err2}");
    for text in [
        err.to_string(),
        format!("{err:?}"),
        err2.to_string(),
        format!("{s:?}"),
        format!("{pulls:?}"),
        format!("{board:?}"),
    ] {
        assert!(!text.contains(TOKEN), "leaked: {text}");
    }

    // App settings: neither the private key nor the minted token is printed.
    mount_exchange(&server).await;
    let app = app_settings(&server, &clock);
    let client = GithubClient::new(app.clone()).unwrap();
    let token = client.token().await.unwrap();
    let printed = format!("{app:?} {client:?} {token:?} {token}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    assert!(!printed.contains(INSTALLATION_TOKEN), "{printed}");
    assert_eq!(
        client.scrub(&format!("x {INSTALLATION_TOKEN} y")),
        "x *** y"
    );
}

#[tokio::test]
async fn building_the_client_installs_one_tls_provider_and_does_not_panic() {
    let clock = ManualClock::default();
    let s = kiro_github::gh::GithubSettings::with_token(
        "https://api.github.com",
        kiro_protocol::Secret::new(TOKEN),
    )
    .with_clock(std::sync::Arc::new(clock));
    // Twice: the provider is installed once and building never panics.
    GithubClient::new(s.clone()).unwrap();
    GithubClient::new(s).unwrap();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

#[tokio::test]
async fn a_key_that_is_not_pem_is_an_auth_error() {
    let mut s = app_settings_without_server();
    if let kiro_github::gh::AuthConfig::App { private_key, .. } = &mut s.auth {
        *private_key = kiro_protocol::Secret::new(
            "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----",
        );
    }
    let err = GithubClient::new(s).unwrap_err();
    assert_eq!(err.class, FailureClass::Auth);
    assert!(!err.message.contains("not a key"));
}

fn app_settings_without_server() -> kiro_github::gh::GithubSettings {
    kiro_github::gh::GithubSettings::new(
        "http://127.0.0.1:9".into(),
        kiro_github::gh::AuthConfig::App {
            app_id: APP_ID.into(),
            private_key: kiro_protocol::Secret::new(fixture_text("test-app-key.pem")),
            installation_id: 1,
        },
    )
}
