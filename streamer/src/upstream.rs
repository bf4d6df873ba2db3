//! The upstream of a stream: one `MarketData.Subscribe` call per simulator, shared by all of
//! the stream's clients, resumed from the last position whenever it breaks.
//!
//! Breaks are retried with exponential backoff and full jitter; a simulator service that keeps
//! failing trips the breaker shared by every stream of that endpoint, and clients are told the
//! stream is degraded instead of being left waiting in silence. A stall (no message for
//! `idle_timeout`) counts as a break: the simulator emits at least one event per second while
//! it runs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use session_core::backend::channel;
use session_core::config::BackendTlsSettings;
use session_core::domain::EventId;
use session_core::resilience::{CircuitBreaker, FullJitter, Permit, RetryPolicy};
use session_core::telemetry::START_TRACEPARENT;
use session_proto::simulator::v1::market_data_client::MarketDataClient;
use session_proto::simulator::v1::{MarketEvent, StreamPosition, SubscribeRequest, market_event};
use tonic::Code;
use tracing::{Instrument as _, info, warn};

use crate::hub::{Hub, Stream, UpstreamState};
use crate::metrics;
use crate::wire;

/// Most events published to the hub as one batch.
const MAX_BATCH: usize = 1024;

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
    /// The upstream settings of the service's configuration.
    pub fn from_config(settings: &session_core::config::Settings) -> Self {
        let streamer = &settings.streamer;
        Self {
            url: settings.backends.simulator_url.clone(),
            tls: BackendTlsSettings::clone(&settings.backends.tls),
            connect_timeout: settings.backends.deadline(),
            idle_timeout: Duration::from_millis(streamer.upstream_idle_timeout_ms),
            backoff: RetryPolicy {
                max_retries: u32::MAX,
                base: Duration::from_millis(100),
                cap: Duration::from_secs(5),
            },
            breaker_threshold: streamer.upstream_breaker_threshold,
            breaker_cool_down: Duration::from_secs(streamer.upstream_breaker_cool_down_secs),
            coalesce: Duration::from_millis(streamer.coalesce_ms),
        }
    }
}

/// Subscribes streams to one simulator service.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: MarketDataClient<channel::TracedChannel>,
    breaker: Arc<CircuitBreaker>,
    settings: Arc<UpstreamSettings>,
}

/// Why a subscription ended.
enum End {
    /// Broken: resume after a backoff.
    Broken(String),
    /// The simulator's stream is over for good.
    Over(String),
    /// No client for the linger time.
    Idle,
}

impl Upstream {
    /// An upstream to the simulator service of `settings` (connects lazily).
    ///
    /// # Errors
    /// The URL is not a valid endpoint.
    pub fn new(settings: UpstreamSettings) -> Result<Self, tonic::transport::Error> {
        let channel = channel::endpoint(&settings.url, &settings.tls)?
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
            settings: Arc::new(settings),
        })
    }

    /// The breaker's state, for health checks.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Feeds `stream` until it has had no client for the hub's linger time, then removes it.
    pub(crate) async fn run(self, hub: Hub, stream: Arc<Stream>) {
        let mut backoff = self.backoff();
        loop {
            let permit = match self.breaker.permit() {
                Ok(permit) => permit,
                Err(open) => {
                    metrics::circuit_open(true);
                    degrade(&stream, format!("simulator service unavailable: {open}"));
                    if self
                        .wait_or_idle(
                            &hub,
                            &stream,
                            open.retry_after.max(Duration::from_millis(50)),
                        )
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            metrics::circuit_open(false);
            // A root span per subscription (one feeds every client of the stream, so no
            // client's request is its parent), linked to the simulator's start when the
            // simulator says which trace that was. Not per event.
            let span = tracing::info_span!(
                parent: None,
                "upstream subscription",
                component = "streamer",
                simulator_id = %stream.key,
            );
            let end = self
                .follow(&hub, &stream, &mut backoff, &permit)
                .instrument(span)
                .await;
            // Whatever was published and not yet announced goes out now.
            stream.wake();
            match end {
                // An idle stream says nothing of the simulator service: the permit, dropped
                // without an outcome, frees the breaker's probe slot if it held it.
                End::Idle => return,
                End::Over(reason) => {
                    // The simulator's stream ended normally: its service answered.
                    permit.record_success();
                    drop(permit);
                    info!(simulator = %stream.key, %reason, "upstream over");
                    stream.set_upstream(
                        UpstreamState::Ended(reason.clone()),
                        Some(wire::stream_status("ended", &reason)),
                    );
                    while !self.wait_or_idle(&hub, &stream, hub.linger()).await {}
                    return;
                }
                End::Broken(reason) => {
                    permit.record_failure();
                    drop(permit);
                    metrics::upstream_reconnect();
                    stream.count_break();
                    warn!(simulator = %stream.key, %reason, "upstream broken; resuming");
                    degrade(&stream, reason);
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    if self.wait_or_idle(&hub, &stream, delay).await {
                        return;
                    }
                }
            }
        }
    }

    fn backoff(&self) -> FullJitter {
        self.settings.backoff.backoff()
    }

    /// Sleeps `delay`; `true` (and the stream removed) if the stream has been idle for the
    /// linger time meanwhile.
    async fn wait_or_idle(&self, hub: &Hub, stream: &Arc<Stream>, delay: Duration) -> bool {
        tokio::time::sleep(delay).await;
        self.idle_for_linger(hub, stream).await
    }

    /// `true` (and the stream removed) if the stream has had no client for the linger time.
    async fn idle_for_linger(&self, hub: &Hub, stream: &Arc<Stream>) -> bool {
        if stream.clients() > 0 {
            return false;
        }
        tokio::time::sleep(hub.linger()).await;
        stream.clients() == 0 && hub.remove_if_idle(stream)
    }

    /// One subscription, from the stream's head, until it ends; its first events (or a "not
    /// found") are recorded as a success on `permit`, the caller records how it ended.
    async fn follow(
        &self,
        hub: &Hub,
        stream: &Arc<Stream>,
        backoff: &mut FullJitter,
        permit: &Permit<'_>,
    ) -> End {
        let head = stream.resume_position();
        let request = SubscribeRequest {
            simulator_id: stream.key.clone(),
            resume_from: head.map(|h| StreamPosition {
                epoch: h.epoch,
                sequence: h.sequence,
            }),
        };
        let mut events = match self.client.clone().subscribe(request).await {
            Ok(response) => {
                if let Some(start) = response
                    .metadata()
                    .get(START_TRACEPARENT)
                    .and_then(|v| v.to_str().ok())
                {
                    session_core::telemetry::link(&tracing::Span::current(), start);
                }
                response.into_inner()
            }
            Err(status) if status.code() == Code::NotFound => {
                permit.record_success();
                return End::Over(format!("simulator not found: {}", status.message()));
            }
            Err(status) => return End::Broken(format!("subscribe failed: {status}")),
        };
        let mut head = head;
        let mut wake = Coalescer::new(self.settings.coalesce);
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        let mut idle_since = None;
        let mut batch = Vec::with_capacity(64);
        // Moved on by every message only: the idle checks in between must not restart it.
        let mut deadline = tokio::time::Instant::now() + self.settings.idle_timeout;
        // The end of the stream, when it came right behind a batch: handled after the batch.
        let mut held = None;
        loop {
            let message = if let Some(end) = held.take() {
                Ok(end)
            } else {
                tokio::select! {
                    message = tokio::time::timeout_at(deadline, events.message()) => message,
                    () = wake.due(), if wake.pending() => {
                        wake.fire(stream);
                        continue;
                    }
                    _ = idle_check.tick() => {
                        // Reading goes on while the stream lingers: a client that comes back
                        // meanwhile finds it live.
                        if stream.clients() > 0 {
                            idle_since = None;
                        } else if idle_since.get_or_insert_with(tokio::time::Instant::now).elapsed()
                            >= hub.linger()
                            && hub.remove_if_idle(stream)
                        {
                            return End::Idle;
                        }
                        continue;
                    }
                }
            };
            let first = match message {
                Err(_) => {
                    return End::Broken(format!(
                        "no event for {:?}: stalled",
                        self.settings.idle_timeout
                    ));
                }
                Ok(Err(status)) => return End::Broken(format!("stream failed: {status}")),
                Ok(Ok(None)) => return End::Over("the simulator stopped".to_owned()),
                Ok(Ok(Some(event))) => event,
            };
            deadline = tokio::time::Instant::now() + self.settings.idle_timeout;
            // Whatever else has already arrived goes out in the same batch.
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match events.message().now_or_never() {
                    Some(Ok(Some(event))) => batch.push(event),
                    // The stream's error or end is only reported once: keep it.
                    Some(end) => {
                        held = Some(end);
                        break;
                    }
                    None => break,
                }
            }
            if let Err(gap) = check_continuity(head, &batch) {
                // Never publish a gap: start over from a fresh snapshot (clients get a reset).
                stream.forget_position();
                batch.clear();
                return End::Broken(gap);
            }
            head = batch.last().map(|e| EventId {
                epoch: e.epoch,
                sequence: e.sequence,
            });
            metrics::upstream_events(batch.len());
            stream.publish(&batch);
            batch.clear();
            wake.published(stream);
            if !matches!(stream.upstream(), UpstreamState::Live) {
                permit.record_success();
                *backoff = self.backoff();
                stream.set_upstream(
                    UpstreamState::Live,
                    Some(wire::stream_status("live", "receiving events")),
                );
            }
        }
    }
}

/// Longest a backfill may take; the clients waiting for it get a reset after that.
const BACKFILL_DEADLINE: Duration = Duration::from_secs(3);

impl Upstream {
    /// Fetches the events after `from` up to the window's first from the simulator's own
    /// window, with a subscription of its own, and hands them to the stream (see
    /// [`Stream::finish_backfill`]).
    pub(crate) async fn backfill(self, stream: Arc<Stream>, generation: u64, from: EventId) {
        let scales = stream.scales();
        let fetched = tokio::time::timeout(
            BACKFILL_DEADLINE,
            self.fetch_after(&stream, generation, from),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {BACKFILL_DEADLINE:?}")));
        stream.finish_backfill(generation, from.sequence, fetched, &scales);
    }

    async fn fetch_after(
        &self,
        stream: &Stream,
        generation: u64,
        from: EventId,
    ) -> Result<Vec<MarketEvent>, String> {
        let request = SubscribeRequest {
            simulator_id: stream.key.clone(),
            resume_from: Some(StreamPosition {
                epoch: from.epoch,
                sequence: from.sequence,
            }),
        };
        let mut events = self
            .client
            .clone()
            .subscribe(request)
            .await
            .map_err(|status| format!("subscribe failed: {status}"))?
            .into_inner();
        let mut fetched: Vec<MarketEvent> = Vec::new();
        loop {
            let target = stream
                .backfill_target(generation)
                .ok_or("the stream was reset")?;
            let next = fetched.last().map_or(from.sequence, |e| e.sequence) + 1;
            if next >= target {
                return Ok(fetched);
            }
            let event = events
                .message()
                .await
                .map_err(|status| format!("stream failed: {status}"))?
                .ok_or("the simulator's stream ended")?;
            // A snapshot here means the simulator no longer holds those events.
            if matches!(event.kind, Some(market_event::Kind::Snapshot(_))) {
                return Err("no longer in the simulator's window".to_owned());
            }
            let head = fetched.last().map_or(from, |e| EventId {
                epoch: e.epoch,
                sequence: e.sequence,
            });
            check_continuity(Some(head), std::slice::from_ref(&event))?;
            fetched.push(event);
        }
    }
}

/// Coalesces the wake-ups of a stream's clients: the first publish after a quiet spell wakes
/// them at once; publishes that follow within `window` wake them once, at its end. A busy
/// stream so hands each client several events per write (fewer syscalls on both sides) for at
/// most `window` of added latency; a quiet one adds none.
#[derive(Debug)]
struct Coalescer {
    window: Duration,
    last: tokio::time::Instant,
    due: Option<tokio::time::Instant>,
}

impl Coalescer {
    fn new(window: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            window,
            last: now.checked_sub(window).unwrap_or(now),
            due: None,
        }
    }

    fn published(&mut self, stream: &Stream) {
        if self.due.is_some() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= self.last + self.window {
            self.last = now;
            stream.wake();
        } else {
            self.due = Some(self.last + self.window);
        }
    }

    fn pending(&self) -> bool {
        self.due.is_some()
    }

    async fn due(&self) {
        if let Some(due) = self.due {
            tokio::time::sleep_until(due).await;
        }
    }

    fn fire(&mut self, stream: &Stream) {
        self.due = None;
        self.last = tokio::time::Instant::now();
        stream.wake();
    }
}

fn degrade(stream: &Stream, reason: String) {
    let notice = wire::stream_status("degraded", &reason);
    stream.set_upstream(UpstreamState::Degraded(reason), Some(notice));
}

/// Every non-snapshot event must continue the sequence of the one before it.
fn check_continuity(mut head: Option<EventId>, batch: &[MarketEvent]) -> Result<(), String> {
    for event in batch {
        let is_snapshot = matches!(event.kind, Some(market_event::Kind::Snapshot(_)));
        match head {
            _ if is_snapshot => {}
            Some(h) if h.epoch == event.epoch && h.sequence + 1 == event.sequence => {}
            _ => {
                return Err(format!(
                    "gap in the upstream: {} after {}",
                    EventId {
                        epoch: event.epoch,
                        sequence: event.sequence
                    },
                    head.map_or_else(|| "nothing".to_owned(), |h| h.to_string())
                ));
            }
        }
        head = Some(EventId {
            epoch: event.epoch,
            sequence: event.sequence,
        });
    }
    Ok(())
}
