//! A server-sent events client, as `EventSource` behaves: it parses frames, remembers the last
//! event id, and can reconnect with `Last-Event-ID`. Every event's data is checked against
//! docs/asyncapi.json ([`crate::contract`]). A gzip response (asked for with
//! `Accept-Encoding: gzip`) is decoded as it arrives, as a browser does.

use std::io::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// One event (`event` is the SSE field's name).
#[allow(clippy::struct_field_names)]
#[derive(Debug, Clone)]
pub struct Event {
    /// `id:`, if any.
    pub id: Option<String>,
    /// `event:` (`message` if absent).
    pub event: String,
    /// `data:`, parsed.
    pub data: Value,
}

/// A refused connection: the status and the problem document.
#[derive(Debug)]
pub struct Refused {
    /// The status.
    pub status: StatusCode,
    /// The body (a problem document), `null` if not JSON.
    pub body: Value,
}

impl Refused {
    /// The problem type's code.
    pub fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:session-service:problem:"))
            .unwrap_or_else(|| panic!("no problem type in {self:?}"))
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// The response's headers.
    pub headers: reqwest::header::HeaderMap,
    /// The latest `retry:`.
    pub retry_ms: Option<u64>,
    /// The latest event id, as `EventSource` sends it back in `Last-Event-ID`.
    pub last_event_id: Option<String>,
    /// Heartbeat comments received.
    pub heartbeats: usize,
    /// Body bytes received as sent (compressed, for a gzip response).
    pub wire_bytes: usize,
    /// Decodes a gzip response.
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    /// A gzip response ended with its trailer, whose CRC-32 and length matched.
    pub gzip_checked: bool,
}

/// Opens `url` with `headers` (e.g. `Last-Event-ID`, `Authorization`).
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<SseStream, Refused> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let mut request = client.get(url).header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the streamer answers");
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        return Err(Refused { status, body });
    }
    let gzip = response
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    Ok(SseStream {
        gunzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
        wire_bytes: 0,
        gzip_checked: false,
        headers: response.headers().clone(),
        response,
        buffer: Vec::new(),
        retry_ms: None,
        last_event_id: None,
        heartbeats: 0,
    })
}

impl SseStream {
    /// The next event, or `None` when the server ended the response. Panics after `patience`.
    pub async fn next(&mut self, patience: Duration) -> Option<Event> {
        tokio::time::timeout(patience, self.next_event())
            .await
            .unwrap_or_else(|_| panic!("no event within {patience:?}"))
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&frame[..end]) {
                    return Some(event);
                }
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    self.wire_bytes += chunk.len();
                    match &mut self.gunzip {
                        // Flushed: what the chunk holds is decoded now, not at the next one.
                        Some(gunzip) => {
                            gunzip
                                .write_all(&chunk)
                                .and_then(|()| gunzip.flush())
                                .expect("a valid gzip stream");
                            self.buffer.append(gunzip.get_mut());
                        }
                        None => self.buffer.extend_from_slice(&chunk),
                    }
                }
                Ok(None) => {
                    if let Some(gunzip) = &mut self.gunzip {
                        self.gzip_checked = gunzip.try_finish().is_ok();
                    }
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    fn parse(&mut self, frame: &[u8]) -> Option<Event> {
        let text = std::str::from_utf8(frame).expect("UTF-8 frames");
        let (mut id, mut event, mut data) = (None, "message".to_owned(), None);
        for line in text.lines() {
            if line.starts_with(':') {
                self.heartbeats += 1;
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("event: ") {
                value.clone_into(&mut event);
            } else if let Some(value) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(value).expect("JSON data"));
            } else if let Some(value) = line.strip_prefix("retry: ") {
                self.retry_ms = Some(value.parse().expect("a number"));
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        let data = data?;
        crate::contract::assert_sse(&event, &data);
        if id.is_some() {
            self.last_event_id.clone_from(&id);
        }
        Some(Event { id, event, data })
    }
}
