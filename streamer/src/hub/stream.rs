//! One simulator's stream inside the hub: its current books and a bounded window of encoded
//! entries that every client reads from, each at its own cursor.
//!
//! Clients do not have queues of their own: a client's queue is the part of the shared window
//! between its cursor and the head, bounded in bytes. Publishing is therefore O(1) in the number
//! of clients (append, then one wake-up broadcast), and an event is encoded once however many
//! clients read it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use session_core::domain::EventId;
use session_proto::simulator::v1::{MarketEvent, market_event};
use tokio::sync::watch;

use super::HubSettings;
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

/// One entry of the window: a batch of sequenced events, or an out-of-band notice.
#[derive(Debug)]
struct Entry {
    /// Position of the entry among every entry of the stream's generation.
    index: u64,
    /// Bytes of every earlier entry of the generation (for backlog sizes in O(1)).
    bytes_before: u64,
    /// The sequences the batch holds (`first..=last`); `None` for a notice.
    seqs: Option<(u64, u64)>,
    /// The last sequence published up to and including this entry (ordered, for lookups).
    last_seq: u64,
    /// Offset of each event in `sse` (batches only).
    offsets: Box<[u32]>,
    /// The encoded SSE frames.
    sse: Bytes,
    /// When the simulator emitted the entry's first event (ns since the epoch), for the
    /// delivery lag; 0 for notices and backfilled entries (replays, not live delivery).
    emit_ns: i64,
}

/// The first entry of a generation is numbered `ORIGIN`, and its bytes counted from it, so that
/// a backfill can number the older entries it prepends below it.
const ORIGIN: u64 = 1 << 40;

/// Most events in one prepended entry.
const BACKFILL_ENTRY_EVENTS: usize = 256;

/// A fetch of the events just before the window (see [`Stream::finish_backfill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backfill {
    /// Fetching the events before the window.
    Running,
    /// The simulator no longer holds the events after `from` (nor any older).
    Failed { from: u64 },
}

/// What a client that resumes from before the window should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// A backfill is under way: wait for the stream's next wake-up, then look again.
    Wait,
    /// Start a backfill from this position; then wait.
    Start,
    /// The events are gone for good: reset.
    Unavailable,
}

/// Where a client reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The generation the cursor belongs to; an older one means the client missed a reset.
    pub generation: u64,
    /// The next entry to read.
    pub index: u64,
    /// Bytes of that entry already sent (resuming in the middle of a batch).
    pub skip: usize,
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
    /// Bumped by every reset (new epoch, or a resume the simulator could not serve).
    pub generation: u64,
    /// Why the current generation started.
    pub reset_reason: &'static str,
    entries: VecDeque<Entry>,
    next_index: u64,
    bytes_total: u64,
    window_events: u64,
    window_bytes: u64,
    last_emit_ns: i64,
    snapshots: Vec<CachedSnapshot>,
    pub upstream: UpstreamState,
    resubscribe_fresh: bool,
    backfill: Option<Backfill>,
}

/// What a client takes from the window at once.
#[derive(Debug)]
pub(crate) enum Read {
    /// Nothing new.
    Nothing,
    /// Bytes to send, and the last event id they contain.
    Data {
        /// The frames.
        bytes: Bytes,
        /// The last sequenced position among them, if any.
        last: Option<EventId>,
        /// How many events they hold.
        events: u64,
        /// How far behind the head the client was, in bytes.
        backlog: u64,
        /// When the oldest live event among them was emitted (ns since the epoch), if any.
        emit_ns: Option<i64>,
    },
    /// The cursor fell out of the window or its backlog exceeds the client's queue.
    Behind,
    /// The cursor belongs to an older generation.
    Stale,
}

/// A stream of one simulator, shared by its clients and fed by its upstream task.
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
                generation: 0,
                reset_reason: "initial",
                entries: VecDeque::new(),
                next_index: ORIGIN,
                bytes_total: ORIGIN,
                window_events: 0,
                window_bytes: 0,
                last_emit_ns: 0,
                snapshots: Vec::new(),
                upstream: UpstreamState::Connecting,
                resubscribe_fresh: false,
                backfill: None,
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
        let state = self.lock();
        (state.window_events, state.window_bytes)
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
    /// next [`Stream::wake`] (the upstream coalesces wake-ups). The first snapshot of
    /// the stream only sets the books; a later one (or an event of another epoch) is a reset.
    pub(crate) fn publish(&self, events: &[MarketEvent]) {
        let mut state = self.lock();
        let mut batch = Batch::default();
        for event in events {
            let Some(kind) = event.kind.as_ref() else {
                continue;
            };
            if let market_event::Kind::Snapshot(snapshot) = kind {
                state.push(std::mem::take(&mut batch), &self.settings);
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
                batch.add(event.sequence, &frame.sse);
                if batch.emit_ns == 0 {
                    batch.emit_ns = event.emit_time_unix_nanos;
                }
            }
        }
        state.push(batch, &self.settings);
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
            state.push_notice(notice.sse, &self.settings);
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
        (state.generation == generation).then(|| state.oldest_seq())
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
        if state.generation != generation {
            return;
        }
        let oldest = state.oldest_seq();
        let outcome = match frames {
            Ok(frames) => {
                // Only an unbroken run up to the window's first event joins it.
                let run: Vec<_> = frames
                    .into_iter()
                    .filter(|(seq, _)| *seq < oldest)
                    .collect();
                if run.first().map(|(seq, _)| *seq) == Some(from + 1)
                    && run.last().map(|(seq, _)| seq + 1) == Some(oldest)
                {
                    state.prepend(&run, &self.settings);
                }
                // Trimmed at once, or the window moved on while fetching: too far behind.
                if state.oldest_seq() == from + 1 {
                    Ok(())
                } else {
                    Err("the window moved on".to_owned())
                }
            }
            Err(reason) => Err(reason),
        };
        state.backfill = match outcome {
            Ok(()) => {
                crate::metrics::backfill("filled");
                None
            }
            Err(reason) => {
                tracing::info!(simulator = %self.key, from, %reason, "backfill unavailable");
                crate::metrics::backfill("unavailable");
                Some(Backfill::Failed { from })
            }
        };
        drop(state);
        self.wake();
    }
}

/// Events gathered into one entry.
#[derive(Debug, Default)]
struct Batch {
    first: Option<u64>,
    last: u64,
    offsets: Vec<u32>,
    bytes: BytesMut,
    /// The first live event's emit time (0: none, or a backfill).
    emit_ns: i64,
}

impl Batch {
    fn add(&mut self, seq: u64, sse: &[u8]) {
        self.first.get_or_insert(seq);
        self.last = seq;
        self.offsets.push(self.bytes.len() as u32);
        self.bytes.extend_from_slice(sse);
    }
}

impl State {
    fn push(&mut self, batch: Batch, settings: &HubSettings) {
        let Some(first) = batch.first else {
            return;
        };
        let events = batch.offsets.len() as u64;
        self.append(
            Some((first, batch.last)),
            batch.offsets.into_boxed_slice(),
            batch.bytes.freeze(),
            events,
            batch.emit_ns,
            settings,
        );
    }

    fn push_notice(&mut self, sse: Bytes, settings: &HubSettings) {
        self.append(None, Box::new([]), sse, 0, 0, settings);
    }

    /// The first sequence the window holds (the one after the head when it holds none).
    fn oldest_seq(&self) -> u64 {
        self.entries
            .iter()
            .find_map(|e| e.seqs.map(|(first, _)| first))
            .unwrap_or_else(|| self.books.at.map_or(0, |at| at.sequence) + 1)
    }

    /// What a client resuming after `from` (of this epoch, before the window) should do.
    pub(crate) fn fill_for(&mut self, from: u64, window_events: u64) -> Fill {
        match self.backfill {
            // One fetch at a time; a client further back starts its own once it is over.
            Some(Backfill::Running) => Fill::Wait,
            Some(Backfill::Failed { from: failed }) if from <= failed => Fill::Unavailable,
            // More than the window keeps would be trimmed again as soon as prepended.
            _ if self.oldest_seq().saturating_sub(from) + self.window_events > window_events => {
                Fill::Unavailable
            }
            _ => {
                self.backfill = Some(Backfill::Running);
                Fill::Start
            }
        }
    }

    /// Puts `run`, the encoded events right before the window's first, in front of it, in
    /// entries of at most [`BACKFILL_ENTRY_EVENTS`] events (so clients read it in chunks).
    fn prepend(&mut self, run: &[(u64, Bytes)], settings: &HubSettings) {
        for chunk in run.chunks(BACKFILL_ENTRY_EVENTS).rev() {
            let mut batch = Batch::default();
            for (seq, sse) in chunk {
                batch.add(*seq, sse);
            }
            let Some(first) = batch.first else {
                continue;
            };
            let (index, bytes_after) = self
                .entries
                .front()
                .map_or((self.next_index, self.bytes_total), |e| {
                    (e.index, e.bytes_before)
                });
            let len = batch.bytes.len() as u64;
            self.window_events += batch.offsets.len() as u64;
            self.window_bytes += len;
            self.entries.push_front(Entry {
                index: index - 1,
                bytes_before: bytes_after - len,
                seqs: Some((first, batch.last)),
                last_seq: batch.last,
                offsets: batch.offsets.into_boxed_slice(),
                sse: batch.bytes.freeze(),
                emit_ns: 0,
            });
        }
        self.trim(settings);
    }

    fn append(
        &mut self,
        seqs: Option<(u64, u64)>,
        offsets: Box<[u32]>,
        sse: Bytes,
        events: u64,
        emit_ns: i64,
        settings: &HubSettings,
    ) {
        let last_seq = seqs.map_or_else(|| self.books.at.map_or(0, |a| a.sequence), |s| s.1);
        let len = sse.len() as u64;
        self.entries.push_back(Entry {
            index: self.next_index,
            bytes_before: self.bytes_total,
            seqs,
            last_seq,
            offsets,
            sse,
            emit_ns,
        });
        self.next_index += 1;
        self.bytes_total += len;
        self.window_events += events;
        self.window_bytes += len;
        self.trim(settings);
    }

    /// Drops the oldest entries beyond the window's bounds.
    fn trim(&mut self, settings: &HubSettings) {
        while self.window_events > settings.window_events
            || self.window_bytes > settings.window_bytes
        {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.window_events -= old.offsets.len() as u64;
            self.window_bytes -= old.sse.len() as u64;
        }
    }

    /// Starts a new generation: every client's cursor becomes stale.
    fn reset(&mut self, reason: &'static str) {
        self.generation += 1;
        self.reset_reason = reason;
        self.entries.clear();
        self.next_index = ORIGIN;
        self.bytes_total = ORIGIN;
        self.window_events = 0;
        self.window_bytes = 0;
        self.snapshots.clear();
        self.backfill = None;
    }

    /// A cursor just after the head.
    pub(crate) fn head_cursor(&self) -> Cursor {
        Cursor {
            generation: self.generation,
            index: self.next_index,
            skip: 0,
        }
    }

    /// A cursor at the event after `from` if the window still holds it; `None` otherwise.
    /// `from` must be of the current epoch and not ahead of the head.
    pub(crate) fn cursor_after(&self, from: u64) -> Option<Cursor> {
        if self.books.at.is_some_and(|at| at.sequence == from) {
            return Some(self.head_cursor());
        }
        // Entries are ordered by `last_seq`; the first ending after `from` holds `from + 1`.
        let at = self.entries.partition_point(|e| e.last_seq <= from);
        let entry = self.entries.get(at)?;
        let (first, _) = entry.seqs?;
        if first > from + 1 {
            return None;
        }
        let k = (from + 1 - first) as usize;
        Some(Cursor {
            generation: self.generation,
            index: entry.index,
            skip: entry.offsets[k] as usize,
        })
    }

    /// Takes what `cursor` has not read yet, up to `max_bytes` (at least one entry), unless the
    /// backlog exceeds `queue_bytes`.
    pub(crate) fn read(&self, cursor: &mut Cursor, queue_bytes: u64, max_bytes: usize) -> Read {
        if cursor.generation != self.generation {
            return Read::Stale;
        }
        if cursor.index == self.next_index {
            return Read::Nothing;
        }
        let Some(front) = self.entries.front() else {
            return Read::Behind;
        };
        if cursor.index < front.index {
            return Read::Behind;
        }
        let start = (cursor.index - front.index) as usize;
        let entry = &self.entries[start];
        let backlog = self.bytes_total - entry.bytes_before - cursor.skip as u64;
        if backlog > queue_bytes {
            return Read::Behind;
        }
        let mut last = None;
        let mut emit_ns = None;
        let mut events = 0;
        let mut taken = 0;
        let mut parts = Vec::new();
        for entry in self.entries.range(start..) {
            if taken > 0 && taken + entry.sse.len() > max_bytes {
                break;
            }
            let skip = if entry.index == cursor.index {
                cursor.skip
            } else {
                0
            };
            let part = entry.sse.slice(skip..);
            events += entry
                .offsets
                .iter()
                .filter(|&&o| o as usize >= skip)
                .count() as u64;
            taken += part.len();
            parts.push(part);
            if emit_ns.is_none() && entry.emit_ns > 0 {
                emit_ns = Some(entry.emit_ns);
            }
            if let Some((_, seq)) = entry.seqs {
                last = Some(seq);
            }
            cursor.index = entry.index + 1;
            cursor.skip = 0;
        }
        let bytes = if parts.len() == 1 {
            parts.pop().unwrap_or_default()
        } else {
            let mut joined = BytesMut::with_capacity(taken);
            for part in parts {
                joined.extend_from_slice(&part);
            }
            joined.freeze()
        };
        let epoch = self.books.at.map_or(0, |a| a.epoch);
        Read::Data {
            bytes,
            last: last.map(|sequence| EventId { epoch, sequence }),
            events,
            backlog,
            emit_ns,
        }
    }

    /// A snapshot of the head for `cause`, encoded once per head position and cause.
    pub(crate) fn snapshot(&mut self, cause: SnapshotCause) -> Frame {
        let (generation, next_index) = (self.generation, self.next_index);
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
