//! The WebSocket API emulator through a real WebSocket client: handshakes refused the way API
//! Gateway refuses them, heartbeats and error frames over the socket, the idle timeout, the
//! connection cap and the frame limit closing the socket and removing the record, quota races,
//! the `@connections` API driven by `aws-sdk-apigatewaymanagement`, and posts delivered while a
//! handler is slow.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::{Credentials, Region};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::SinkExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::auth::{Principal, TicketSigner};
use session_core::domain::{SessionId, Timestamp, Transport, UserId};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::{TestApi, User};
use crate::stall::stack_behind_relay;

use crate::helpers::Socket;

/// The longest any single wait in these tests may take; far above what each needs.
const WAIT: Duration = Duration::from_secs(20);

/// Connects to `url`; the handshake's HTTP status if it is refused.
async fn try_connect(url: &str) -> Result<Socket, StatusCode> {
    handshake(url.into_client_request().unwrap()).await
}

/// Connects to `url` as a browser on a page of `origin` would.
async fn try_connect_from(origin: &str, url: &str) -> Result<Socket, StatusCode> {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    handshake(request).await
}

/// Sends the handshake `request`; its HTTP status if it is refused.
async fn handshake(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Socket, StatusCode> {
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake is answered");
    match attempt {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => {
            Err(StatusCode::from_u16(response.status().as_u16()).unwrap())
        }
        Err(e) => panic!("the handshake failed: {e}"),
    }
}

async fn connect(user: &User, session: &str) -> Socket {
    let url = user.ws_ticket(session).await.1;
    try_connect(&url).await.expect("the handshake is accepted")
}

/// The next data or close message (pings and pongs skipped), `None` once the socket ended.
async fn next(socket: &mut Socket) -> Option<Message> {
    crate::helpers::next_ws_message(socket, WAIT).await
}

/// Sends `message` and returns the JSON frame that answers it.
async fn exchange(socket: &mut Socket, message: &str) -> Value {
    socket.send(Message::text(message)).await.unwrap();
    match next(socket).await {
        Some(Message::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("no text frame: {other:?}"),
    }
}

/// The close frame's code the server ends the connection with.
async fn closed_with(socket: &mut Socket) -> CloseCode {
    crate::helpers::ws_closed_with(socket, WAIT).await
}

/// The session's open connections, as its detail reports them.
async fn connections(user: &User, session: &str) -> u64 {
    let detail = user.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(detail.status, StatusCode::OK, "{detail:?}");
    detail.body["connections"].as_u64().unwrap()
}

fn heartbeat(seq: u64) -> String {
    json!({"action": "heartbeat", "seq": seq, "client_time": 1_000 * seq}).to_string()
}

/// A stack whose ticket key the test knows, to mint tickets the REST API would not.
async fn spawn_with_known_key() -> (TestApi, TicketSigner) {
    let key = SigningKey::generate("ws-emulator-test").unwrap();
    let keys = VerifyKeys::of(&[&key]).unwrap();
    let signer = TicketSigner::new(key.clone(), Duration::from_secs(60));
    let api = TestApi::spawn_with(|s| s.auth.set_ticket_keys(Some(key), Some(keys)).unwrap()).await;
    (api, signer)
}

/// A caller named `user`, as a validated bearer token would make it.
fn principal(user: &str) -> Principal {
    Principal {
        user: UserId::parse("user", user).unwrap(),
        scopes: vec![],
        expires_at: now().plus(Duration::from_secs(3600)),
        token_id: format!("{user}-token"),
    }
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(i64::try_from(ms).unwrap())
}

fn management(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

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
async fn unknown_actions_and_malformed_json_get_error_frames_and_the_connection_stays_open() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;

    let unknown = exchange(&mut socket, r#"{"action":"dance"}"#).await;
    let malformed = exchange(&mut socket, "{nope").await;
    let bad = exchange(
        &mut socket,
        r#"{"action":"heartbeat","seq":"one","client_time":1}"#,
    )
    .await;
    let still_open = exchange(&mut socket, &heartbeat(1)).await;

    assert_eq!(unknown["code"], "unknown_action", "{unknown}");
    assert!(unknown["message"].as_str().unwrap().contains("dance"));
    assert_eq!(malformed["code"], "malformed_json", "{malformed}");
    assert_eq!(bad["code"], "invalid_heartbeat", "{bad}");
    assert_eq!(still_open["type"], "heartbeat_ack", "{still_open}");
}

/// Sends `message` in text frames of at most 30 KB (API Gateway's frame limit is 32 KB) and
/// returns the JSON frame that answers it.
async fn exchange_in_frames(socket: &mut Socket, message: &str) -> Value {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let chunks: Vec<&[u8]> = message.as_bytes().chunks(30 * 1024).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let opcode = if n == 0 { Data::Text } else { Data::Continue };
        let last = n + 1 == chunks.len();
        let frame = Frame::message(chunk.to_vec(), OpCode::Data(opcode), last);
        socket.send(Message::Frame(frame)).await.unwrap();
    }
    match next(socket).await {
        Some(Message::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("no text frame: {other:?}"),
    }
}

/// `frame` as JSON, cut to 300 characters for a failure message.
fn short(frame: &Value) -> String {
    frame.to_string().chars().take(300).collect()
}

fn heartbeat_at(seq: u64, last_event_id: &Value) -> String {
    json!({
        "action": "heartbeat",
        "seq": seq,
        "client_time": 1_000 * seq,
        "last_event_id": last_event_id,
    })
    .to_string()
}

#[tokio::test]
async fn a_heartbeat_with_a_100_kb_last_event_id_gets_an_error_frame_and_changes_nothing() {
    // Arrange: a recorded position.
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let first = exchange(&mut socket, &heartbeat_at(1, &json!("7-42"))).await;
    assert_eq!(first["resume"]["last_event_id"], "7-42", "{first}");

    // Act
    let huge = heartbeat_at(2, &json!(format!("7-{}", "4".repeat(100 * 1024))));
    let refused = exchange_in_frames(&mut socket, &huge).await;
    let next_ack = exchange(&mut socket, &heartbeat(3)).await;

    // Assert: refused naming the field, without echoing it; the record is as before (same
    // position, the refused heartbeat not counted) and the connection still answers.
    let (refused_text, ack_text) = (short(&refused), short(&next_ack));
    assert_eq!(refused["type"], "error", "{refused_text}");
    assert_eq!(refused["code"], "invalid_heartbeat", "{refused_text}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("last_event_id"), "{refused_text}");
    assert!(message.len() < 300, "{refused_text}");
    assert_eq!(next_ack["type"], "heartbeat_ack", "{ack_text}");
    assert_eq!(next_ack["resume"]["last_event_id"], "7-42", "{ack_text}");
    assert_eq!(next_ack["quality"]["heartbeats"], 2, "{ack_text}");
    assert_eq!(next_ack["quality"]["missed_heartbeats"], 1, "{ack_text}");
    assert_eq!(connections(&alice, &session).await, 1);
}

#[tokio::test]
async fn heartbeats_with_malformed_fields_get_error_frames_naming_them_and_change_nothing() {
    // Arrange
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    exchange(&mut socket, &heartbeat_at(1, &json!("7-42"))).await;
    let cases = [
        (heartbeat_at(2, &json!("abc")), "last_event_id"),
        (heartbeat_at(2, &json!("1-")), "last_event_id"),
        (heartbeat_at(2, &json!("-1-2")), "last_event_id"),
        (heartbeat_at(2, &json!(42)), "last_event_id"),
        (heartbeat_at(2, &json!(format!("7-{}", "4".repeat(1000)))), "last_event_id"),
        (
            r#"{"action":"heartbeat","seq":-2,"client_time":1}"#.to_owned(),
            "seq",
        ),
        (
            r#"{"action":"heartbeat","seq":2,"client_time":-1}"#.to_owned(),
            "client_time",
        ),
        (
            r#"{"action":"heartbeat","seq":2,"client_time":1,"last_server_time":99999999999999999999,"seen_at":1}"#
                .to_owned(),
            "last_server_time",
        ),
        (
            r#"{"action":"heartbeat","seq":2,"client_time":1,"last_server_time":-9223372036854775808,"seen_at":1}"#
                .to_owned(),
            "last_server_time",
        ),
        (
            r#"{"action":"heartbeat","seq":2,"client_time":1,"last_server_time":1,"seen_at":-1}"#
                .to_owned(),
            "seen_at",
        ),
        (
            r#"{"action":"heartbeat","seq":2,"client_time":1,"events_received":-1}"#.to_owned(),
            "events_received",
        ),
        (
            r#"{"action":"heartbeat","seq":2,"client_time":1,"events_received":1e300}"#.to_owned(),
            "events_received",
        ),
    ];

    for (message, field) in cases {
        // Act
        let refused = exchange(&mut socket, &message).await;

        // Assert
        let shown = short(&refused);
        assert_eq!(
            refused["code"], "invalid_heartbeat",
            "{message:.100}: {shown}"
        );
        let text = refused["message"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("{field}: ")),
            "{message:.100}: {shown}"
        );
        assert!(text.len() < 300, "{shown}");
    }
    let next_ack = exchange(&mut socket, &heartbeat(2)).await;
    assert_eq!(next_ack["resume"]["last_event_id"], "7-42", "{next_ack}");
    assert_eq!(next_ack["quality"]["heartbeats"], 2, "{next_ack}");
    assert_eq!(next_ack["quality"]["missed_heartbeats"], 0, "{next_ack}");
}

#[tokio::test]
async fn a_valid_last_event_id_is_recorded_as_the_service_spells_it() {
    // Arrange
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;

    // Act
    let first = exchange(&mut socket, &heartbeat_at(1, &json!("7-42"))).await;
    let padded = exchange(&mut socket, &heartbeat_at(2, &json!("0007-00043"))).await;
    let kept = exchange(&mut socket, &heartbeat(3)).await;

    // Assert
    assert_eq!(first["resume"]["last_event_id"], "7-42", "{first}");
    assert_eq!(padded["resume"]["last_event_id"], "7-43", "{padded}");
    assert_eq!(kept["resume"]["last_event_id"], "7-43", "{kept}");
    assert_eq!(kept["quality"]["heartbeats"], 3, "{kept}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_1001_and_its_record_removed() {
    let api = TestApi::spawn_stack(|s| s.ws.idle_timeout = Duration::from_millis(300)).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;

    let code = closed_with(&mut socket).await;

    assert_eq!(code, CloseCode::Away);
    assert_eq!(connections(&alice, &session).await, 0);
    assert_eq!(api.stack.ws_api().open_connections(), 0);
}

#[tokio::test]
async fn a_connection_is_closed_with_1001_at_the_cap_and_its_record_removed() {
    let api =
        TestApi::spawn_stack(|s| s.ws.max_connection_duration = Duration::from_millis(300)).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;

    let code = closed_with(&mut socket).await;

    assert_eq!(code, CloseCode::Away);
    assert_eq!(connections(&alice, &session).await, 0);
}

#[tokio::test]
async fn a_frame_over_32_kb_closes_the_connection_with_1009() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let oversize = json!({"action": "heartbeat", "pad": "x".repeat(33 * 1024)}).to_string();

    socket.send(Message::text(oversize)).await.unwrap();
    let code = closed_with(&mut socket).await;

    assert_eq!(code, CloseCode::Size);
    assert_eq!(connections(&alice, &session).await, 0);
}

#[tokio::test]
async fn closing_the_client_disconnects_and_removes_the_record() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let before = connections(&alice, &session).await;

    socket.close(None).await.unwrap();
    // The server answers the close frame after `$disconnect` ran; then the socket ends.
    while next(&mut socket).await.is_some() {}

    assert_eq!(before, 1);
    assert_eq!(connections(&alice, &session).await, 0);
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

#[tokio::test]
async fn the_aws_sdk_posts_to_gets_and_deletes_a_connection() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let id = api
        .stack
        .ws_api()
        .connection_ids()
        .pop()
        .expect("one connection");
    let client = management(&api.stack.endpoints().connections_url);
    // An endpoint without the stage works too.
    let base = api
        .stack
        .endpoints()
        .connections_url
        .trim_end_matches("/local");
    let staged = management(base);

    client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"type":"hello"}"#))
        .send()
        .await
        .unwrap();
    let received = next(&mut socket).await;
    let described = staged
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    client
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    let code = closed_with(&mut socket).await;
    let gone = client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("late"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    let gone_get = client
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();

    assert_eq!(received, Some(Message::text(r#"{"type":"hello"}"#)));
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
    assert_eq!(
        described.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );
    assert!(described.connected_at().is_some());
    assert!(described.last_active_at() >= described.connected_at());
    assert_eq!(code, CloseCode::Normal);
    assert!(gone.is_gone_exception(), "{gone:?}");
    assert!(gone_get.is_gone_exception(), "{gone_get:?}");
    assert_eq!(connections(&alice, &session).await, 0);
}

#[tokio::test]
async fn posting_over_128_kb_is_refused_with_payload_too_large() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let _socket = connect(&alice, &session).await;
    let id = api
        .stack
        .ws_api()
        .connection_ids()
        .pop()
        .expect("one connection");
    let client = management(&api.stack.endpoints().connections_url);

    let refused = client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 129 * 1024]))
        .send()
        .await
        .unwrap_err()
        .into_service_error();

    assert!(refused.is_payload_too_large_exception(), "{refused:?}");
}

#[tokio::test]
async fn a_closed_connection_is_gone_for_the_aws_sdk() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let id = api
        .stack
        .ws_api()
        .connection_ids()
        .pop()
        .expect("one connection");
    let client = management(&api.stack.endpoints().connections_url);
    socket.close(None).await.unwrap();
    while next(&mut socket).await.is_some() {}

    let gone = client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hello"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();

    assert!(gone.is_gone_exception(), "{gone:?}");
}

#[tokio::test]
async fn a_message_over_128_kb_in_small_frames_closes_the_connection_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let chunk = vec![b'x'; 30 * 1024];

    // Five frames under the frame limit, together over the message limit.
    socket
        .send(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    for last in [false, false, false, true] {
        let frame = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), last);
        if socket.send(Message::Frame(frame)).await.is_err() {
            break; // the server may close before the last frames are out
        }
    }
    let code = closed_with(&mut socket).await;

    assert_eq!(code, CloseCode::Size);
    assert_eq!(connections(&alice, &session).await, 0);
}

#[tokio::test]
async fn stopping_the_stack_closes_open_connections_with_1001() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let TestApi { stack, .. } = api;

    let stopping = tokio::spawn(stack.shutdown());
    let code = closed_with(&mut socket).await;
    while next(&mut socket).await.is_some() {}
    let stopped = tokio::time::timeout(WAIT, stopping).await;

    assert_eq!(code, CloseCode::Away);
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

/// Milliseconds since the Unix epoch on this machine's clock (the client's clock here).
fn client_clock() -> i64 {
    now().unix_millis()
}

#[tokio::test]
async fn a_delay_on_the_path_raises_rtt_and_jitter_and_poor_quality_is_advised() {
    let api = TestApi::spawn_with(|s| s.websocket.poor_rtt_ms = 200).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let delay = Duration::from_millis(300);

    // Two prompt rounds, then one whose acknowledgement is held back on its way to the client
    // (read late, as a slow network would deliver it).
    let mut last = exchange(&mut socket, &heartbeat(1)).await;
    let mut seen_at = client_clock();
    let mut quality = Vec::new();
    for seq in 2..=4 {
        let beat = json!({"action": "heartbeat", "seq": seq, "client_time": client_clock(),
            "last_server_time": last["server_time"], "seen_at": seen_at});
        socket.send(Message::text(beat.to_string())).await.unwrap();
        if seq == 3 {
            tokio::time::sleep(delay).await;
        }
        last = match next(&mut socket).await {
            Some(Message::Text(text)) => serde_json::from_str(&text).unwrap(),
            other => panic!("no text frame: {other:?}"),
        };
        seen_at = client_clock();
        quality.push(last.clone());
    }

    // Heartbeat 4 measures the round that carried the delayed acknowledgement.
    let delayed = &quality[2];
    assert!(
        delayed["quality"]["rtt_ms"].as_u64().unwrap() >= 300,
        "{delayed}"
    );
    assert!(
        delayed["quality"]["jitter_ms"].as_u64().unwrap() > 0,
        "{delayed}"
    );
    assert_eq!(delayed["reconnect"]["reason"], "poor_quality", "{delayed}");
    assert_eq!(quality[0]["quality"]["missed_heartbeats"], 0);
}

#[tokio::test]
async fn near_the_shortened_cap_heartbeats_advise_reconnecting_for_connection_age() {
    let api = TestApi::spawn_with(|s| {
        s.websocket.max_connection_secs = 60;
        s.websocket.reconnect_before_cap_secs = 59;
    })
    .await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;

    let young = exchange(&mut socket, &heartbeat(1)).await;
    // Past one second of age the connection is within 59 s of its 60 s cap.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let old = exchange(&mut socket, &heartbeat(2)).await;

    assert!(
        young["reconnect"].is_null() || young["reconnect"]["reason"] == "connection_age",
        "{young}"
    );
    assert_eq!(old["reconnect"]["reason"], "connection_age", "{old}");
    assert_eq!(old["resume"]["session_id"], session.as_str());
}

#[tokio::test]
async fn posts_reach_the_client_while_a_handler_waits_on_the_store() {
    // The heartbeat waits out the hold, however long posting takes on a busy machine.
    let (api, relay) = stack_behind_relay(60_000, 60_000).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let mut socket = connect(&alice, &session).await;
    let id = api.stack.ws_api().connection_ids().pop().unwrap();
    let client = management(&api.stack.endpoints().connections_url);

    // The heartbeat's handler waits on the store; meanwhile more frames are posted than the
    // emulator queues for a connection.
    relay.hold();
    socket.send(Message::text(heartbeat(1))).await.unwrap();
    let posts = 300;
    for n in 0..posts {
        client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(json!({ "n": n }).to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("post {n}: {:?}", e.into_service_error()));
    }
    let mut received = Vec::new();
    for _ in 0..posts {
        received.push(next(&mut socket).await);
    }
    relay.release();
    let answer = next(&mut socket).await;

    for (n, message) in received.into_iter().enumerate() {
        assert_eq!(message, Some(Message::text(json!({ "n": n }).to_string())));
    }
    let Some(Message::Text(answer)) = answer else {
        panic!("no answer to the heartbeat: {answer:?}");
    };
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["type"], "heartbeat_ack", "{answer}");
}
