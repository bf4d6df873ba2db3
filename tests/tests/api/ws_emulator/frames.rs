//! Frames over an open connection: heartbeats and their acknowledgements, error frames for
//! what the service cannot take, and the frame and message size limits.

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use session_tests::test_api::{ConnectedSocket, TestApi};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use session_tests::ws::Socket;

use super::{closed_with, connections, exchange, heartbeat, next};

#[tokio::test]
async fn unknown_actions_and_malformed_json_get_error_frames_and_the_connection_stays_open() {
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;

    let unknown = exchange(&mut ws.socket, r#"{"action":"dance"}"#).await;
    let malformed = exchange(&mut ws.socket, "{nope").await;
    let bad = exchange(
        &mut ws.socket,
        r#"{"action":"heartbeat","seq":"one","client_time":1}"#,
    )
    .await;
    let still_open = exchange(&mut ws.socket, &heartbeat(1)).await;

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
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let first = exchange(&mut ws.socket, &heartbeat_at(1, &json!("7-42"))).await;
    assert_eq!(first["resume"]["last_event_id"], "7-42", "{first}");

    // Act
    let huge = heartbeat_at(2, &json!(format!("7-{}", "4".repeat(100 * 1024))));
    let refused = exchange_in_frames(&mut ws.socket, &huge).await;
    let next_ack = exchange(&mut ws.socket, &heartbeat(3)).await;

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
    assert_eq!(connections(&ws.user, &ws.session).await, 1);
}

#[tokio::test]
async fn heartbeats_with_malformed_fields_get_error_frames_naming_them_and_change_nothing() {
    // Arrange
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    exchange(&mut ws.socket, &heartbeat_at(1, &json!("7-42"))).await;
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
        let refused = exchange(&mut ws.socket, &message).await;

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
    let next_ack = exchange(&mut ws.socket, &heartbeat(2)).await;
    assert_eq!(next_ack["resume"]["last_event_id"], "7-42", "{next_ack}");
    assert_eq!(next_ack["quality"]["heartbeats"], 2, "{next_ack}");
    assert_eq!(next_ack["quality"]["missed_heartbeats"], 0, "{next_ack}");
}

#[tokio::test]
async fn a_valid_last_event_id_is_recorded_as_the_service_spells_it() {
    // Arrange
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;

    // Act
    let first = exchange(&mut ws.socket, &heartbeat_at(1, &json!("7-42"))).await;
    let padded = exchange(&mut ws.socket, &heartbeat_at(2, &json!("0007-00043"))).await;
    let kept = exchange(&mut ws.socket, &heartbeat(3)).await;

    // Assert
    assert_eq!(first["resume"]["last_event_id"], "7-42", "{first}");
    assert_eq!(padded["resume"]["last_event_id"], "7-43", "{padded}");
    assert_eq!(kept["resume"]["last_event_id"], "7-43", "{kept}");
    assert_eq!(kept["quality"]["heartbeats"], 3, "{kept}");
}

#[tokio::test]
async fn a_frame_over_32_kb_closes_the_connection_with_1009() {
    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let oversize = json!({"action": "heartbeat", "pad": "x".repeat(33 * 1024)}).to_string();

    ws.socket.send(Message::text(oversize)).await.unwrap();
    let code = closed_with(&mut ws.socket).await;

    assert_eq!(code, CloseCode::Size);
    assert_eq!(connections(&ws.user, &ws.session).await, 0);
}

#[tokio::test]
async fn a_message_over_128_kb_in_small_frames_closes_the_connection_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let api = TestApi::spawn().await;
    let mut ws = ConnectedSocket::open(&api, "alice").await;
    let chunk = vec![b'x'; 30 * 1024];

    // Five frames under the frame limit, together over the message limit.
    ws.socket
        .send(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
    for last in [false, false, false, true] {
        let frame = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), last);
        if ws.socket.send(Message::Frame(frame)).await.is_err() {
            break; // the server may close before the last frames are out
        }
    }
    let code = closed_with(&mut ws.socket).await;

    assert_eq!(code, CloseCode::Size);
    assert_eq!(connections(&ws.user, &ws.session).await, 0);
}
