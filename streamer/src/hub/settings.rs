//! How much the hub keeps, how it treats slow clients, and how long an idle stream lingers.

use std::time::Duration;

/// How much the hub keeps and how it treats slow clients.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Most events the window of a stream keeps for resuming clients.
    pub window_events: u64,
    /// Most bytes the window of a stream keeps.
    pub window_bytes: u64,
    /// Most bytes a client may be behind the head before it is conflated to a snapshot.
    pub client_queue_bytes: u64,
    /// Most bytes handed to a client's connection at once.
    pub max_chunk_bytes: usize,
    /// Conflations counted within this period…
    pub conflation_period: Duration,
    /// …above this many, the client is told to reconnect and closed.
    pub max_conflations: u32,
    /// What clients are told to wait before reconnecting.
    pub retry_ms: u64,
    /// How long a stream without clients is kept.
    pub linger: Duration,
}

impl HubSettings {
    /// The hub settings of the service's and the streamer's configuration.
    pub fn from_config(
        settings: &session_core::config::Settings,
        streamer: &crate::settings::StreamerSettings,
    ) -> Self {
        Self {
            window_events: settings.streaming.replay_window_events,
            window_bytes: streamer.window_bytes,
            client_queue_bytes: streamer.client_queue_bytes,
            max_chunk_bytes: 256 * 1024,
            conflation_period: streamer.conflation_period_secs,
            max_conflations: streamer.max_conflations,
            retry_ms: streamer.retry_ms,
            linger: streamer.linger_secs,
        }
    }
}
