//! Writers per core: a stream writes its new entries to the sockets of the SSE clients at its
//! head itself, from one writer task per core, instead of waking a task per client.
//!
//! With 10,000 clients, a wake-up per client and event costs more than the write it leads to
//! (the task's poll through the response body's layers, the stream's lock taken 10,000 times,
//! run-queue pushes): the profile of `docs/performance.md`. So a client with nothing to do but
//! wait for the next entry *parks* its [`Lane`] on the stream: its socket and cursor. On each
//! wake-up of the stream, each writer reads the new entry once (under the stream's lock), frames
//! it once as a chunk, and writes it to each of its share of the parked sockets with one
//! non-blocking `write`. Only what a writer cannot do without waiting or deciding goes back to
//! the client's own task, which is woken for it: a socket that takes part of a chunk or none
//! (the task finishes the write under its write timeout), a client fallen behind or stale (its
//! conflation, its reset), the drain. The task also takes its lane back for its heartbeats.
//!
//! Gzip responses (each client's trailer checksum) and HTTP/1.0 ones (not chunked) are not
//! parked; their tasks are woken as before.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use session_core::domain::EventId;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::window::Cursor;
use crate::metrics;

/// A client's place among the stream writers': its socket and cursor while it is parked, or
/// what a writer gave back to its task.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    state: Mutex<LaneState>,
    /// Wakes the client's task when a writer gives the lane back.
    returned: Notify,
}

#[derive(Debug, Default)]
struct LaneState {
    /// Bumped by every park: a writer's member of an earlier park is stale.
    turn: u64,
    parked: Option<Parked>,
    given_back: Option<Taken>,
}

#[derive(Debug)]
struct Parked {
    socket: Arc<TcpStream>,
    cursor: Cursor,
    last: Option<EventId>,
}

/// Where a client is after its time parked: its cursor, the last event written to it, and
/// the part of a chunk a writer could not write (the client's task writes it first).
#[derive(Debug)]
pub(crate) struct Taken {
    pub cursor: Cursor,
    pub last: Option<EventId>,
    pub rest: Option<Bytes>,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once a writer has given the lane back (or at once if it did since the last
    /// wait).
    pub(crate) async fn given_back(&self) {
        self.returned.notified().await;
    }

    /// Takes the lane back from the writers (`None` if it was not parked): no writer touches
    /// the socket after this returns.
    pub(crate) fn take_back(&self) -> Option<Taken> {
        let mut state = self.lock();
        if let Some(parked) = state.parked.take() {
            return Some(Taken {
                cursor: parked.cursor,
                last: parked.last,
                rest: None,
            });
        }
        state.given_back.take()
    }
}

/// A lane in a writer's share, as of one park.
#[derive(Debug)]
pub(crate) struct Member {
    lane: Arc<Lane>,
    turn: u64,
}

/// After a park: whether a share's writer is to be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// It runs already.
    Running,
    /// Start the writer of this share.
    Start(usize),
}

/// The parked lanes of a stream, one share per writer (under the stream's lock).
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    shares: Vec<Vec<Member>>,
    /// Whether each share's writer runs (a share is empty while its writer writes to it).
    started: Vec<bool>,
    next: usize,
    /// Set by the drain: nothing parks any more, and every writer gives its lanes back.
    released: bool,
}

impl Lane {
    /// Parks the lane at `cursor` (not yet in any writer's share): the member to add to one.
    /// Takes the lane's lock alone; the stream's lock is taken after it, never around it (a
    /// writer holds a lane's lock while it reads the stream).
    pub(crate) fn park(
        self: &Arc<Self>,
        socket: &Arc<TcpStream>,
        cursor: Cursor,
        last: Option<EventId>,
    ) -> Member {
        let mut state = self.lock();
        state.turn += 1;
        state.parked = Some(Parked {
            socket: Arc::clone(socket),
            cursor,
            last,
        });
        state.given_back = None;
        Member {
            lane: Arc::clone(self),
            turn: state.turn,
        }
    }
}

impl Lanes {
    /// Adds `member` to a writer's share, out of `writers` (the runtime's worker threads, fixed
    /// at the first add); `None` once the stream is released. Else whether that share's writer
    /// is to be started now: a share's writer starts with its first member, so a stream of one
    /// client has one writer.
    pub(crate) fn add(&mut self, member: Member, writers: usize) -> Option<Writer> {
        if self.released {
            return None;
        }
        if self.shares.is_empty() {
            self.shares.resize_with(writers.max(1), Vec::new);
            self.started.resize(self.shares.len(), false);
        }
        let share = self.next % self.shares.len();
        self.next = self.next.wrapping_add(1);
        self.shares[share].push(member);
        let start = !std::mem::replace(&mut self.started[share], true);
        Some(if start {
            Writer::Start(share)
        } else {
            Writer::Running
        })
    }

    /// The members of writer `share`, taken out while it writes to them (the stream's lock is
    /// not held meanwhile), and whether the stream is released.
    pub(crate) fn take_share(&mut self, share: usize) -> (Vec<Member>, bool) {
        let members = self.shares.get_mut(share).map(std::mem::take);
        (members.unwrap_or_default(), self.released)
    }

    /// Puts back the members still parked after a write, with those parked meanwhile.
    pub(crate) fn put_share(&mut self, share: usize, mut members: Vec<Member>) {
        if let Some(parked_meanwhile) = self.shares.get_mut(share) {
            members.append(parked_meanwhile);
            *parked_meanwhile = members;
        }
    }

    /// How many of the stream's writers run.
    #[cfg(test)]
    pub(crate) fn writers(&self) -> usize {
        self.started.iter().filter(|started| **started).count()
    }

    /// Parks nothing from now on, and has every writer give its lanes back (the drain).
    pub(crate) fn release(&mut self) {
        self.released = true;
    }
}

/// What the writers send to the lanes at one cursor, read and framed once per wake-up.
#[derive(Debug)]
pub(crate) enum Next {
    /// Nothing new.
    Nothing,
    /// One chunk, framed, and where it leaves a client.
    Chunk {
        framed: Bytes,
        cursor: Cursor,
        last: Option<EventId>,
        events: u64,
        bytes: usize,
        backlog: u64,
        emit_ns: Option<i64>,
    },
    /// For the client's task (behind, stale).
    GiveBack,
}

/// Writes what is new to each of `members` (what `read` says for its cursor, read once per
/// cursor), and gives back to their tasks (dropping them from `members`) those that need
/// them, or all of them once `released`.
pub(crate) fn write_to(
    members: &mut Vec<Member>,
    released: bool,
    mut read: impl FnMut(Cursor) -> Next,
) {
    // Lanes parked at different times may sit at different cursors: a few at most.
    let mut reads: Vec<(Cursor, Next)> = Vec::with_capacity(2);
    members.retain(|member| {
        let mut state = member.lane.lock();
        if state.turn != member.turn {
            return false;
        }
        let Some(parked) = state.parked.as_mut() else {
            return false;
        };
        if released {
            give_back(&member.lane, &mut state, None);
            return false;
        }
        let at = parked.cursor;
        let i = reads
            .iter()
            .position(|(cursor, _)| *cursor == at)
            .unwrap_or_else(|| {
                reads.push((at, read(at)));
                reads.len() - 1
            });
        match &reads[i].1 {
            Next::Nothing => true,
            Next::GiveBack => {
                give_back(&member.lane, &mut state, None);
                false
            }
            Next::Chunk {
                framed,
                cursor,
                last,
                events,
                bytes,
                backlog,
                emit_ns,
            } => {
                // An error is the client's task's to find on its socket.
                let written = parked.socket.try_write(framed).unwrap_or(0);
                if written == 0 {
                    // Nothing written: the task reads from the same cursor and waits itself.
                    give_back(&member.lane, &mut state, None);
                    return false;
                }
                metrics::delivered(*events, *bytes, *backlog);
                if let Some(emit_ns) = emit_ns {
                    metrics::delivery_lag(metrics::Transport::Sse, *emit_ns);
                }
                parked.cursor = *cursor;
                if last.is_some() {
                    parked.last = *last;
                }
                if written < framed.len() {
                    // Part of the chunk: the task writes the rest, under its write timeout.
                    give_back(&member.lane, &mut state, Some(framed.slice(written..)));
                    return false;
                }
                true
            }
        }
    });
}

/// Hands a parked lane back to its task, with the `rest` of a chunk to write first.
fn give_back(lane: &Lane, state: &mut LaneState, rest: Option<Bytes>) {
    if let Some(parked) = state.parked.take() {
        state.given_back = Some(Taken {
            cursor: parked.cursor,
            last: parked.last,
            rest,
        });
    }
    lane.returned.notify_one();
}
