//! The upstream: the simulator service as a gRPC source of market events, and nothing else. It
//! opens `MarketData.Subscribe` calls (one per stream, and one per backfill), fetches the
//! events after a position, checks their continuity, and holds the breaker shared by every
//! stream of that endpoint. It knows nothing of the hub: the hub's feed (`hub/feed.rs`) drives
//! it, decides when to resubscribe and when a stream lingers or goes.
//!
//! With discovered simulator servers, [`Upstream::on`] gives the upstream of the server that
//! hosts a simulator: one channel and one breaker per server address, shared by every stream
//! on that server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use session_core::backend::channel;
use session_core::config::BackendTlsSettings;
use session_core::domain::EventId;
use session_core::resilience::{CircuitBreaker, FullJitter, RetryPolicy};
use session_core::telemetry::START_TRACEPARENT;
use session_proto::simulator::v1::market_data_client::MarketDataClient;
use session_proto::simulator::v1::{MarketEvent, StreamPosition, SubscribeRequest, market_event};
use tonic::{Status, Streaming};

/// How the upstream connects and retries.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The simulator service.
    pub url: String,
    /// TLS to it (`backends.tls`), used when `url` is `https://`.
    pub tls: BackendTlsSettings,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// A stream silent for this long is taken as broken.
    pub idle_timeout: Duration,
    /// Backoff between resubscriptions.
    pub backoff: RetryPolicy,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses.
    pub breaker_cool_down: Duration,
    /// Publishes within this window wake clients once (see `Coalescer`).
    pub coalesce: Duration,
}

impl UpstreamSettings {
    /// The upstream settings of the service's and the streamer's configuration.
    pub fn from_config(
        settings: &session_core::config::Settings,
        streamer: &crate::settings::StreamerSettings,
    ) -> Self {
        Self {
            url: settings.backends.simulator_url.clone(),
            tls: BackendTlsSettings::clone(&settings.backends.tls),
            connect_timeout: settings.backends.deadline_ms,
            idle_timeout: streamer.upstream_idle_timeout_ms,
            backoff: RetryPolicy {
                max_retries: u32::MAX,
                base: Duration::from_millis(100),
                cap: Duration::from_secs(5),
            },
            breaker_threshold: streamer.upstream_breaker_threshold,
            breaker_cool_down: streamer.upstream_breaker_cool_down_secs,
            coalesce: streamer.coalesce_ms,
        }
    }
}

/// Subscribes streams to one simulator service.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: MarketDataClient<channel::TracedChannel>,
    breaker: Arc<CircuitBreaker>,
    settings: Arc<UpstreamSettings>,
    /// The upstreams of discovered servers, by address, built on first use.
    servers: Arc<Mutex<HashMap<String, Upstream>>>,
}

/// Why a fetch of the events after a position (a backfill) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The call could not be opened.
    #[error("subscribe failed: {0}")]
    Subscribe(#[source] Status),
    /// The call broke.
    #[error("stream failed: {0}")]
    Stream(#[source] Status),
    /// The simulator's stream ended before the target.
    #[error("the simulator's stream ended")]
    Ended,
    /// The caller no longer wants the events (its stream was reset).
    #[error("the stream was reset")]
    Abandoned,
    /// The simulator no longer holds the events (it answered with a snapshot).
    #[error("no longer in the simulator's window")]
    Gone,
    /// The events do not follow each other.
    #[error(transparent)]
    Gap(#[from] Gap),
}

/// Events that do not continue the sequence before them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gap in the upstream: {found} after {after}")]
pub(crate) struct Gap {
    /// The position that arrived.
    pub found: EventId,
    /// The position before it (`nothing` when none).
    pub after: String,
}

impl Upstream {
    /// An upstream to the simulator service of `settings` (connects lazily).
    ///
    /// # Errors
    /// The URL is not a valid endpoint.
    pub fn new(settings: UpstreamSettings) -> Result<Self, tonic::transport::Error> {
        let url = settings.url.clone();
        Self::at(&url, Arc::new(settings), Arc::default())
    }

    /// The upstream of the simulator server at `address` (`host:port`, as discovery names
    /// it), or this one for `None` (the static server, `backends.simulator_url`).
    ///
    /// # Errors
    /// The address does not make a valid endpoint.
    pub fn on(&self, address: Option<&str>) -> Result<Self, tonic::transport::Error> {
        let Some(address) = address else {
            return Ok(self.clone());
        };
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(upstream) = servers.get(address) {
            return Ok(upstream.clone());
        }
        let scheme = if self.settings.url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let upstream = Self::at(
            &format!("{scheme}://{address}"),
            Arc::clone(&self.settings),
            Arc::clone(&self.servers),
        )?;
        servers.insert(address.to_owned(), upstream.clone());
        Ok(upstream)
    }

    fn at(
        url: &str,
        settings: Arc<UpstreamSettings>,
        servers: Arc<Mutex<HashMap<String, Upstream>>>,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = channel::endpoint(url, &settings.tls)?
            .connect_timeout(settings.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Self {
            client: MarketDataClient::new(channel::traced(channel)),
            breaker: Arc::new(CircuitBreaker::new(
                settings.breaker_threshold,
                settings.breaker_cool_down,
            )),
            settings,
            servers,
        })
    }

    /// The breaker's state, for health checks.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// How it connects and retries.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// A fresh backoff between resubscriptions.
    pub(crate) fn backoff(&self) -> FullJitter {
        self.settings.backoff.backoff()
    }

    /// Opens the stream of simulator `key` after `from` (from a fresh snapshot when `None`),
    /// and links the current span to the simulator's start when the simulator names it.
    ///
    /// # Errors
    /// The call was refused or failed (`NotFound`: no such simulator).
    pub(crate) async fn subscribe(
        &self,
        key: &str,
        from: Option<EventId>,
    ) -> Result<Streaming<MarketEvent>, Status> {
        let request = SubscribeRequest {
            simulator_id: key.to_owned(),
            resume_from: from.map(|h| StreamPosition {
                epoch: h.epoch,
                sequence: h.sequence,
            }),
        };
        let response = self.client.clone().subscribe(request).await?;
        if let Some(start) = response
            .metadata()
            .get(START_TRACEPARENT)
            .and_then(|v| v.to_str().ok())
        {
            session_core::telemetry::link(&tracing::Span::current(), start);
        }
        Ok(response.into_inner())
    }

    /// Fetches the events of simulator `key` after `from`, with a subscription of its own, up
    /// to (not including) the sequence `target` answers, asked before each event; `target`
    /// answering `None` abandons the fetch.
    ///
    /// # Errors
    /// The call failed or ended early, the events are no longer held, or they have a gap.
    pub(crate) async fn fetch_after(
        &self,
        key: &str,
        from: EventId,
        mut target: impl FnMut() -> Option<u64>,
    ) -> Result<Vec<MarketEvent>, FetchError> {
        let mut events = self
            .subscribe(key, Some(from))
            .await
            .map_err(FetchError::Subscribe)?;
        let mut fetched: Vec<MarketEvent> = Vec::new();
        loop {
            let target = target().ok_or(FetchError::Abandoned)?;
            let next = fetched.last().map_or(from.sequence, |e| e.sequence) + 1;
            if next >= target {
                return Ok(fetched);
            }
            let event = events
                .message()
                .await
                .map_err(FetchError::Stream)?
                .ok_or(FetchError::Ended)?;
            // A snapshot here means the simulator no longer holds those events.
            if matches!(event.kind, Some(market_event::Kind::Snapshot(_))) {
                return Err(FetchError::Gone);
            }
            let head = fetched.last().map_or(from, position);
            check_continuity(Some(head), std::slice::from_ref(&event))?;
            fetched.push(event);
        }
    }
}

/// The position of `event`.
pub(crate) fn position(event: &MarketEvent) -> EventId {
    EventId {
        epoch: event.epoch,
        sequence: event.sequence,
    }
}

/// Every non-snapshot event must continue the sequence of the one before it.
///
/// # Errors
/// The first event that does not.
pub(crate) fn check_continuity(
    mut head: Option<EventId>,
    batch: &[MarketEvent],
) -> Result<(), Gap> {
    for event in batch {
        let is_snapshot = matches!(event.kind, Some(market_event::Kind::Snapshot(_)));
        match head {
            _ if is_snapshot => {}
            Some(h) if h.epoch == event.epoch && h.sequence + 1 == event.sequence => {}
            _ => {
                return Err(Gap {
                    found: position(event),
                    after: head.map_or_else(|| "nothing".to_owned(), |h| h.to_string()),
                });
            }
        }
        head = Some(position(event));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use session_proto::simulator::v1::BookSnapshot;

    use super::*;

    fn event(epoch: u64, sequence: u64, snapshot: bool) -> MarketEvent {
        MarketEvent {
            epoch,
            sequence,
            kind: snapshot.then(|| market_event::Kind::Snapshot(BookSnapshot::default())),
            ..MarketEvent::default()
        }
    }

    /// The position `epoch`-`sequence` (none at sequence 0).
    fn at(epoch: u64, sequence: u64) -> Option<EventId> {
        (sequence > 0).then_some(EventId { epoch, sequence })
    }

    #[tokio::test]
    async fn each_server_gets_one_upstream_with_a_breaker_of_its_own() {
        let settings = UpstreamSettings::from_config(
            &session_core::config::Settings::default(),
            &crate::settings::StreamerSettings::default(),
        );
        let upstream = Upstream::new(settings).unwrap();

        let a = upstream.on(Some("127.0.0.1:50061")).unwrap();
        let again = upstream.on(Some("127.0.0.1:50061")).unwrap();
        let b = upstream.on(Some("127.0.0.1:50062")).unwrap();

        assert!(Arc::ptr_eq(&a.breaker, &again.breaker));
        assert!(!Arc::ptr_eq(&a.breaker, &b.breaker));
        assert!(!Arc::ptr_eq(&a.breaker, &upstream.breaker));
        let static_one = upstream.on(None).unwrap();
        assert!(Arc::ptr_eq(&static_one.breaker, &upstream.breaker));
    }

    #[test]
    fn events_that_continue_the_sequence_pass() {
        let batch = [event(1, 11, false), event(1, 12, false)];

        assert_eq!(check_continuity(at(1, 10), &batch), Ok(()));
    }

    #[test]
    fn a_gap_names_the_event_and_the_position_before_it() {
        let batch = [event(1, 11, false), event(1, 13, false)];

        let gap = check_continuity(at(1, 10), &batch).unwrap_err();

        assert_eq!(gap.to_string(), "gap in the upstream: 1-13 after 1-11");
    }

    #[test]
    fn a_snapshot_starts_the_sequence_over_even_in_another_epoch() {
        let batch = [event(2, 1, true), event(2, 2, false)];

        assert_eq!(check_continuity(at(1, 10), &batch), Ok(()));
    }

    #[test]
    fn an_event_of_another_epoch_without_a_snapshot_is_a_gap() {
        assert!(check_continuity(at(1, 10), &[event(2, 11, false)]).is_err());
        assert!(
            check_continuity(None, &[event(1, 1, false)]).is_err(),
            "nothing before it"
        );
    }
}
