//! Revoked tokens are refused at every door — REST, WebSocket `$connect`, SSE connect (tickets
//! minted before the revocation, and a resumed continuation of a stream opened before it) —
//! once the revocation cache's bound has passed, on a DynamoDB store (moto); other tokens and
//! users are not affected.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use session_core::config::StoreBackend;
use session_tests::moto::Moto;
use session_tests::test_api::{TestApi, User};

use crate::scopes::user_with_scopes;

/// `auth.revocation_cache_ms` in these tests: the bound within which a revocation takes effect.
const BOUND: Duration = Duration::from_millis(500);

const USER_SCOPES: [&str; 2] = ["sessions:read", "sessions:write"];

/// The local stack on a fresh table of moto's server, with the short cache bound.
async fn stack_on_moto() -> TestApi {
    let table = format!(
        "revocation-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    Box::pin(TestApi::spawn_with(|s| {
        s.store.backend = StoreBackend::Dynamodb;
        s.store.endpoint = Some(Moto::shared().endpoint().to_owned());
        s.store.table_name = table;
        s.auth.revocation_cache_ms = BOUND;
    }))
    .await
}

/// A fresh token for `user` with the usual scopes, and its id (`jti`).
fn token(api: &TestApi, user: &str) -> (String, String) {
    let token = api
        .stack
        .auth()
        .issue(user, &USER_SCOPES, Duration::from_secs(3600))
        .unwrap();
    let jti = session_tests::jwt::claim(&token, "jti");
    (token, jti)
}

fn client(api: &TestApi, token: &str) -> User {
    api.with_authorization(&format!("Bearer {token}"))
}

async fn ticket_url(user: &User, session: &str, transport: &str) -> String {
    let answer = user
        .post(
            &format!("/v1/sessions/{session}/tickets"),
            &json!({ "transport": transport }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    answer.body["url"].as_str().unwrap().to_owned()
}

/// The status of an SSE request to `url` and its problem type, if refused.
async fn sse_connect(url: &str, last_event_id: Option<&str>) -> (u16, Option<String>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("the streamer answers");
    let status = response.status().as_u16();
    if status == 200 {
        return (status, None);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["type"].as_str().map(str::to_owned))
}

const TOKEN_REVOKED: &str = "urn:session-service:problem:token-revoked";

async fn revoke(api: &TestApi, request: &Value) {
    let admin = user_with_scopes(api, "ops", &["sessions:admin"]);
    let answer = admin.post("/v1/admin/revocations", request).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
}

/// Polls `refused` every 20 ms until it holds; returns how long that took (panics after 5 s).
async fn refused_after<F, Fut>(mut refused: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !refused().await {
        assert!(start.elapsed() < Duration::from_secs(5), "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn a_token_revoked_by_its_id_is_refused_at_every_door_within_the_bound_and_no_other_is() {
    let api = Box::pin(stack_on_moto()).await;
    let (stolen, stolen_jti) = token(&api, "mallory");
    let (other, _) = token(&api, "mallory");
    let (stolen, other, alice) = (
        client(&api, &stolen),
        client(&api, &other),
        api.user("alice"),
    );
    let session = stolen.create_session().await;
    stolen.start_simulator(&session, &["BTC-USD"]).await;
    // Tickets minted with the stolen token before the revocation, and with the other one.
    let (stolen_ws, stolen_sse) = (
        ticket_url(&stolen, &session, "ws").await,
        ticket_url(&stolen, &session, "sse").await,
    );
    let (other_ws, other_sse) = (
        ticket_url(&other, &session, "ws").await,
        ticket_url(&other, &session, "sse").await,
    );
    // The REST function has the stolen token's negative answer cached.
    assert_eq!(stolen.get("/v1/sessions").await.status, StatusCode::OK);

    revoke(&api, &json!({ "token_id": stolen_jti })).await;
    let took = refused_after(|| async {
        stolen.get("/v1/sessions").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took <= BOUND + Duration::from_millis(300), "took {took:?}");
    tokio::time::sleep(BOUND).await;

    let refused = stolen.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert_eq!(refused.problem(), "token-revoked");
    assert_eq!(
        refused.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token", error_description="The token is revoked""#)
    );
    assert_eq!(
        session_tests::ws::handshake_status(&stolen_ws).await,
        403,
        "WebSocket $connect"
    );
    assert_eq!(
        sse_connect(&stolen_sse, None).await,
        (401, Some(TOKEN_REVOKED.to_owned())),
        "SSE connect"
    );

    // Another token of the same user, and another user, are not affected.
    assert_eq!(other.get("/v1/sessions").await.status, StatusCode::OK);
    assert_eq!(session_tests::ws::handshake_status(&other_ws).await, 101);
    assert_eq!(sse_connect(&other_sse, None).await.0, 200);
    assert_eq!(alice.get("/v1/sessions").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_subject_is_refused_at_every_door_even_a_resumed_stream_and_others_are_not() {
    let api = Box::pin(stack_on_moto()).await;
    let (before, _) = token(&api, "mallory");
    let mallory = client(&api, &before);
    let alice = api.user("alice");
    let session = mallory.create_session().await;
    mallory.start_simulator(&session, &["BTC-USD"]).await;
    let ws = ticket_url(&mallory, &session, "ws").await;
    let sse = ticket_url(&mallory, &session, "sse").await;
    let alices_session = alice.create_session().await;
    let alices_ws = ticket_url(&alice, &alices_session, "ws").await;

    // A stream opened before the revocation, read up to its first event id, then dropped:
    // EventSource would reconnect to the same URL with Last-Event-ID.
    let streamed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut response = reqwest::Client::new().get(&sse).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut text = String::new();
        loop {
            let chunk = response.chunk().await.unwrap().expect("the stream goes on");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(line) = text.lines().find(|l| l.starts_with("id: ")) {
                return line.trim_start_matches("id: ").to_owned();
            }
        }
    })
    .await
    .expect("an event in time");
    // The released ticket may be resumed (the release is written as the connection ends).
    tokio::time::sleep(Duration::from_millis(200)).await;

    revoke(&api, &json!({ "subject": "mallory" })).await;
    tokio::time::sleep(BOUND + Duration::from_millis(100)).await;

    let (after, _) = token(&api, "mallory");
    for (what, user) in [
        ("token from before", &mallory),
        ("token from after", &client(&api, &after)),
    ] {
        let answer = user.get("/v1/sessions").await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {answer:?}"
        );
        assert_eq!(answer.problem(), "token-revoked", "{what}");
    }
    assert_eq!(
        session_tests::ws::handshake_status(&ws).await,
        403,
        "WebSocket $connect"
    );
    assert_eq!(
        sse_connect(&sse, Some(&streamed)).await,
        (401, Some(TOKEN_REVOKED.to_owned())),
        "the resumed continuation of a stream opened before"
    );

    assert_eq!(alice.get("/v1/sessions").await.status, StatusCode::OK);
    assert_eq!(session_tests::ws::handshake_status(&alices_ws).await, 101);
}
