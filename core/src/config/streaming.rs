//! `streaming`: the addresses clients are given, and what the streamer retains for them.

use std::time::Duration;

use serde::Deserialize;

use super::duration::{check_range, whole_secs};
use super::{ConfigError, invalid};

/// The addresses clients are given to connect to, and what the streamer retains for them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingSettings {
    /// Base URL of the streamer's SSE endpoint (`https://stream.example.com`).
    pub sse_url: String,
    /// URL of the API Gateway WebSocket API (`wss://ws.example.com/prod`).
    pub ws_url: String,
    /// Events the streamer keeps per stream for resuming clients; a client further behind gets
    /// a snapshot.
    pub replay_window_events: u64,
    /// How long after its ticket's expiry an SSE stream URL may still be resumed (`EventSource`
    /// reconnects to the URL it was given): the longest a leaked stream URL can be continued.
    /// Past it, the browser's reconnect is refused (`chain_ended`) and the page asks the
    /// reconnect endpoint for a fresh ticket. The verifiers must keep a retired ticket key at
    /// least this long plus the ticket's life.
    #[serde(deserialize_with = "super::duration::secs")]
    pub resume_chain_secs: Duration,
}

impl Default for StreamingSettings {
    fn default() -> Self {
        Self {
            sse_url: "http://127.0.0.1:8090".to_owned(),
            ws_url: "ws://127.0.0.1:8091".to_owned(),
            replay_window_events: 10_000,
            resume_chain_secs: Duration::from_secs(2 * 3600),
        }
    }
}

impl StreamingSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.sse_url.starts_with("http://") || self.sse_url.starts_with("https://")) {
            return invalid("streaming.sse_url", "must be an http:// or https:// URL");
        }
        if !(self.ws_url.starts_with("ws://") || self.ws_url.starts_with("wss://")) {
            return invalid("streaming.ws_url", "must be a ws:// or wss:// URL");
        }
        check_range(
            "streaming.resume_chain_secs",
            whole_secs(self.resume_chain_secs),
            1..=86_400,
        )?;
        if self.replay_window_events == 0 {
            return invalid("streaming.replay_window_events", "must be at least 1");
        }
        Ok(())
    }
}
