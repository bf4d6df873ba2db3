//! The hub: one [`Stream`] per simulator that has clients, each fed by one feed task and read
//! by any number of [`Subscription`]s.
//!
//! Layout: [`settings`](HubSettings); `registry` (streams by key); `stream` (a stream's books
//! and state) over `window` (the pure window and cursor logic); `client` (a subscription's
//! reads, conflation); `feed` (the task that follows the upstream, with `coalesce` for
//! wake-ups and `linger` for idle streams); `lanes` (clients at the head, whose sockets
//! the stream writes to itself) with `writers` (its writer tasks, one per core); `backfill` (fetches just before the window). The
//! hub drives the [`Upstream`] (the gRPC source); nothing below calls back up into the hub.
//!
//! A stream is created by its first client and dropped by its feed once it has had no client
//! for `linger` (so that a client that reconnects soon still finds the window it resumes
//! from).

mod backfill;
mod client;
mod coalesce;
mod feed;
mod lanes;
mod linger;
mod registry;
mod settings;
mod stream;
mod window;
mod writers;

use std::sync::Arc;

pub use client::{Delivery, Start, Subscription};
pub(crate) use lanes::Lane;
pub use settings::HubSettings;
/// Streams and events for the unit tests of other modules (the pusher's).
#[cfg(test)]
pub(crate) use stream::tests as testing;
pub use stream::{Stream, UpstreamState};

use crate::upstream::Upstream;
use registry::Registry;

/// Every stream of this streamer.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    streams: Arc<Registry>,
    upstream: Upstream,
    settings: HubSettings,
}

impl Hub {
    /// A hub whose streams are fed by `upstream`.
    pub fn new(upstream: Upstream, settings: HubSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                streams: Arc::new(Registry::default()),
                upstream,
                settings,
            }),
        }
    }

    /// Attaches a client to the stream of simulator `key` (its id at the backend), starting the
    /// stream's feed if it has none.
    pub fn subscribe(&self, key: &str, start: Start) -> Subscription {
        self.subscribe_at(&self.inner.upstream, key, start)
    }

    /// [`subscribe`](Self::subscribe), the stream fed from the simulator server at `address`
    /// (`None`: the static server). A stream already fed keeps its upstream.
    ///
    /// # Errors
    /// The address does not make a valid endpoint.
    pub fn subscribe_on(
        &self,
        address: Option<&str>,
        key: &str,
        start: Start,
    ) -> Result<Subscription, tonic::transport::Error> {
        let upstream = self.inner.upstream.on(address)?;
        Ok(self.subscribe_at(&upstream, key, start))
    }

    fn subscribe_at(&self, upstream: &Upstream, key: &str, start: Start) -> Subscription {
        let inner = &self.inner;
        // Attached under the registry's lock, so the feed's "no clients, remove" check (also
        // under it) never drops a stream a client is joining.
        let (stream, created, subscription) = inner.streams.attach(
            key,
            || Stream::new(key.to_owned(), inner.settings.clone(), upstream.clone()),
            |stream| Subscription::new(Arc::clone(stream), start),
        );
        if created {
            tokio::spawn(feed::run(
                upstream.clone(),
                Arc::clone(&inner.streams),
                stream,
            ));
        }
        subscription
    }

    /// Every stream now.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.inner.streams.all()
    }

    /// Wakes every client of every stream, parked ones included, so that each looks at why
    /// (the drain).
    pub(crate) fn wake_all(&self) {
        for stream in self.inner.streams.all() {
            stream.release();
        }
    }
}

#[cfg(test)]
mod gzip_tests;
#[cfg(test)]
mod lanes_tests;
