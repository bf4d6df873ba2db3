//! The SSE half of a run: open a ticket's URL as EventSource would, then read its events.

use futures_util::StreamExt as _;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use sse_stream::SseStream;
use url::Url;

use crate::api::{self, problem};
use crate::client::HttpClient;
use crate::error::{StepError, shown};
use crate::sequence::Sequence;

/// An open event stream ([`open`]).
pub struct Events {
    url: Url,
    stream: SseStream<Incoming>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("url", &shown(&self.url))
            .finish_non_exhaustive()
    }
}

/// Opens `url` (`Accept: text/event-stream`): a 200 with that media type. Returns the stream
/// and its content type.
pub async fn open(http: &HttpClient, url: &Url) -> Result<(Events, String), StepError> {
    let headers = [
        (ACCEPT, "text/event-stream".to_owned()),
        (CACHE_CONTROL, "no-cache".to_owned()),
    ];
    let response = api::send(http, &Method::GET, url, &headers, None).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned();
    if status != StatusCode::OK {
        let body = api::body(response, &Method::GET, url).await?;
        return Err(StepError::Status {
            method: "GET",
            url: shown(url),
            status: status.as_u16(),
            detail: problem(&body),
        });
    }
    if !content_type.starts_with("text/event-stream") {
        return Err(StepError::Answer {
            method: "GET",
            url: shown(url),
            reason: format!("content type {content_type}, not text/event-stream"),
        });
    }
    let stream = SseStream::new(response.into_body());
    Ok((
        Events {
            url: url.clone(),
            stream,
        },
        format!("{} {content_type}", status.as_u16()),
    ))
}

/// One event of a stream: its type, its id if sequenced, and its data.
#[derive(Debug, Clone)]
pub struct Event {
    /// `event:` (`message` when absent).
    pub kind: String,
    /// `id:`, on sequenced events.
    pub id: Option<String>,
    /// `data:`, parsed.
    pub data: Value,
}

impl Events {
    /// The next event with data (`retry:` alone and keep-alive comments skipped); `None` when
    /// the server ended the response.
    ///
    /// # Errors
    /// The connection failed, or an event's data is not JSON.
    pub async fn next(&mut self) -> Result<Option<Event>, StepError> {
        loop {
            let event = match self.stream.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => return Err(StepError::unreachable("GET", &self.url, &e)),
                None => return Ok(None),
            };
            let Some(text) = event.data else { continue };
            let kind = event.event.unwrap_or_else(|| "message".to_owned());
            let data: Value = serde_json::from_str(&text).map_err(|e| StepError::Answer {
                method: "GET",
                url: shown(&self.url),
                reason: format!("the data of event {kind} is not JSON: {e}"),
            })?;
            return Ok(Some(Event {
                kind,
                id: event.id,
                data,
            }));
        }
    }
}

/// Reads events into `sequence` until it has a snapshot and `count` events after it.
pub async fn read(
    events: &mut Events,
    sequence: &mut Sequence,
    count: usize,
) -> Result<(), StepError> {
    while sequence.snapshot().is_none() || sequence.counts().events() < count {
        let Some(event) = events.next().await? else {
            return Err(StepError::Check(format!(
                "the stream ended after {} ({})",
                sequence,
                shown(&events.url)
            )));
        };
        sequence.apply(&event.kind, event.id.as_deref(), &event.data)?;
    }
    Ok(())
}
