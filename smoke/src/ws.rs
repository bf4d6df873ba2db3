//! The WebSocket half of a run: connect with a ticket's URL, heartbeat, and read the events the
//! streamer pushes through API Gateway's `@connections` API.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::error::{StepError, shown};
use crate::sequence::Sequence;

/// How long a close handshake may take before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// An open WebSocket connection.
#[derive(Debug)]
pub struct Socket {
    url: Url,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Connects to `url` (`wss://` with `tls`). Returns the socket and the handshake's status.
pub async fn connect(
    tls: &Arc<rustls::ClientConfig>,
    url: &Url,
) -> Result<(Socket, String), StepError> {
    let request = url
        .as_str()
        .into_client_request()
        .map_err(|e| StepError::unreachable("WebSocket", url, &e))?;
    let connector = Connector::Rustls(Arc::clone(tls));
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
    let (socket, response) = connecting.await.map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => StepError::Status {
            method: "WebSocket",
            url: shown(url),
            status: response.status().as_u16(),
            detail: crate::api::problem(response.body().as_deref().unwrap_or_default()),
        },
        e => StepError::unreachable("WebSocket", url, &e),
    })?;
    let status = response.status();
    Ok((
        Socket {
            url: url.clone(),
            socket,
        },
        format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ),
    ))
}

impl Socket {
    /// Sends heartbeat `seq` and reads until its `heartbeat_ack` (events that come first go into
    /// `sequence`). Returns the acknowledgement's round trip in milliseconds.
    pub async fn heartbeat(
        &mut self,
        seq: u64,
        sequence: &mut Sequence,
    ) -> Result<u128, StepError> {
        let sent = std::time::Instant::now();
        self.send_heartbeat(seq).await?;
        loop {
            let frame = self.next_frame().await?;
            match frame["type"].as_str() {
                Some("heartbeat_ack") if frame["seq"].as_u64() == Some(seq) => {
                    if let Some(reason) = frame["reconnect"]["reason"].as_str() {
                        return Err(StepError::Check(format!(
                            "the heartbeat_ack advises a reconnect ({reason})"
                        )));
                    }
                    return Ok(sent.elapsed().as_millis());
                }
                Some("events") => apply(&frame, sequence)?,
                _ => return Err(unexpected(&frame)),
            }
        }
    }

    /// Sends heartbeat `seq` with the client's clock; its `heartbeat_ack` comes among the next
    /// frames.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send_heartbeat(&mut self, seq: u64) -> Result<(), StepError> {
        let client_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let heartbeat = json!({ "action": "heartbeat", "seq": seq, "client_time": client_time });
        self.socket
            .send(Message::text(heartbeat.to_string()))
            .await
            .map_err(|e| StepError::unreachable("WebSocket", &self.url, &e))
    }

    /// Reads pushed events into `sequence` until it has a snapshot and `count` events after it.
    pub async fn events(&mut self, sequence: &mut Sequence, count: usize) -> Result<(), StepError> {
        while sequence.snapshot().is_none() || sequence.counts().events() < count {
            let frame = self.next_frame().await?;
            match frame["type"].as_str() {
                Some("events") => apply(&frame, sequence)?,
                Some("heartbeat_ack") => {}
                _ => return Err(unexpected(&frame)),
            }
        }
        Ok(())
    }

    /// Closes the connection (1000), waiting a little for the server's close frame.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let _ = self.socket.close(None).await;
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    /// The next text message as JSON (pings, pongs and binary messages skipped). Cancel-safe:
    /// it holds nothing between reads, so it can race a timer in `select!`.
    ///
    /// # Errors
    /// The connection failed or closed, or a message is not JSON.
    pub async fn next_frame(&mut self) -> Result<Value, StepError> {
        loop {
            let message = match self.socket.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(StepError::unreachable("WebSocket", &self.url, &e)),
                None => {
                    return Err(StepError::Check(format!(
                        "the WebSocket ended ({})",
                        shown(&self.url)
                    )));
                }
            };
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text).map_err(|e| StepError::Answer {
                        method: "WebSocket",
                        url: shown(&self.url),
                        reason: format!("a message that is not JSON: {e}"),
                    });
                }
                Message::Close(frame) => {
                    let why = frame.map_or_else(
                        || "no close frame".to_owned(),
                        |f| format!("{} {}", u16::from(f.code), f.reason),
                    );
                    return Err(StepError::Check(format!(
                        "the server closed the WebSocket ({}; {})",
                        why.trim(),
                        shown(&self.url)
                    )));
                }
                _ => {}
            }
        }
    }
}

/// Feeds the events of an `events` message into `sequence`.
fn apply(frame: &Value, sequence: &mut Sequence) -> Result<(), StepError> {
    let events = frame["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for event in events {
        let kind = event["event"].as_str().unwrap_or("message");
        sequence.apply(kind, event["id"].as_str(), &event["data"])?;
    }
    Ok(())
}

fn unexpected(frame: &Value) -> StepError {
    match (frame["type"].as_str(), frame["code"].as_str()) {
        (Some("error"), Some(code)) => StepError::Check(format!(
            "an error message: {code}: {}",
            frame["message"].as_str().unwrap_or_default()
        )),
        _ => StepError::Check(format!("an unexpected message: {frame}")),
    }
}
