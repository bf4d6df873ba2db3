//! A WebSocket client's reading and sending, shared by the suites: every text frame received is
//! checked against docs/asyncapi.json ([`crate::contract`]), and so is every frame sent with
//! [`send`].

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket client's socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next data or close message of `socket` (pings and pongs skipped), `None` once it ended;
/// a text message is checked against the document. Panics after `wait`, or on a text message
/// the document does not allow.
pub async fn next_message(socket: &mut Socket, wait: Duration) -> Option<Message> {
    let message = next_raw_message(socket, wait).await;
    if let Some(Message::Text(text)) = &message {
        crate::contract::assert_ws_received(text);
    }
    message
}

/// [`next_message`] without the check: for tests that post arbitrary bytes through the
/// `@connections` API, which is a transport, not the service's contract.
pub async fn next_raw_message(socket: &mut Socket, wait: Duration) -> Option<Message> {
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .expect("a message or the end in time");
        match message {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(message)) => return Some(message),
            Some(Err(_)) | None => return None,
        }
    }
}

/// The close code `socket` ends with (data skipped); panics without a close frame or after
/// `wait` for any message.
pub async fn closed_with(socket: &mut Socket, wait: Duration) -> CloseCode {
    loop {
        match next_raw_message(socket, wait).await {
            Some(Message::Close(Some(frame))) => return frame.code,
            Some(Message::Close(None)) | None => panic!("closed without a close frame"),
            Some(_) => {}
        }
    }
}

/// Sends `frame` (a client action, e.g. a heartbeat) after checking it against the document.
/// Panics if the document does not allow it or the socket is closed.
pub async fn send(socket: &mut Socket, frame: &Value) {
    crate::contract::assert_ws_sent(frame);
    socket
        .send(Message::text(frame.to_string()))
        .await
        .expect("the frame is sent");
}

/// The status a WebSocket API answers a handshake to `url` with (101 when it connects; the
/// connection is closed at once).
///
/// # Panics
/// The handshake failed other than with an HTTP answer (nothing listening, a broken stream).
pub async fn handshake_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the handshake failed: {e}"),
    }
}
