//! The window of a stream, pure: a bounded run of encoded entries (batches of sequenced
//! events, and notices) that every client reads at its own [`Cursor`], the generation that a
//! reset bumps, and the state of a backfill. No clock, no I/O, no lock: the stream holds it
//! under its lock and passes in the head (the books' position) where it matters.
//!
//! Clients do not have queues of their own: a client's queue is the part of the window between
//! its cursor and the head, bounded in bytes.
//!
//! An entry is also kept gzip-ready: compressed once, by the first gzip client to read it, as a
//! unit every gzip client sends as is (`compression.rs`).

use std::collections::VecDeque;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use session_core::domain::EventId;

use crate::compression::{Crc, Encoding, Unit};

/// The first entry of a generation is numbered `ORIGIN`, and its bytes counted from it, so that
/// a backfill can number the older entries it prepends below it.
const ORIGIN: u64 = 1 << 40;

/// Most events in one prepended entry.
const BACKFILL_ENTRY_EVENTS: usize = 256;

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
    /// The frames as a deflate unit, made by the first gzip client to read the whole entry
    /// (under the stream's lock, so once); not counted in the window's bytes.
    deflated: OnceLock<Unit>,
    /// When the simulator emitted the entry's first event (ns since the epoch), for the
    /// delivery lag; 0 for notices and backfilled entries (replays, not live delivery).
    emit_ns: i64,
}

/// A fetch of the events just before the window.
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

/// What a client takes from the window at once.
#[derive(Debug, PartialEq, Eq)]
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
        /// Of the plain frames (gzip: to combine into the response's trailer).
        crc: Crc,
    },
    /// The cursor fell out of the window or its backlog exceeds the client's queue.
    Behind,
    /// The cursor belongs to an older generation.
    Stale,
}

/// Events gathered into one entry.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    first: Option<u64>,
    last: u64,
    offsets: Vec<u32>,
    bytes: BytesMut,
    /// The first live event's emit time (0: none, or a backfill).
    emit_ns: i64,
}

impl Batch {
    /// Adds the encoded event of sequence `seq`, emitted at `emit_ns` (0: not live).
    pub(crate) fn add(&mut self, seq: u64, sse: &[u8], emit_ns: i64) {
        self.first.get_or_insert(seq);
        self.last = seq;
        self.offsets.push(self.bytes.len() as u32);
        self.bytes.extend_from_slice(sse);
        if self.emit_ns == 0 {
            self.emit_ns = emit_ns;
        }
    }
}

/// The window of one stream.
#[derive(Debug)]
pub(crate) struct Window {
    /// Bumped by every reset (new epoch, or a resume the simulator could not serve).
    generation: u64,
    entries: VecDeque<Entry>,
    next_index: u64,
    bytes_total: u64,
    events: u64,
    bytes: u64,
    max_events: u64,
    max_bytes: u64,
    backfill: Option<Backfill>,
}

impl Window {
    /// An empty window that keeps at most `max_events` events and `max_bytes` bytes.
    pub(crate) fn new(max_events: u64, max_bytes: u64) -> Self {
        Self {
            generation: 0,
            entries: VecDeque::new(),
            next_index: ORIGIN,
            bytes_total: ORIGIN,
            events: 0,
            bytes: 0,
            max_events,
            max_bytes,
            backfill: None,
        }
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Its size now: events, bytes.
    pub(crate) fn size(&self) -> (u64, u64) {
        (self.events, self.bytes)
    }

    /// Appends `batch` (nothing if empty).
    pub(crate) fn push(&mut self, batch: Batch) {
        let Some(first) = batch.first else {
            return;
        };
        let events = batch.offsets.len() as u64;
        self.append(
            batch.last,
            Some((first, batch.last)),
            batch.offsets.into_boxed_slice(),
            batch.bytes.freeze(),
            events,
            batch.emit_ns,
        );
    }

    /// Appends an out-of-band notice, read after the event at `head`.
    pub(crate) fn push_notice(&mut self, sse: Bytes, head: Option<EventId>) {
        let at = head.map_or(0, |a| a.sequence);
        self.append(at, None, Box::new([]), sse, 0, 0);
    }

    /// The first sequence the window holds (the one after the head when it holds none).
    pub(crate) fn oldest_seq(&self, head: Option<EventId>) -> u64 {
        self.entries
            .iter()
            .find_map(|e| e.seqs.map(|(first, _)| first))
            .unwrap_or_else(|| head.map_or(0, |at| at.sequence) + 1)
    }

    /// What a client resuming after `from` (of this epoch, before the window) should do.
    pub(crate) fn fill_for(&mut self, from: u64, head: Option<EventId>) -> Fill {
        match self.backfill {
            // One fetch at a time; a client further back starts its own once it is over.
            Some(Backfill::Running) => Fill::Wait,
            Some(Backfill::Failed { from: failed }) if from <= failed => Fill::Unavailable,
            // More than the window keeps would be trimmed again as soon as prepended.
            _ if self.oldest_seq(head).saturating_sub(from) + self.events > self.max_events => {
                Fill::Unavailable
            }
            _ => {
                self.backfill = Some(Backfill::Running);
                Fill::Start
            }
        }
    }

    /// Ends the backfill after `from`: the fetched `run` of encoded events (those after
    /// `from`, in order) joins the window if it reaches its first event unbroken.
    ///
    /// # Errors
    /// Why the events after `from` are not in the window now (later clients from there or
    /// further back reset).
    pub(crate) fn finish_backfill(
        &mut self,
        from: u64,
        fetched: Result<Vec<(u64, Bytes)>, String>,
        head: Option<EventId>,
    ) -> Result<(), String> {
        let oldest = self.oldest_seq(head);
        let outcome = fetched.and_then(|frames| {
            // Only an unbroken run up to the window's first event joins it.
            let run: Vec<_> = frames
                .into_iter()
                .filter(|(seq, _)| *seq < oldest)
                .collect();
            if run.first().map(|(seq, _)| *seq) == Some(from + 1)
                && run.last().map(|(seq, _)| seq + 1) == Some(oldest)
                && run.windows(2).all(|w| w[1].0 == w[0].0 + 1)
            {
                self.prepend(&run);
            }
            // Trimmed at once, or the window moved on while fetching: too far behind.
            if self.oldest_seq(head) == from + 1 {
                Ok(())
            } else {
                Err("the window moved on".to_owned())
            }
        });
        self.backfill = outcome.is_err().then_some(Backfill::Failed { from });
        outcome
    }

    /// Puts `run`, the encoded events right before the window's first, in front of it, in
    /// entries of at most [`BACKFILL_ENTRY_EVENTS`] events (so clients read it in chunks).
    fn prepend(&mut self, run: &[(u64, Bytes)]) {
        for chunk in run.chunks(BACKFILL_ENTRY_EVENTS).rev() {
            let mut batch = Batch::default();
            for (seq, sse) in chunk {
                batch.add(*seq, sse, 0);
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
            self.events += batch.offsets.len() as u64;
            self.bytes += len;
            self.entries.push_front(Entry {
                index: index - 1,
                bytes_before: bytes_after - len,
                seqs: Some((first, batch.last)),
                last_seq: batch.last,
                offsets: batch.offsets.into_boxed_slice(),
                sse: batch.bytes.freeze(),
                deflated: OnceLock::new(),
                emit_ns: 0,
            });
        }
        self.trim();
    }

    fn append(
        &mut self,
        last_seq: u64,
        seqs: Option<(u64, u64)>,
        offsets: Box<[u32]>,
        sse: Bytes,
        events: u64,
        emit_ns: i64,
    ) {
        let len = sse.len() as u64;
        self.entries.push_back(Entry {
            index: self.next_index,
            bytes_before: self.bytes_total,
            seqs,
            last_seq,
            offsets,
            sse,
            deflated: OnceLock::new(),
            emit_ns,
        });
        self.next_index += 1;
        self.bytes_total += len;
        self.events += events;
        self.bytes += len;
        self.trim();
    }

    /// Drops the oldest entries beyond the window's bounds.
    fn trim(&mut self) {
        while self.events > self.max_events || self.bytes > self.max_bytes {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.events -= old.offsets.len() as u64;
            self.bytes -= old.sse.len() as u64;
        }
    }

    /// Starts a new generation: every client's cursor becomes stale.
    pub(crate) fn reset(&mut self) {
        *self = Self {
            generation: self.generation + 1,
            ..Self::new(self.max_events, self.max_bytes)
        };
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
    /// `from` must be of the head's epoch and not ahead of it.
    pub(crate) fn cursor_after(&self, from: u64, head: Option<EventId>) -> Option<Cursor> {
        if head.is_some_and(|at| at.sequence == from) {
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
    /// backlog exceeds `queue_bytes`; positions are of `epoch`. With gzip, each entry is its
    /// shared unit (the tail of one resumed inside is compressed for this read alone); sizes
    /// and limits stay those of the plain frames.
    pub(crate) fn read(
        &self,
        cursor: &mut Cursor,
        queue_bytes: u64,
        max_bytes: usize,
        epoch: u64,
        encoding: Encoding,
    ) -> Read {
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
        let mut crc = Crc::default();
        // The first part alone is what most reads are (a client at the head): no copy, no
        // allocation; a read of several entries joins them.
        let mut first = Bytes::new();
        let mut joined = BytesMut::new();
        for entry in self.entries.range(start..) {
            if taken > 0 && taken + entry.sse.len() > max_bytes {
                break;
            }
            let skip = if entry.index == cursor.index {
                cursor.skip
            } else {
                0
            };
            let plain = entry.sse.slice(skip..);
            taken += plain.len();
            let part = match encoding {
                Encoding::Identity => plain,
                Encoding::Gzip => {
                    let unit = if skip == 0 {
                        entry.deflated.get_or_init(|| Unit::of(&entry.sse))
                    } else {
                        &Unit::of(&plain)
                    };
                    crc = crc.then(unit.crc);
                    unit.deflate.clone()
                }
            };
            events += entry
                .offsets
                .iter()
                .filter(|&&o| o as usize >= skip)
                .count() as u64;
            if first.is_empty() && joined.is_empty() {
                first = part;
            } else {
                if joined.is_empty() {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&part);
            }
            if emit_ns.is_none() && entry.emit_ns > 0 {
                emit_ns = Some(entry.emit_ns);
            }
            if let Some((_, seq)) = entry.seqs {
                last = Some(seq);
            }
            cursor.index = entry.index + 1;
            cursor.skip = 0;
        }
        let bytes = if joined.is_empty() {
            first
        } else {
            joined.freeze()
        };
        Read::Data {
            bytes,
            last: last.map(|sequence| EventId { epoch, sequence }),
            events,
            backlog,
            emit_ns,
            crc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Gzip;
    use crate::compression::tests::gunzip;

    const EPOCH: u64 = 7;

    fn frame(seq: u64) -> String {
        format!("e{seq}\n")
    }

    /// The head at `sequence` (none before the first).
    fn head(sequence: u64) -> Option<EventId> {
        (sequence > 0).then_some(EventId {
            epoch: EPOCH,
            sequence,
        })
    }

    fn batch(first: u64, last: u64) -> Batch {
        let mut batch = Batch::default();
        for seq in first..=last {
            batch.add(seq, frame(seq).as_bytes(), 1);
        }
        batch
    }

    /// Events 11..=20 in two batches of five: the head is 20.
    fn window() -> Window {
        let mut window = Window::new(100, 1 << 20);
        window.push(batch(11, 15));
        window.push(batch(16, 20));
        window
    }

    fn frames(first: u64, last: u64) -> String {
        (first..=last).map(frame).collect()
    }

    /// What a client resuming after `from` is sent, if the window still holds it.
    fn resumed(window: &Window, from: u64) -> Option<String> {
        let mut cursor = window.cursor_after(from, head(20))?;
        match window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity) {
            Read::Data { bytes, .. } => Some(String::from_utf8(bytes.to_vec()).unwrap()),
            Read::Nothing => Some(String::new()),
            other => panic!("resumed after {from}: {other:?}"),
        }
    }

    #[test]
    fn a_resume_is_served_from_the_event_after_its_position() {
        let window = window();
        // (resume after, what is sent; None: outside the window)
        let cases = [
            (20, Some(String::new())),  // at the head: nothing yet
            (17, Some(frames(18, 20))), // inside a batch
            (15, Some(frames(16, 20))), // at a batch's edge
            (10, Some(frames(11, 20))), // at the window's edge
            (9, None),                  // before it
            (0, None),                  // long before it
        ];
        for (from, expected) in cases {
            assert_eq!(resumed(&window, from), expected, "resume after {from}");
        }
    }

    #[test]
    fn a_read_names_the_last_event_and_counts_only_what_it_sends() {
        let window = window();
        let mut cursor = window.cursor_after(12, head(20)).unwrap();

        let read = window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity);

        let Read::Data {
            last,
            events,
            backlog,
            ..
        } = read
        else {
            panic!("{read:?}");
        };
        assert_eq!(last, head(20));
        assert_eq!(events, 8);
        assert_eq!(backlog, frames(13, 20).len() as u64);
        assert_eq!(
            window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity),
            Read::Nothing
        );
    }

    #[test]
    fn a_notice_between_batches_is_read_in_order_and_keeps_positions() {
        let mut window = Window::new(100, 1 << 20);
        window.push(batch(11, 12));
        window.push_notice(bytes::Bytes::from_static(b"notice\n"), head(12));
        window.push(batch(13, 14));

        let mut cursor = window.cursor_after(11, head(14)).unwrap();
        let read = window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity);

        let Read::Data {
            bytes,
            last,
            events,
            ..
        } = read
        else {
            panic!("{read:?}");
        };
        assert_eq!(bytes, format!("e12\nnotice\n{}", frames(13, 14)).as_bytes());
        assert_eq!(last, head(14));
        assert_eq!(events, 3);
        assert_eq!(resumed_after_notice(&window), frames(13, 14));
    }

    fn resumed_after_notice(window: &Window) -> String {
        let mut cursor = window.cursor_after(12, head(14)).unwrap();
        match window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity) {
            Read::Data { bytes, .. } => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_oldest_events_are_trimmed_and_their_readers_fall_behind() {
        let mut window = Window::new(10, 1 << 20);
        window.push(batch(1, 5));
        let mut early = window.cursor_after(0, head(5)).unwrap();

        window.push(batch(6, 10));
        window.push(batch(11, 15));

        assert_eq!(window.size().0, 10);
        assert_eq!(window.oldest_seq(head(15)), 6);
        assert_eq!(
            window.read(&mut early, u64::MAX, usize::MAX, EPOCH, Encoding::Identity),
            Read::Behind
        );
        assert!(window.cursor_after(4, head(15)).is_none());
    }

    #[test]
    fn a_reader_whose_backlog_exceeds_its_queue_is_behind() {
        let window = window();
        let mut cursor = window.cursor_after(10, head(20)).unwrap();
        let backlog = frames(11, 20).len() as u64;

        assert_eq!(
            window.read(
                &mut cursor.clone(),
                backlog - 1,
                usize::MAX,
                EPOCH,
                Encoding::Identity
            ),
            Read::Behind
        );
        assert!(matches!(
            window.read(&mut cursor, backlog, usize::MAX, EPOCH, Encoding::Identity),
            Read::Data { .. }
        ));
    }

    #[test]
    fn reads_are_chunked_by_entry_up_to_the_byte_limit() {
        let window = window();
        let mut cursor = window.cursor_after(10, head(20)).unwrap();

        let first = window.read(
            &mut cursor,
            u64::MAX,
            frames(11, 15).len(),
            EPOCH,
            Encoding::Identity,
        );
        let second = window.read(
            &mut cursor,
            u64::MAX,
            frames(11, 15).len(),
            EPOCH,
            Encoding::Identity,
        );

        let (Read::Data { last: first, .. }, Read::Data { last: second, .. }) = (first, second)
        else {
            panic!("two chunks");
        };
        assert_eq!((first, second), (head(15), head(20)));
    }

    #[test]
    fn a_reset_makes_every_earlier_cursor_stale() {
        let mut window = window();
        let mut cursor = window.head_cursor();

        window.reset();

        assert_eq!(
            window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity),
            Read::Stale
        );
        assert_eq!(window.size(), (0, 0));
        assert_eq!(window.head_cursor().generation, cursor.generation + 1);
    }

    #[test]
    fn a_backfill_that_reaches_the_window_is_prepended_and_served() {
        let mut window = window();
        assert_eq!(window.fill_for(6, head(20)), Fill::Start);
        assert_eq!(
            window.fill_for(6, head(20)),
            Fill::Wait,
            "one fetch at a time"
        );
        let fetched = (7..=10)
            .map(|s| (s, bytes::Bytes::from(frame(s))))
            .collect();

        assert_eq!(window.finish_backfill(6, Ok(fetched), head(20)), Ok(()));

        assert_eq!(window.oldest_seq(head(20)), 7);
        let mut cursor = window.cursor_after(6, head(20)).unwrap();
        let Read::Data { bytes, .. } =
            window.read(&mut cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Identity)
        else {
            panic!("served");
        };
        assert_eq!(bytes, frames(7, 20).as_bytes());
    }

    #[test]
    fn a_backfill_with_a_gap_is_refused_and_older_resumes_reset() {
        let mut window = window();
        assert_eq!(window.fill_for(6, head(20)), Fill::Start);
        // 9 is missing.
        let fetched = [7, 8, 10]
            .map(|s| (s, bytes::Bytes::from(frame(s))))
            .to_vec();

        let outcome = window.finish_backfill(6, Ok(fetched), head(20));

        assert_eq!(outcome, Err("the window moved on".to_owned()));
        assert_eq!(window.oldest_seq(head(20)), 11, "nothing prepended");
        assert_eq!(window.fill_for(5, head(20)), Fill::Unavailable);
        assert_eq!(
            window.fill_for(8, head(20)),
            Fill::Start,
            "a later one may try"
        );
    }

    #[test]
    fn a_backfill_that_stops_short_of_the_window_is_refused() {
        let mut window = window();
        assert_eq!(window.fill_for(6, head(20)), Fill::Start);
        let fetched = (7..=9).map(|s| (s, bytes::Bytes::from(frame(s)))).collect();

        let outcome = window.finish_backfill(6, Ok(fetched), head(20));

        assert!(outcome.is_err());
        assert_eq!(window.oldest_seq(head(20)), 11, "nothing prepended");
        assert_eq!(window.fill_for(6, head(20)), Fill::Unavailable);
    }

    /// Everything a client resuming after `from` reads, in reads of at most `max` bytes, in
    /// `encoding`: the bytes and the CRC of each read.
    fn read_all(window: &Window, from: u64, max: usize, encoding: Encoding) -> Vec<(Bytes, Crc)> {
        let mut cursor = window.cursor_after(from, head(21)).unwrap();
        let mut reads = Vec::new();
        while let Read::Data { bytes, crc, .. } =
            window.read(&mut cursor, u64::MAX, max, EPOCH, encoding)
        {
            reads.push((bytes, crc));
        }
        reads
    }

    #[test]
    fn gzip_reads_from_any_cursor_decode_to_exactly_the_plain_reads() {
        let mut window = Window::new(100, 1 << 20);
        window.push(batch(11, 15));
        window.push_notice(Bytes::from_static(b"event: status\n\n"), head(15));
        window.push(batch(16, 20));
        window.push(batch(21, 21));
        let preamble = b"retry: 1000\n\n";
        for from in 10..=21 {
            for max in [1, 12, usize::MAX] {
                let plain: Vec<u8> = read_all(&window, from, max, Encoding::Identity)
                    .into_iter()
                    .flat_map(|(bytes, _)| bytes.to_vec())
                    .collect();
                let mut gzip = Gzip::default();
                let mut stream = gzip.open(preamble).to_vec();
                for (bytes, crc) in read_all(&window, from, max, Encoding::Gzip) {
                    gzip.sent(crc);
                    stream.extend_from_slice(&bytes);
                }
                stream.extend_from_slice(&gzip.trailer());

                assert_eq!(
                    gunzip(&stream),
                    [preamble.as_slice(), &plain].concat(),
                    "after {from}, reads of {max}"
                );
            }
        }
    }

    #[test]
    fn an_entry_is_compressed_once_for_every_gzip_reader() {
        let window = window();
        let mut first = window.cursor_after(15, head(20)).unwrap();
        let mut second = first;

        let reads = [&mut first, &mut second].map(|cursor| {
            match window.read(cursor, u64::MAX, usize::MAX, EPOCH, Encoding::Gzip) {
                Read::Data { bytes, .. } => bytes,
                other => panic!("{other:?}"),
            }
        });

        assert_eq!(reads[0].as_ptr(), reads[1].as_ptr(), "the same shared unit");
    }

    #[test]
    fn a_backfill_longer_than_the_window_is_not_attempted() {
        let mut window = Window::new(15, 1 << 20);
        window.push(batch(11, 20));

        assert_eq!(window.fill_for(5, head(20)), Fill::Unavailable);
        assert_eq!(window.fill_for(6, head(20)), Fill::Start);
    }
}
