//! One simulator's stream inside the hub: its current books and a bounded window of encoded
//! entries that every client reads from, each at its own cursor.
//!
//! Clients do not have queues of their own: a client's queue is the part of the shared window
//! between its cursor and the head, bounded in bytes. Publishing is therefore O(1) in the number
//! of clients (append, then one wake-up broadcast), and an event is encoded once however many
//! clients read it. The window and cursor logic itself is `window.rs` (pure); this module holds
//! it under the stream's lock with the books, the upstream's state and the snapshot cache.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use session_core::domain::EventId;
use session_proto::simulator::v1::{MarketEvent, market_event};
use tokio::sync::watch;

use super::lanes::Lanes;
use super::settings::HubSettings;
use super::window::{Batch, Window};
pub(crate) use super::window::{Cursor, Fill, Read};
use crate::book::Books;
use crate::upstream::Upstream;
use crate::wire::{self, Frame, SnapshotCause};

/// What the upstream of a stream is doing, as clients and health checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamState {
    /// Subscribing for the first time.
    Connecting,
    /// Receiving events.
    Live,
    /// Broken and being resumed, or refused by an open circuit; why.
    Degraded(String),
    /// The simulator's stream is over for good (it stopped, or is unknown); why.
    Ended(String),
}

/// A cached snapshot frame for one head position and cause.
#[derive(Debug)]
struct CachedSnapshot {
    generation: u64,
    next_index: u64,
    cause: SnapshotCause,
    frame: Frame,
}

#[derive(Debug)]
pub(crate) struct State {
    pub books: Books,
    /// Why the current generation started.
    pub reset_reason: &'static str,
    window: Window,
    last_emit_ns: i64,
    snapshots: Vec<CachedSnapshot>,
    pub upstream: UpstreamState,
    resubscribe_fresh: bool,
    /// The clients at the head that the stream's writers write to (`lanes.rs`).
    pub lanes: Lanes,
}

/// A stream of one simulator, shared by its clients and fed by its feed task (`feed.rs`).
#[derive(Debug)]
pub struct Stream {
    /// The simulator's id at the backend.
    pub key: String,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    clients: AtomicUsize,
    /// Breaks of its upstream so far, each followed by a resubscription: this stream's part of
    /// `streamer_upstream_reconnects_total`, whose series has no per-stream label.
    breaks: AtomicU64,
    settings: HubSettings,
    /// Where backfills come from.
    pub(crate) upstream: Upstream,
}

impl Stream {
    pub(crate) fn new(key: String, settings: HubSettings, upstream: Upstream) -> Self {
        Self {
            key,
            state: Mutex::new(State {
                books: Books::default(),
                reset_reason: "initial",
                window: Window::new(settings.window_events, settings.window_bytes),
                last_emit_ns: 0,
                snapshots: Vec::new(),
                upstream: UpstreamState::Connecting,
                resubscribe_fresh: false,
                lanes: Lanes::default(),
            }),
            changed: watch::Sender::new(0),
            clients: AtomicUsize::new(0),
            breaks: AtomicU64::new(0),
            settings,
            upstream,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting client.
    pub(crate) fn wake(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wakes every client, parked ones included, and parks none from now on (the drain).
    pub(crate) fn release(&self) {
        self.lock().lanes.release();
        self.wake();
    }

    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// Clients attached now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub(crate) fn add_client(&self) {
        self.clients.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove_client(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// The position of the newest event the stream holds.
    pub fn head(&self) -> Option<EventId> {
        self.lock().books.at
    }

    /// The upstream's state.
    pub fn upstream(&self) -> UpstreamState {
        self.lock().upstream.clone()
    }

    /// Breaks of its upstream so far (each followed by a resubscription).
    pub fn upstream_breaks(&self) -> u64 {
        self.breaks.load(Ordering::Relaxed)
    }

    pub(crate) fn count_break(&self) {
        self.breaks.fetch_add(1, Ordering::Relaxed);
    }

    /// The window's size: events, bytes.
    pub fn window_size(&self) -> (u64, u64) {
        self.lock().window.size()
    }

    /// Forgets the position, so that the next subscription starts from a fresh snapshot (the
    /// upstream saw a gap it cannot repair by resuming).
    pub(crate) fn forget_position(&self) {
        self.lock().resubscribe_fresh = true;
    }

    /// Where the next subscription resumes from (`None`: from a fresh snapshot).
    pub(crate) fn resume_position(&self) -> Option<EventId> {
        let mut state = self.lock();
        if std::mem::take(&mut state.resubscribe_fresh) {
            return None;
        }
        state.books.at
    }

    /// Applies and appends a run of events that continue the stream; clients see them at the
    /// next [`Stream::wake`] (the feed coalesces wake-ups). The first snapshot of
    /// the stream only sets the books; a later one (or an event of another epoch) is a reset.
    pub(crate) fn publish(&self, events: &[MarketEvent]) {
        let mut state = self.lock();
        let mut batch = Batch::default();
        for event in events {
            let Some(kind) = event.kind.as_ref() else {
                continue;
            };
            if let market_event::Kind::Snapshot(snapshot) = kind {
                state.window.push(std::mem::take(&mut batch));
                let reason = match state.books.at {
                    None => None,
                    Some(at) if at.epoch != event.epoch => Some("epoch_changed"),
                    Some(_) if snapshot.reset => Some("upstream_reset"),
                    Some(at) if at.sequence == event.sequence => None,
                    Some(_) => Some("upstream_reset"),
                };
                if let Some(reason) = reason {
                    state.reset(reason);
                }
                state.books.apply(event.epoch, event.sequence, kind);
                state.last_emit_ns = event.emit_time_unix_nanos;
                continue;
            }
            state.books.apply(event.epoch, event.sequence, kind);
            state.last_emit_ns = event.emit_time_unix_nanos;
            if let Some(frame) = wire::event(event, &state.books) {
                batch.add(event.sequence, &frame.sse, event.emit_time_unix_nanos);
            }
        }
        state.window.push(batch);
    }

    /// Publishes an out-of-band notice (a degraded or recovered upstream) and records the
    /// upstream's state.
    pub(crate) fn set_upstream(&self, upstream: UpstreamState, notice: Option<Frame>) {
        let mut state = self.lock();
        if state.upstream == upstream {
            return;
        }
        state.upstream = upstream;
        if let Some(notice) = notice {
            let head = state.books.at;
            state.window.push_notice(notice.sse, head);
        }
        drop(state);
        self.wake();
    }
}

/// Backfills: a client that resumes from just before the window (it was served by another
/// streamer, or this one's stream is younger than its position) is sent exactly the events it
/// missed, fetched from the simulator's own window, instead of a reset. The fetched events are
/// prepended to the window, so every client resuming from that stretch shares them.
impl Stream {
    /// The first sequence the window holds (a backfill's fetch stops before it); `None` once
    /// the stream has moved on from `generation` (a reset voids the backfill).
    pub(crate) fn backfill_target(&self, generation: u64) -> Option<u64> {
        let state = self.lock();
        (state.window.generation() == generation).then(|| state.window.oldest_seq(state.books.at))
    }

    /// The books' scales, to encode fetched events with.
    pub(crate) fn scales(&self) -> Books {
        self.lock().books.scales()
    }

    /// Prepends the fetched `events` (those after `from`, in order) to the window, or records
    /// that the simulator no longer has them; wakes the clients that wait either way.
    pub(crate) fn finish_backfill(
        &self,
        generation: u64,
        from: u64,
        fetched: Result<Vec<MarketEvent>, String>,
        scales: &Books,
    ) {
        let frames = fetched.map(|events| {
            events
                .iter()
                .filter_map(|e| wire::event(e, scales).map(|f| (e.sequence, f.sse)))
                .collect::<Vec<_>>()
        });
        let mut state = self.lock();
        if state.window.generation() != generation {
            return;
        }
        let head = state.books.at;
        match state.window.finish_backfill(from, frames, head) {
            Ok(()) => crate::metrics::backfill("filled"),
            Err(reason) => {
                tracing::info!(simulator = %self.key, from, %reason, "backfill unavailable");
                crate::metrics::backfill("unavailable");
            }
        }
        drop(state);
        self.wake();
    }
}

impl State {
    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.window.generation()
    }

    /// What a client resuming after `from` (of this epoch, before the window) should do.
    pub(crate) fn fill_for(&mut self, from: u64) -> Fill {
        let head = self.books.at;
        self.window.fill_for(from, head)
    }

    /// Starts a new generation: every client's cursor becomes stale.
    fn reset(&mut self, reason: &'static str) {
        self.reset_reason = reason;
        self.window.reset();
        self.snapshots.clear();
    }

    /// A cursor just after the head.
    pub(crate) fn head_cursor(&self) -> Cursor {
        self.window.head_cursor()
    }

    /// Whether `cursor` is at the head: nothing to read.
    pub(crate) fn at_head(&self, cursor: Cursor) -> bool {
        let head = self.window.head_cursor();
        cursor.generation == head.generation && cursor.index == head.index
    }

    /// A cursor at the event after `from` if the window still holds it; `None` otherwise.
    pub(crate) fn cursor_after(&self, from: u64) -> Option<Cursor> {
        self.window.cursor_after(from, self.books.at)
    }

    /// Takes what `cursor` has not read yet, in `encoding` (see [`Window::read`]).
    pub(crate) fn read(
        &self,
        cursor: &mut Cursor,
        queue_bytes: u64,
        max_bytes: usize,
        encoding: crate::compression::Encoding,
    ) -> Read {
        let epoch = self.books.at.map_or(0, |a| a.epoch);
        self.window
            .read(cursor, queue_bytes, max_bytes, epoch, encoding)
    }

    /// A snapshot of the head for `cause`, encoded once per head position and cause.
    pub(crate) fn snapshot(&mut self, cause: SnapshotCause) -> Frame {
        let Cursor {
            generation,
            index: next_index,
            ..
        } = self.window.head_cursor();
        if let Some(cached) = self
            .snapshots
            .iter()
            .find(|s| s.generation == generation && s.next_index == next_index && s.cause == cause)
        {
            return cached.frame.clone();
        }
        let frame = wire::snapshot(&self.books, self.last_emit_ns, cause);
        self.snapshots
            .retain(|s| s.generation == generation && s.next_index == next_index);
        self.snapshots.push(CachedSnapshot {
            generation,
            next_index,
            cause,
            frame: frame.clone(),
        });
        frame
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use session_proto::simulator::v1::{
        Book, BookSnapshot, BookUpdate, LevelUpdate, PriceLevel, Side,
    };

    use super::*;
    use crate::compression::Encoding;
    use crate::hub::registry::Registry;
    use crate::upstream::UpstreamSettings;

    /// The linger of the test streams.
    pub(crate) const LINGER: Duration = Duration::from_secs(30);

    /// Small bounds, so that tests reach them with a few events.
    pub(crate) fn settings() -> HubSettings {
        HubSettings {
            window_events: 100,
            window_bytes: 1 << 20,
            client_queue_bytes: 4 * 1024,
            max_chunk_bytes: 64 * 1024,
            conflation_period: Duration::from_secs(10),
            max_conflations: 2,
            retry_ms: 1_000,
            linger: LINGER,
        }
    }

    /// An upstream that is never called (it connects lazily, to a closed port).
    pub(crate) fn unused_upstream() -> Upstream {
        Upstream::new(UpstreamSettings {
            url: "http://127.0.0.1:9".to_owned(),
            tls: session_core::config::BackendTlsSettings::default(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            backoff: session_core::resilience::RetryPolicy {
                max_retries: 1,
                base: Duration::from_millis(100),
                cap: Duration::from_secs(1),
            },
            breaker_threshold: 3,
            breaker_cool_down: Duration::from_secs(10),
            coalesce: Duration::from_millis(10),
        })
        .expect("a valid endpoint")
    }

    /// A stream of `key` with [`settings`], outside any registry.
    pub(crate) fn stream(key: &str) -> Arc<Stream> {
        stream_with(key, settings())
    }

    /// A stream of `key` with `settings`.
    pub(crate) fn stream_with(key: &str, settings: HubSettings) -> Arc<Stream> {
        Arc::new(Stream::new(key.to_owned(), settings, unused_upstream()))
    }

    /// A stream of `key` in `registry`, whose only client has come and gone.
    pub(crate) fn stream_in(registry: &Registry, key: &str) -> Arc<Stream> {
        let (stream, _, client) = registry.attach(
            key,
            || Stream::new(key.to_owned(), settings(), unused_upstream()),
            |stream| crate::hub::Subscription::new(Arc::clone(stream), crate::hub::Start::Snapshot),
        );
        drop(client);
        stream
    }

    /// A snapshot of one book at `epoch`/`sequence`.
    pub(crate) fn snapshot(epoch: u64, sequence: u64) -> MarketEvent {
        MarketEvent {
            epoch,
            sequence,
            emit_time_unix_nanos: 1,
            kind: Some(market_event::Kind::Snapshot(BookSnapshot {
                books: vec![Book {
                    symbol: "BTC-USD".into(),
                    price_scale: 2,
                    quantity_scale: 3,
                    bids: vec![PriceLevel {
                        price: 100,
                        quantity: 5,
                    }],
                    asks: vec![],
                }],
                reset: false,
            })),
            ..MarketEvent::default()
        }
    }

    /// A book update at `epoch`/`sequence`.
    pub(crate) fn update(epoch: u64, sequence: u64) -> MarketEvent {
        MarketEvent {
            epoch,
            sequence,
            emit_time_unix_nanos: 1,
            kind: Some(market_event::Kind::Update(BookUpdate {
                symbol: "BTC-USD".into(),
                levels: vec![LevelUpdate {
                    side: Side::Bid as i32,
                    price: 99,
                    quantity: sequence as i64,
                }],
            })),
            ..MarketEvent::default()
        }
    }

    /// Updates `first..=last` of `epoch`.
    pub(crate) fn updates(epoch: u64, first: u64, last: u64) -> Vec<MarketEvent> {
        (first..=last).map(|s| update(epoch, s)).collect()
    }

    #[tokio::test]
    async fn a_snapshot_of_another_epoch_starts_a_new_generation() {
        let stream = stream("sim");
        stream.publish(&[snapshot(1, 10)]);
        stream.publish(&updates(1, 11, 12));
        let before = stream.lock().head_cursor();

        stream.publish(&[snapshot(2, 1)]);

        let state = stream.lock();
        assert_eq!(state.generation(), before.generation + 1);
        assert_eq!(state.reset_reason, "epoch_changed");
        let mut cursor = before;
        assert_eq!(
            state.read(&mut cursor, u64::MAX, usize::MAX, Encoding::Identity),
            Read::Stale
        );
    }

    #[tokio::test]
    async fn the_same_snapshot_again_is_no_reset() {
        let stream = stream("sim");
        stream.publish(&[snapshot(1, 10)]);

        stream.publish(&[snapshot(1, 10)]);

        assert_eq!(stream.lock().generation(), 0);
    }
}
