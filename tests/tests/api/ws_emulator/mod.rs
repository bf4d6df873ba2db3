//! The WebSocket API emulator through a real WebSocket client: handshakes refused the way API
//! Gateway refuses them, heartbeats and error frames over the socket, the idle timeout, the
//! connection cap and the frame limit closing the socket and removing the record, quota races,
//! the `@connections` API driven by `aws-sdk-apigatewaymanagement`, and posts delivered while a
//! handler is slow.
//!
//! Layout: this file holds the helpers; `handshakes`, `frames`, `lifecycle` and
//! `connections_api` the tests, by what they drive.

mod connections_api;
mod frames;
mod handshakes;
mod lifecycle;

use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::{Credentials, Region};
use futures_util::SinkExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::auth::{Principal, TicketSigner};
use session_core::domain::{Timestamp, UserId};
use session_tests::test_api::{TestApi, User};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use session_tests::ws::Socket;

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

/// The next data or close message (pings and pongs skipped), `None` once the socket ended.
async fn next(socket: &mut Socket) -> Option<Message> {
    session_tests::ws::next_message(socket, WAIT).await
}

/// [`next`] unchecked against docs/asyncapi.json, for arbitrary bytes posted through the
/// `@connections` transport.
async fn next_posted(socket: &mut Socket) -> Option<Message> {
    session_tests::ws::next_raw_message(socket, WAIT).await
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
    session_tests::ws::closed_with(socket, WAIT).await
}

/// The session's open connections, as its detail reports them.
async fn connections(user: &User, session: &str) -> u64 {
    let detail = user.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(detail.status, StatusCode::OK, "{detail:?}");
    detail.body["connections"].as_u64().unwrap()
}

/// A well-formed heartbeat (checked against docs/asyncapi.json).
fn heartbeat(seq: u64) -> String {
    let beat = json!({"action": "heartbeat", "seq": seq, "client_time": 1_000 * seq});
    session_tests::contract::assert_ws_sent(&beat);
    beat.to_string()
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
