//! The writer tasks of a stream, one per worker thread: on each wake-up of the stream, each
//! writes what is new to its share of the parked lanes (`lanes.rs`).

use std::sync::{Arc, Weak};

use tokio::sync::watch;

use super::lanes::Next;
use super::stream::{Cursor, Read, Stream};
use crate::compression::Encoding;

/// Starts the writer of `share` of `stream`. Its first pass is at once: entries published
/// between the park that made it needed and now are written too.
pub(crate) fn start(stream: &Arc<Stream>, share: usize) {
    let mut changed = stream.watch();
    changed.mark_changed();
    tokio::spawn(write(Arc::downgrade(stream), share, changed));
}

/// How many shares a stream's parked lanes are dealt into: one per worker thread.
pub(crate) fn count() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

/// One writer of `stream`: on each of its wake-ups, writes what is new to the lanes of
/// `share`. Ends with the stream.
async fn write(stream: Weak<Stream>, share: usize, mut changed: watch::Receiver<u64>) {
    while changed.changed().await.is_ok() {
        let Some(stream) = stream.upgrade() else {
            return;
        };
        let (mut members, released) = stream.lock().lanes.take_share(share);
        if members.is_empty() {
            continue;
        }
        super::lanes::write_to(&mut members, released, |at| read(&stream, at));
        stream.lock().lanes.put_share(share, members);
    }
}

/// What is new after `at` for a parked lane: one chunk within the client's queue, or the
/// client's task decides.
fn read(stream: &Stream, at: Cursor) -> Next {
    let settings = stream.settings();
    let mut cursor = at;
    let read = stream.lock().read(
        &mut cursor,
        settings.client_queue_bytes,
        settings.max_chunk_bytes,
        Encoding::Identity,
    );
    match read {
        Read::Nothing => Next::Nothing,
        Read::Data {
            bytes,
            last,
            events,
            backlog,
            emit_ns,
            ..
        } => Next::Chunk {
            framed: crate::http1::chunk(&bytes),
            cursor,
            last,
            events,
            bytes: bytes.len(),
            backlog,
            emit_ns,
        },
        Read::Behind | Read::Stale => Next::GiveBack,
    }
}
