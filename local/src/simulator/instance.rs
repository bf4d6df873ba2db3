//! One running simulator instance: its producer task, epoch, sequence, retained window and the
//! broadcast that feeds its subscribers.
//!
//! Everything that must agree (the engine's books, the sequence, the window, the broadcast
//! sender) lives in one [`Shared`] behind one mutex. The producer generates a tick's events,
//! encodes each once, appends them to the window and broadcasts them as one [`Batch`] while it
//! holds the lock; a subscriber takes its snapshot (or its slice of the window) and subscribes
//! to the broadcast under the same lock. So no event can fall between a subscriber's snapshot
//! and its live stream, and none can come twice.
//!
//! Events are encoded to protobuf once, when produced, and every subscriber sends the same
//! bytes (reference-counted `Bytes`, slices of one buffer per tick): fan-out to many
//! subscribers costs a copy into each HTTP/2 stream, not an encode per subscriber.
//!
//! Memory is bounded whatever the subscribers do: the window keeps the last
//! `retained_events` events, the broadcast the last `broadcast_batches` batches of at most
//! [`MAX_BATCH_EVENTS`] events, and a subscriber takes at most [`MAX_BACKLOG_EVENTS`] events of
//! the window at a time. A subscriber that falls further behind than the broadcast is told it
//! lagged and resumes from the window, or takes a fresh snapshot when the window has moved on
//! (see `subscription`). The producer never waits for a subscriber, and holds the lock for one
//! batch at a time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use prost::bytes::{Bytes, BytesMut};
use session_core::domain::{NewSimulator, Symbol};
use session_proto::simulator::v1 as pb;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use super::book::{Book, Side};
use super::engine::{Engine, EngineConfig, Event};
use super::faults::{PendingCuts, StreamFaultPlan};

/// How an instance keeps and fans out its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceSettings {
    /// Events kept for resuming subscribers; older ones are dropped.
    pub retained_events: usize,
    /// Batches (a tick's events, at most [`MAX_BATCH_EVENTS`]) the broadcast holds for a
    /// subscriber that is behind; one that falls further behind is recovered from the window
    /// or given a snapshot.
    pub broadcast_batches: usize,
    /// Shape of the books.
    pub engine: EngineConfig,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        Self {
            retained_events: 100_000,
            broadcast_batches: 1024,
            engine: EngineConfig::default(),
        }
    }
}

/// Most events in one broadcast batch: a tick with more (a high rate, or a catch-up after the
/// runtime was busy) is published as several batches, so the broadcast's memory is bounded in
/// events, not only in batches.
pub const MAX_BATCH_EVENTS: usize = 256;

/// Events of its window a stopped instance keeps (see `release_window`).
pub const STOPPED_RETAINED_EVENTS: usize = 256;

/// Most events of the window a subscriber takes at once (while holding the instance's lock);
/// one that is further behind takes the next ones as it sends these.
pub const MAX_BACKLOG_EVENTS: usize = 1024;

/// What an instance holds for its subscribers: everything its memory use depends on, each
/// bounded by [`InstanceSettings`] whatever the subscribers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceStats {
    /// Events in the retained window; at most `retained_events`.
    pub retained_events: usize,
    /// Encoded bytes of those events.
    pub retained_bytes: usize,
    /// Batches the broadcast still holds for a subscriber that has not read them; at most
    /// `broadcast_batches`.
    pub broadcast_batches: usize,
    /// Subscribers attached to the live feed.
    pub subscribers: usize,
}

/// The events of one producer tick, encoded, with the sequence of the first. A batch carries
/// no epoch: a restart replaces the broadcast sender, so a receiver only ever sees batches of
/// the epoch it attached in.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) first_sequence: u64,
    pub(crate) events: Vec<Bytes>,
    /// True for the batch holding the final `STOPPED` status: the stream ends after it.
    pub(crate) last: bool,
}

/// Where a subscriber starts: what to send first and the live feed after it.
#[derive(Debug)]
pub(crate) struct Attachment {
    /// The instance's epoch when attached.
    pub(crate) epoch: u64,
    /// The sequence the backlog brings the subscriber to.
    pub(crate) last_sequence: u64,
    /// A snapshot, or the retained events after the resume point.
    pub(crate) backlog: Vec<Bytes>,
    /// The live feed; `None` when the instance has stopped (the stream ends after the backlog).
    pub(crate) receiver: Option<broadcast::Receiver<Arc<Batch>>>,
}

/// A resume point that the instance could not honour exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Start with a snapshot (not flagged reset).
    Fresh,
    /// Continue after `(epoch, sequence)`; a snapshot flagged reset if that is impossible.
    After { epoch: u64, sequence: u64 },
}

/// The instance is stopped; the operation needs a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the instance is stopped")]
pub(crate) struct Stopped;

/// One simulator instance.
#[derive(Debug)]
pub(crate) struct Instance {
    id: String,
    symbols: Vec<Symbol>,
    seed: u64,
    events_per_second: u32,
    started_at_unix_nanos: i64,
    settings: InstanceSettings,
    shared: Mutex<Shared>,
    /// Faults applied to the streams open now (stalls, cuts); see `faults`.
    pub(crate) stream_faults: watch::Sender<StreamFaultPlan>,
    /// Cuts armed for the next subscriptions; see `faults`.
    pub(crate) pending_cuts: Mutex<PendingCuts>,
}

/// The state that must change together; see the module docs.
#[derive(Debug)]
struct Shared {
    state: pb::SimulatorState,
    reason: String,
    epoch: u64,
    /// Sequence of the last event emitted in this epoch.
    sequence: u64,
    engine: Engine,
    /// The last events of this epoch, up to and including `sequence`.
    window: VecDeque<Bytes>,
    /// `None` once stopped: dropping the sender ends every receiver.
    sender: Option<broadcast::Sender<Arc<Batch>>>,
    /// Pacing: when this epoch's production started and how many market events it produced.
    started: Instant,
    produced: u64,
    /// Encode buffer; each tick's events are slices of it.
    buffer: BytesMut,
}

/// Keeps only the last [`STOPPED_RETAINED_EVENTS`] of a stopped instance's window, copied out
/// of the encode buffers they were sliced from (so those are freed), and drops the encode
/// buffer. The registry keeps stopped instances (for `Get`, `List` and `Stop`'s idempotency),
/// at most `max_stopped_instances` of them; with its whole window each kept up to
/// `retained_events` events (some 10 MB at 100,000), which the churn soak saw as resident
/// memory growing by every wave of sessions closed (docs/load/churn.md). A subscriber resuming before the tail gets a snapshot
/// marked reset, as for any resume outside the window.
fn release_window(shared: &mut Shared) {
    let skip = shared.window.len().saturating_sub(STOPPED_RETAINED_EVENTS);
    shared.window = shared
        .window
        .iter()
        .skip(skip)
        .map(|event| Bytes::copy_from_slice(event))
        .collect();
    shared.buffer = BytesMut::new();
}

/// Nanoseconds since the Unix epoch, now.
fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A fresh epoch: random, never 0 (the proto default) and never `previous`; below 2^53, so
/// that a browser reading the events' JSON (`"epoch": …`) gets it exactly as a number.
fn new_epoch(previous: u64) -> u64 {
    loop {
        let epoch = rand::random::<u64>() >> 11;
        if epoch != 0 && epoch != previous {
            return epoch;
        }
    }
}

/// How often the producer runs for `events_per_second`: every event at low rates, every
/// millisecond (the timer's resolution) at high ones, so 200k/s is 200 events a tick.
fn tick_period(events_per_second: u32) -> Duration {
    (Duration::from_secs(1) / events_per_second.max(1))
        .clamp(Duration::from_millis(1), Duration::from_millis(100))
}

fn proto_side(side: Side) -> i32 {
    match side {
        Side::Bid => pb::Side::Bid.into(),
        Side::Ask => pb::Side::Ask.into(),
    }
}

/// The wire form of one symbol's book, `depth` levels a side (0: all).
pub(crate) fn book_to_proto(
    symbol: &str,
    book: &Book,
    config: EngineConfig,
    depth: usize,
) -> pb::Book {
    let depth = if depth == 0 { usize::MAX } else { depth };
    let levels = |side| {
        book.levels(side)
            .take(depth)
            .map(|(price, quantity)| pb::PriceLevel { price, quantity })
            .collect()
    };
    pb::Book {
        symbol: symbol.to_owned(),
        price_scale: config.price_scale,
        quantity_scale: config.quantity_scale,
        bids: levels(Side::Bid),
        asks: levels(Side::Ask),
    }
}

impl Instance {
    /// Starts an instance: builds its books, emits its `RUNNING` status (sequence 1) and spawns
    /// its producer. Must run inside a tokio runtime.
    pub(crate) fn start(id: String, spec: NewSimulator, settings: InstanceSettings) -> Arc<Self> {
        let engine = Engine::new(spec.seed, spec.symbols.len(), settings.engine);
        let (stream_faults, _) = watch::channel(StreamFaultPlan::default());
        let instance = Arc::new(Self {
            id,
            symbols: spec.symbols,
            seed: spec.seed,
            events_per_second: spec.events_per_second,
            started_at_unix_nanos: unix_nanos(),
            settings,
            shared: Mutex::new(Shared {
                state: pb::SimulatorState::Starting,
                reason: String::new(),
                epoch: new_epoch(0),
                sequence: 0,
                engine,
                window: VecDeque::new(),
                sender: Some(broadcast::channel(settings.broadcast_batches.max(1)).0),
                started: Instant::now(),
                produced: 0,
                buffer: BytesMut::new(),
            }),
            stream_faults,
            pending_cuts: Mutex::new(PendingCuts::default()),
        });
        {
            let mut shared = instance.lock();
            shared.state = pb::SimulatorState::Running;
            instance.emit_status(&mut shared, pb::SimulatorState::Running, "started", false);
        }
        info!(simulator_id = %instance.id, seed = instance.seed, events_per_second = instance.events_per_second, "simulator started");
        tokio::spawn(produce(
            Arc::downgrade(&instance),
            tick_period(instance.events_per_second),
        ));
        instance
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves consistent state (every write is a whole
        // assignment), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The instance's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Whether `symbols`, `seed` and `events_per_second` are those of this instance (an
    /// idempotent retry of its `Start`).
    pub(crate) fn matches(&self, spec: &NewSimulator) -> bool {
        self.symbols == spec.symbols
            && self.seed == spec.seed
            && self.events_per_second == spec.events_per_second
    }

    /// Whether it has stopped for good.
    pub(crate) fn is_stopped(&self) -> bool {
        self.lock().state == pb::SimulatorState::Stopped
    }

    /// What is known about it now.
    pub(crate) fn info(&self) -> pb::SimulatorInfo {
        let shared = self.lock();
        self.info_locked(&shared)
    }

    fn info_locked(&self, shared: &Shared) -> pb::SimulatorInfo {
        pb::SimulatorInfo {
            simulator_id: self.id.clone(),
            state: shared.state.into(),
            symbols: self.symbols.iter().map(|s| s.as_str().to_owned()).collect(),
            seed: self.seed,
            events_per_second: self.events_per_second,
            epoch: shared.epoch,
            sequence: shared.sequence,
            started_at_unix_nanos: self.started_at_unix_nanos,
            reason: shared.reason.clone(),
        }
    }

    /// Stops it: emits the final `STOPPED` status and ends every stream after it. Idempotent.
    pub(crate) fn stop(&self, reason: &str) -> pb::SimulatorInfo {
        let mut shared = self.lock();
        if shared.state != pb::SimulatorState::Stopped {
            shared.state = pb::SimulatorState::Stopped;
            reason.clone_into(&mut shared.reason);
            self.emit_status(&mut shared, pb::SimulatorState::Stopped, reason, true);
            shared.sender = None;
            release_window(&mut shared);
            info!(simulator_id = %self.id, reason, "simulator stopped");
        }
        self.info_locked(&shared)
    }

    /// Restarts it as a crash would: a new epoch, sequence from 0, books rebuilt from the seed,
    /// every open stream ended (their receivers close without a final status).
    pub(crate) fn restart(&self) -> Result<pb::SimulatorInfo, Stopped> {
        let mut shared = self.lock();
        if shared.state == pb::SimulatorState::Stopped {
            return Err(Stopped);
        }
        let epoch = new_epoch(shared.epoch);
        shared.epoch = epoch;
        shared.sequence = 0;
        shared.engine = Engine::new(self.seed, self.symbols.len(), self.settings.engine);
        shared.window.clear();
        shared.sender = Some(broadcast::channel(self.settings.broadcast_batches.max(1)).0);
        shared.started = Instant::now();
        shared.produced = 0;
        self.emit_status(&mut shared, pb::SimulatorState::Running, "restarted", false);
        info!(simulator_id = %self.id, epoch, "simulator restarted");
        Ok(self.info_locked(&shared))
    }

    /// The book of `symbol` and the `(epoch, sequence)` it reflects; `None` if the instance has
    /// no such symbol.
    pub(crate) fn book(&self, symbol: &str, depth: usize) -> Option<pb::GetBookResponse> {
        let index = self.symbols.iter().position(|s| s.as_str() == symbol)?;
        let shared = self.lock();
        Some(pb::GetBookResponse {
            epoch: shared.epoch,
            sequence: shared.sequence,
            book: Some(book_to_proto(
                symbol,
                shared.engine.book(index),
                self.settings.engine,
                depth,
            )),
        })
    }

    /// What it holds for its subscribers now.
    pub(crate) fn stats(&self) -> InstanceStats {
        let shared = self.lock();
        InstanceStats {
            retained_events: shared.window.len(),
            retained_bytes: shared.window.iter().map(Bytes::len).sum(),
            broadcast_batches: shared.sender.as_ref().map_or(0, broadcast::Sender::len),
            subscribers: shared
                .sender
                .as_ref()
                .map_or(0, broadcast::Sender::receiver_count),
        }
    }

    /// Attaches a subscriber: the retained events after a resume point, or else a snapshot
    /// (flagged `reset` when a resume was asked for), and the live feed after them, taken
    /// together under the lock so nothing falls between them.
    pub(crate) fn attach(&self, resume: Resume) -> Attachment {
        let shared = self.lock();
        let receiver = shared.sender.as_ref().map(broadcast::Sender::subscribe);
        let (backlog, last_sequence) = match resume {
            Resume::After { epoch, sequence } if epoch == shared.epoch => {
                let oldest_resumable = shared.sequence - shared.window.len() as u64;
                if (oldest_resumable..=shared.sequence).contains(&sequence) {
                    // A subscriber further behind gets the first part of what it missed; the
                    // live feed then starts beyond it, and it comes back for the next part.
                    let skip = (sequence - oldest_resumable) as usize;
                    let backlog: Vec<Bytes> = shared
                        .window
                        .range(skip..)
                        .take(MAX_BACKLOG_EVENTS)
                        .cloned()
                        .collect();
                    let last_sequence = sequence + backlog.len() as u64;
                    (backlog, last_sequence)
                } else {
                    (vec![self.snapshot(&shared, true)], shared.sequence)
                }
            }
            Resume::After { .. } => (vec![self.snapshot(&shared, true)], shared.sequence),
            Resume::Fresh => (vec![self.snapshot(&shared, false)], shared.sequence),
        };
        Attachment {
            epoch: shared.epoch,
            last_sequence,
            backlog,
            receiver,
        }
    }

    /// Every book, encoded as a snapshot event carrying the current sequence.
    fn snapshot(&self, shared: &Shared, reset: bool) -> Bytes {
        let books = self
            .symbols
            .iter()
            .enumerate()
            .map(|(i, symbol)| {
                book_to_proto(
                    symbol.as_str(),
                    shared.engine.book(i),
                    self.settings.engine,
                    0,
                )
            })
            .collect();
        let event = pb::MarketEvent {
            simulator_id: self.id.clone(),
            epoch: shared.epoch,
            sequence: shared.sequence,
            emit_time_unix_nanos: unix_nanos(),
            kind: Some(pb::market_event::Kind::Snapshot(pb::BookSnapshot {
                books,
                reset,
            })),
        };
        event.encode_to_vec().into()
    }

    /// Produces the events due at `now`; false once the instance is stopped.
    fn produce(&self, now: Instant) -> bool {
        let mut shared = self.lock();
        if shared.state == pb::SimulatorState::Stopped {
            return false;
        }
        let rate = u128::from(self.events_per_second);
        let elapsed = now.saturating_duration_since(shared.started).as_nanos();
        let expected = (elapsed * rate / 1_000_000_000) as u64;
        let mut due = expected.saturating_sub(shared.produced);
        // A tick comes late when the runtime is busy (many subscribers on few cores): catch up,
        // so that the instance keeps its rate, but at most one second's worth, so that a
        // process suspended for minutes does not come back with a flood.
        let burst = u64::from(self.events_per_second);
        if due > burst {
            shared.produced = expected - burst;
            due = burst;
        }
        shared.produced += due;
        let (epoch, emit_time) = (shared.epoch, unix_nanos());
        while due > 0 {
            let count = due.min(MAX_BATCH_EVENTS as u64);
            due -= count;
            let events = (0..count)
                .map(|_| {
                    let event = shared.engine.next_event();
                    self.market_event(&event, emit_time)
                })
                .collect::<Vec<_>>();
            self.publish(&mut shared, events, false);
            if due > 0 {
                // Let subscribers and `GetBook` in between batches of a catch-up.
                drop(shared);
                shared = self.lock();
                if shared.state == pb::SimulatorState::Stopped {
                    return false;
                }
                if shared.epoch != epoch {
                    // Restarted meanwhile: the new epoch counts its events from its own start.
                    return true;
                }
            }
        }
        true
    }

    /// The wire form of an engine event, without its sequence (set when published).
    fn market_event(&self, event: &Event, emit_time: i64) -> pb::MarketEvent {
        let kind = match event {
            Event::Update { symbol, changes } => pb::market_event::Kind::Update(pb::BookUpdate {
                symbol: self.symbols[*symbol].as_str().to_owned(),
                levels: changes
                    .iter()
                    .map(|c| pb::LevelUpdate {
                        side: proto_side(c.side),
                        price: c.price,
                        quantity: c.quantity,
                    })
                    .collect(),
            }),
            Event::Trade {
                symbol,
                trade_id,
                price,
                quantity,
                aggressor,
            } => pb::market_event::Kind::Trade(pb::Trade {
                symbol: self.symbols[*symbol].as_str().to_owned(),
                trade_id: *trade_id,
                price: *price,
                quantity: *quantity,
                aggressor: proto_side(*aggressor),
            }),
        };
        pb::MarketEvent {
            simulator_id: String::new(),
            epoch: 0,
            sequence: 0,
            emit_time_unix_nanos: emit_time,
            kind: Some(kind),
        }
    }

    fn emit_status(
        &self,
        shared: &mut Shared,
        state: pb::SimulatorState,
        reason: &str,
        last: bool,
    ) {
        let event = pb::MarketEvent {
            simulator_id: String::new(),
            epoch: 0,
            sequence: 0,
            emit_time_unix_nanos: unix_nanos(),
            kind: Some(pb::market_event::Kind::Status(pb::StatusChange {
                state: state.into(),
                reason: reason.to_owned(),
            })),
        };
        self.publish(shared, vec![event], last);
    }

    /// Numbers, encodes, retains and broadcasts `events` as one batch.
    fn publish(&self, shared: &mut Shared, events: Vec<pb::MarketEvent>, last: bool) {
        let first_sequence = shared.sequence + 1;
        let mut encoded = Vec::with_capacity(events.len());
        for mut event in events {
            shared.sequence += 1;
            event.simulator_id.clone_from(&self.id);
            event.epoch = shared.epoch;
            event.sequence = shared.sequence;
            shared.buffer.reserve(event.encoded_len());
            event
                .encode(&mut shared.buffer)
                .unwrap_or_else(|_| unreachable!("capacity was reserved"));
            let bytes = shared.buffer.split().freeze();
            shared.window.push_back(bytes.clone());
            encoded.push(bytes);
        }
        let excess = shared
            .window
            .len()
            .saturating_sub(self.settings.retained_events);
        shared.window.drain(..excess);
        let batch = Arc::new(Batch {
            first_sequence,
            events: encoded,
            last,
        });
        if let Some(sender) = &shared.sender {
            // No receiver is not an error: events are retained for later subscribers anyway.
            let _ = sender.send(batch);
        }
    }
}

/// The producer task: runs every tick until the instance stops or is dropped.
async fn produce(instance: Weak<Instance>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let now = ticks.tick().await;
        let Some(instance) = instance.upgrade() else {
            break;
        };
        if !instance.produce(now) {
            debug!(simulator_id = %instance.id, "producer ended");
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_one_event_at_low_rates_and_one_millisecond_at_high_ones() {
        assert_eq!(tick_period(1), Duration::from_millis(100));
        assert_eq!(tick_period(20), Duration::from_millis(50));
        assert_eq!(tick_period(200_000), Duration::from_millis(1));
    }

    #[test]
    fn a_new_epoch_differs_from_the_previous_one_and_from_zero() {
        for previous in [0, 1, u64::MAX] {
            let epoch = new_epoch(previous);
            assert_ne!(epoch, previous);
            assert_ne!(epoch, 0);
        }
    }
}
