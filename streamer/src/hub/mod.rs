//! The hub: one [`Stream`] per simulator that has clients, each fed by one upstream task and
//! read by any number of [`Subscription`]s.
//!
//! A stream is created by its first client and dropped by its upstream task once it has had no
//! client for `linger` (so that a client that reconnects soon still finds the window it resumes
//! from).

mod client;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use client::{Delivery, Start, Subscription};
pub use stream::{Stream, UpstreamState};

use crate::upstream::Upstream;

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
    /// The hub settings of the service's configuration.
    pub fn from_config(settings: &session_core::config::Settings) -> Self {
        let streamer = &settings.streamer;
        Self {
            window_events: settings.streaming.replay_window_events,
            window_bytes: streamer.window_bytes,
            client_queue_bytes: streamer.client_queue_bytes,
            max_chunk_bytes: 256 * 1024,
            conflation_period: Duration::from_secs(streamer.conflation_period_secs),
            max_conflations: streamer.max_conflations,
            retry_ms: streamer.retry_ms,
            linger: Duration::from_secs(streamer.linger_secs),
        }
    }
}

/// Every stream of this streamer.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    upstream: Upstream,
    settings: HubSettings,
}

impl Hub {
    /// A hub whose streams are fed by `upstream`.
    pub fn new(upstream: Upstream, settings: HubSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                streams: Mutex::new(HashMap::new()),
                upstream,
                settings,
            }),
        }
    }

    fn streams_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches a client to the stream of simulator `key` (its id at the backend), starting the
    /// stream's upstream if it has none.
    pub fn subscribe(&self, key: &str, start: Start) -> Subscription {
        let mut streams = self.streams_lock();
        let stream = if let Some(stream) = streams.get(key) {
            Arc::clone(stream)
        } else {
            let stream = Arc::new(Stream::new(
                key.to_owned(),
                self.inner.settings.clone(),
                self.inner.upstream.clone(),
            ));
            streams.insert(key.to_owned(), Arc::clone(&stream));
            crate::metrics::streams(streams.len());
            tokio::spawn(
                self.inner
                    .upstream
                    .clone()
                    .run(self.clone(), Arc::clone(&stream)),
            );
            stream
        };
        // Attached under the registry's lock, so the upstream's "no clients, remove" check
        // (also under it) never drops a stream a client is joining.
        Subscription::new(stream, start)
    }

    /// Removes `stream` if it still has no client; `true` if removed.
    pub(crate) fn remove_if_idle(&self, stream: &Arc<Stream>) -> bool {
        let mut streams = self.streams_lock();
        if stream.clients() > 0 {
            return false;
        }
        if streams
            .get(&stream.key)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(&stream.key);
        }
        crate::metrics::streams(streams.len());
        true
    }

    /// Every stream now.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams_lock().values().cloned().collect()
    }

    /// How long a stream without clients is kept.
    pub(crate) fn linger(&self) -> Duration {
        self.inner.settings.linger
    }
}
