//! Handshakes: a ticket's URL opens a connection; replayed, expired, foreign, malformed or
//! missing tickets, foreign origins and connections past the session's quota are refused as API
//! Gateway refuses them.

use std::time::Duration;

use reqwest::StatusCode;
use session_core::domain::{SessionId, Transport};
use session_tests::test_api::TestApi;

use super::{
    connections, exchange, heartbeat, now, principal, spawn_with_known_key, try_connect,
    try_connect_from,
};

#[tokio::test]
async fn a_ticket_url_opens_a_connection_that_answers_heartbeats() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let url = alice.ws_ticket(&session).await.1;

    let mut socket = try_connect(&url).await.expect("accepted");
    let first = exchange(&mut socket, &heartbeat(1)).await;
    let second = exchange(&mut socket, &heartbeat(2)).await;

    assert!(url.starts_with(&api.stack.endpoints().ws_api), "{url}");
    assert_eq!(first["type"], "heartbeat_ack", "{first}");
    assert_eq!(first["seq"], 1);
    assert_eq!(second["seq"], 2);
    assert_eq!(second["quality"]["heartbeats"], 2, "{second}");
    assert_eq!(second["resume"]["session_id"], session.as_str());
    assert_eq!(connections(&alice, &session).await, 1);
}

#[tokio::test]
async fn a_replayed_ticket_is_refused_with_403() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let url = alice.ws_ticket(&session).await.1;

    let _first = try_connect(&url).await.expect("accepted");
    let replay = try_connect(&url).await;

    assert_eq!(replay.err(), Some(StatusCode::FORBIDDEN));
    assert_eq!(connections(&alice, &session).await, 1);
}

const FRONTEND: &str = "https://app.example.com";

/// A stack whose WebSocket API allows the frontend's origin (and the web page's).
async fn spawn_with_frontend() -> TestApi {
    TestApi::spawn_with(|s| s.websocket.allowed_origins = vec![FRONTEND.to_owned()]).await
}

#[tokio::test]
async fn a_handshake_from_a_foreign_origin_is_refused_with_403_and_its_ticket_stays_unspent() {
    let api = spawn_with_frontend().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let url = alice.ws_ticket(&session).await.1;

    let refused = try_connect_from("https://evil.example", &url).await;
    let accepted = try_connect_from(FRONTEND, &url).await;

    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    assert!(accepted.is_ok(), "the ticket was not spent by the refusal");
    assert_eq!(connections(&alice, &session).await, 1);
}

#[tokio::test]
async fn a_handshake_without_origin_is_not_a_browsers_and_the_ticket_decides() {
    let api = spawn_with_frontend().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let url = alice.ws_ticket(&session).await.1;

    let refused = try_connect_from("null", &url).await;
    let accepted = try_connect(&url).await;
    let replayed = try_connect_from(FRONTEND, &url).await;

    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    assert!(accepted.is_ok(), "no Origin: the ticket admits it");
    assert_eq!(
        replayed.err(),
        Some(StatusCode::FORBIDDEN),
        "an allowed origin does not make a spent ticket good"
    );
    assert_eq!(connections(&alice, &session).await, 1);
}

#[tokio::test]
async fn an_expired_ticket_is_refused_with_403() {
    let (api, codec) = spawn_with_known_key().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let minted_long_ago = now().minus(Duration::from_secs(600));
    let (ticket, _) = codec
        .issue(
            &SessionId::parse("session_id", &session).unwrap(),
            &principal("alice"),
            Transport::Ws,
            minted_long_ago,
        )
        .unwrap();
    // The same signer now mints a ticket the authorizer accepts: the key is the stack's.
    let (fresh, _) = codec
        .issue(
            &SessionId::parse("session_id", &session).unwrap(),
            &principal("alice"),
            Transport::Ws,
            now(),
        )
        .unwrap();
    let base = &api.stack.endpoints().ws_api;

    let expired = try_connect(&format!("{base}?ticket={ticket}")).await;
    let accepted = try_connect(&format!("{base}?ticket={fresh}")).await;

    assert_eq!(expired.err(), Some(StatusCode::FORBIDDEN));
    assert!(accepted.is_ok());
}

#[tokio::test]
async fn a_ticket_for_another_users_session_is_refused_with_403() {
    let (api, codec) = spawn_with_known_key().await;
    let bob = api.user("bob");
    let bobs = bob.create_session().await;
    let (ticket, _) = codec
        .issue(
            &SessionId::parse("session_id", &bobs).unwrap(),
            &principal("alice"),
            Transport::Ws,
            now(),
        )
        .unwrap();

    let refused = try_connect(&format!("{}?ticket={ticket}", api.stack.endpoints().ws_api)).await;

    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    assert_eq!(connections(&bob, &bobs).await, 0);
}

#[tokio::test]
async fn a_malformed_ticket_is_refused_with_403_and_a_missing_one_with_401() {
    let api = TestApi::spawn().await;
    let base = &api.stack.endpoints().ws_api;

    let malformed = try_connect(&format!("{base}?ticket=not-a-ticket")).await;
    let empty = try_connect(&format!("{base}?ticket=")).await;
    let missing = try_connect(base).await;

    assert_eq!(malformed.err(), Some(StatusCode::FORBIDDEN));
    assert_eq!(empty.err(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(missing.err(), Some(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn concurrent_connects_beyond_the_quota_are_refused_with_429() {
    let api = TestApi::spawn_with(|s| s.limits.connections_per_session = 3).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut urls = Vec::new();
    for _ in 0..8 {
        urls.push(alice.ws_ticket(&session).await.1);
    }

    let attempts = futures_util::future::join_all(urls.iter().map(|url| try_connect(url))).await;

    let accepted = attempts.iter().filter(|a| a.is_ok()).count();
    let refused: Vec<_> = attempts.iter().filter_map(|a| a.as_ref().err()).collect();
    assert_eq!(accepted, 3);
    assert!(
        refused.iter().all(|s| **s == StatusCode::TOO_MANY_REQUESTS),
        "{refused:?}"
    );
    assert_eq!(connections(&alice, &session).await, 3);
}
