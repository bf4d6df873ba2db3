//! A client's view of a stream: where it reads, what it was last sent, and how it is kept from
//! falling behind (conflation to a snapshot, then a reconnect advice).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use session_core::domain::EventId;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::lanes::{Lane, Writer};
use super::stream::{Cursor, Fill, Read, Stream, UpstreamState};
use super::writers;
use crate::compression::{Gzip, Out};
use crate::metrics;
use crate::wire::{self, SnapshotCause};

/// Where a new client starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With a snapshot of the current books.
    Snapshot,
    /// With the events after this position (or a `reset` and a snapshot when they are gone).
    After(EventId),
}

#[derive(Debug)]
enum Position {
    /// Placed once the stream has its first snapshot.
    Pending(Start),
    Reading(Cursor),
    /// Told to reconnect; nothing more is sent.
    Done,
}

/// What a client is sent next.
#[derive(Debug)]
pub enum Delivery {
    /// Frames to send.
    Frames(Bytes),
    /// The final frames (a reconnect advice); then the response ends.
    Last(Bytes),
}

/// One client attached to a stream.
#[derive(Debug)]
pub struct Subscription {
    stream: Arc<Stream>,
    changed: watch::Receiver<u64>,
    position: Position,
    last_delivered: Option<EventId>,
    conflations: VecDeque<Instant>,
    /// The emit time of the oldest live event taken and not yet reported [`written`](Self::written).
    unwritten_emit_ns: Option<i64>,
    /// Set for a gzip response: what it has sent so far (`compression.rs`).
    gzip: Option<Gzip>,
    /// The upstream's state this client was last told of while it waited for the stream's
    /// first snapshot.
    told: Option<UpstreamState>,
}

impl Subscription {
    pub(crate) fn new(stream: Arc<Stream>, start: Start) -> Self {
        stream.add_client();
        metrics::client_attached();
        let mut changed = stream.watch();
        changed.mark_changed();
        Self {
            stream,
            changed,
            position: Position::Pending(start),
            last_delivered: None,
            conflations: VecDeque::new(),
            unwritten_emit_ns: None,
            gzip: None,
            told: None,
        }
    }

    /// Makes every delivery from now on gzip units (once, before the first delivery).
    pub(crate) fn use_gzip(&mut self) {
        self.gzip.get_or_insert_default();
    }

    /// The gzip state of a gzip response, to encode its own frames with.
    pub(crate) fn gzip(&mut self) -> Option<&mut Gzip> {
        self.gzip.as_mut()
    }

    /// The stream this client reads.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// The position of the last event this client was sent, if any.
    pub fn last_delivered(&self) -> Option<EventId> {
        self.last_delivered
    }

    /// Records the delivery lag of what was taken since the last call, now that its caller
    /// has written it to the client. One observation per
    /// write, for its oldest event: per event would cost a clock read and a histogram sample
    /// for each of up to hundreds of thousands of events a second.
    pub fn written(&mut self, transport: metrics::Transport) {
        if let Some(emit_ns) = self.unwritten_emit_ns.take() {
            metrics::delivery_lag(transport, emit_ns);
        }
    }

    /// The next frames for this client, waiting until there are some. Cancel-safe.
    pub async fn next(&mut self) -> Delivery {
        match self.next_unless(|| false).await {
            Some(delivery) => delivery,
            None => std::future::pending().await,
        }
    }

    /// [`Self::next`], or `None` once `stop` holds when the stream wakes this client. For a
    /// condition every client waits on besides its data (the drain), which would otherwise be
    /// a second wait of its own, registered and dropped on every delivery of every client.
    pub(crate) async fn next_unless(&mut self, stop: impl Fn() -> bool) -> Option<Delivery> {
        loop {
            if matches!(self.position, Position::Done) {
                return std::future::pending().await;
            }
            if let Some(delivery) = self.take() {
                return Some(delivery);
            }
            if self.changed.changed().await.is_err() {
                return std::future::pending().await;
            }
            if stop() {
                return None;
            }
        }
    }

    /// Parks this client's `lane` with `socket` on the stream's writers if it is at the head
    /// with nothing else to do (`lanes.rs`); `false` if not (then [`next`](Self::next) as
    /// usual). Not for gzip responses. Until [`take_back`](Self::take_back), the writers own
    /// the socket's writes and the cursor.
    pub(crate) fn park(&mut self, lane: &Arc<Lane>, socket: &Arc<TcpStream>) -> bool {
        let Position::Reading(cursor) = self.position else {
            return false;
        };
        if self.gzip.is_some() {
            return false;
        }
        let member = lane.park(socket, cursor, self.last_delivered);
        let added = {
            let mut state = self.stream.lock();
            if state.at_head(cursor) {
                state.lanes.add(member, writers::count())
            } else {
                None
            }
        };
        match added {
            None => {
                lane.take_back();
                false
            }
            Some(Writer::Running) => true,
            Some(Writer::Start(share)) => {
                writers::start(&self.stream, share);
                true
            }
        }
    }

    /// Takes `lane` back from the stream's writers, with where they left the client; the part
    /// of a chunk they could not write, for the caller to write before anything else.
    pub(crate) fn take_back(&mut self, lane: &Lane) -> Option<Bytes> {
        let taken = lane.take_back()?;
        self.position = Position::Reading(taken.cursor);
        if taken.last.is_some() {
            self.last_delivered = taken.last;
        }
        taken.rest
    }

    /// Takes what is ready, without waiting.
    fn take(&mut self) -> Option<Delivery> {
        let settings = self.stream.settings();
        let mut state = self.stream.lock();
        let mut out = Out::new(self.gzip.as_mut());
        // Recorded once the stream's lock is released: every client of the stream takes that
        // lock on each wake-up, so nothing that can wait for the others belongs under it.
        let mut delivered = None;
        if let Position::Pending(start) = self.position {
            let Some(head) = state.books.at else {
                // No snapshot yet. An upstream that is degraded (its subscribe failing) or
                // ended (the simulator not found) may never give one: the client is told, once
                // per state, instead of hearing heartbeats only.
                let news = matches!(
                    state.upstream,
                    UpstreamState::Degraded(_) | UpstreamState::Ended(_)
                ) && self.told.as_ref() != Some(&state.upstream);
                if !news {
                    return None;
                }
                self.told = Some(state.upstream.clone());
                out.extend_from_slice(&status_notice(&state.upstream));
                return Some(Delivery::Frames(out.freeze()));
            };
            let cursor = match start {
                Start::Snapshot => None,
                Start::After(from) if from.epoch != head.epoch => {
                    out.extend_from_slice(&wire::reset("epoch_changed", Some(from)).sse);
                    None
                }
                Start::After(from) if from.sequence > head.sequence => {
                    out.extend_from_slice(&wire::reset("unknown_position", Some(from)).sse);
                    None
                }
                Start::After(from) => {
                    let cursor = state.cursor_after(from.sequence);
                    if cursor.is_some() {
                        self.last_delivered = Some(from);
                    } else {
                        match state.fill_for(from.sequence) {
                            Fill::Wait => return None,
                            Fill::Start => {
                                let generation = state.generation();
                                drop(state);
                                tokio::spawn(super::backfill::run(
                                    self.stream.upstream.clone(),
                                    Arc::clone(&self.stream),
                                    generation,
                                    from,
                                ));
                                return None;
                            }
                            Fill::Unavailable => out
                                .extend_from_slice(&wire::reset("outside_window", Some(from)).sse),
                        }
                    }
                    cursor
                }
            };
            let cursor = cursor.unwrap_or_else(|| {
                let cause = if out.is_empty() {
                    SnapshotCause::Initial
                } else {
                    SnapshotCause::Reset
                };
                let snapshot = state.snapshot(cause);
                out.extend_from_slice(&snapshot.sse);
                self.last_delivered = snapshot.id;
                state.head_cursor()
            });
            // A new client takes the stream as live unless told otherwise.
            if matches!(
                state.upstream,
                UpstreamState::Degraded(_) | UpstreamState::Ended(_)
            ) {
                out.extend_from_slice(&status_notice(&state.upstream));
            }
            self.position = Position::Reading(cursor);
        }
        let Position::Reading(cursor) = &mut self.position else {
            return None;
        };
        match state.read(
            cursor,
            settings.client_queue_bytes,
            settings.max_chunk_bytes,
            out.encoding(),
        ) {
            Read::Nothing => {}
            Read::Data {
                bytes,
                last,
                events,
                backlog,
                emit_ns,
                crc,
            } => {
                delivered = Some((events, bytes.len(), backlog));
                if self.unwritten_emit_ns.is_none() {
                    self.unwritten_emit_ns = emit_ns;
                }
                if let Some(last) = last {
                    self.last_delivered = Some(last);
                }
                out.read(bytes, crc);
            }
            Read::Stale => {
                out.extend_from_slice(&wire::reset(state.reset_reason, self.last_delivered).sse);
                let snapshot = state.snapshot(SnapshotCause::Reset);
                out.extend_from_slice(&snapshot.sse);
                out.extend_from_slice(&status_notice(&state.upstream));
                self.last_delivered = snapshot.id;
                *cursor = state.head_cursor();
            }
            Read::Behind => {
                let now = Instant::now();
                self.conflations
                    .retain(|t| now.duration_since(*t) < settings.conflation_period);
                self.conflations.push_back(now);
                if self.conflations.len() > settings.max_conflations as usize {
                    drop(state);
                    metrics::slow_client_closed();
                    self.position = Position::Done;
                    let advice = wire::reconnect("slow_consumer", settings.retry_ms);
                    out.extend_from_slice(&advice.sse);
                    return Some(Delivery::Last(out.freeze()));
                }
                metrics::conflated();
                let snapshot = state.snapshot(SnapshotCause::Conflated);
                out.extend_from_slice(&snapshot.sse);
                out.extend_from_slice(&status_notice(&state.upstream));
                self.last_delivered = snapshot.id;
                *cursor = state.head_cursor();
            }
        }
        drop(state);
        if let Some((events, bytes, backlog)) = delivered {
            metrics::delivered(events, bytes, backlog);
        }
        (!out.is_empty()).then(|| Delivery::Frames(out.freeze()))
    }
}

/// The upstream's state as a `status` notice. A client moved to the head (a reset, a
/// conflation) skips the notices in between, so it is told the state as of its snapshot.
fn status_notice(upstream: &UpstreamState) -> Bytes {
    let (what, reason) = match upstream {
        UpstreamState::Connecting => return Bytes::new(),
        UpstreamState::Live => ("live", "receiving events"),
        UpstreamState::Degraded(reason) => ("degraded", reason.as_str()),
        UpstreamState::Ended(reason) => ("ended", reason.as_str()),
    };
    wire::stream_status(what, reason).sse
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.remove_client();
        metrics::client_detached();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hub::stream::tests::{settings, snapshot, stream, stream_with, updates};

    fn text(delivery: &Delivery) -> String {
        let (Delivery::Frames(bytes) | Delivery::Last(bytes)) = delivery;
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// What the client has now, without waiting.
    fn ready(client: &mut Subscription) -> Option<String> {
        client.take().map(|d| text(&d))
    }

    fn position(epoch: u64, sequence: u64) -> EventId {
        EventId { epoch, sequence }
    }

    #[tokio::test]
    async fn a_new_client_waits_for_the_first_snapshot_then_gets_it() {
        let stream = stream("sim");
        let mut client = Subscription::new(Arc::clone(&stream), Start::Snapshot);
        assert_eq!(ready(&mut client), None);

        stream.publish(&[snapshot(1, 10)]);

        let sent = ready(&mut client).unwrap();
        assert!(sent.contains("event: snapshot"), "{sent}");
        assert!(sent.contains(r#""cause":"initial""#), "{sent}");
        assert_eq!(client.last_delivered(), Some(position(1, 10)));
    }

    #[tokio::test]
    async fn a_slow_client_gets_everything_published_meanwhile_in_one_delivery() {
        let stream = stream("sim");
        stream.publish(&[snapshot(1, 10)]);
        let mut client = Subscription::new(Arc::clone(&stream), Start::After(position(1, 10)));
        assert_eq!(ready(&mut client), None, "at the head: nothing to send");

        stream.publish(&updates(1, 11, 12));
        stream.publish(&updates(1, 13, 14));
        stream.wake();
        let sent = tokio::time::timeout(Duration::from_secs(1), client.next())
            .await
            .expect("woken");

        assert_eq!(text(&sent).matches("event: delta").count(), 4);
        assert_eq!(client.last_delivered(), Some(position(1, 14)));
    }

    #[tokio::test]
    async fn a_resume_of_another_epoch_gets_a_reset_and_a_snapshot() {
        let stream = stream("sim");
        stream.publish(&[snapshot(2, 1)]);
        let mut client = Subscription::new(Arc::clone(&stream), Start::After(position(1, 50)));

        let sent = ready(&mut client).unwrap();

        assert!(sent.contains("event: reset"), "{sent}");
        assert!(sent.contains("epoch_changed"), "{sent}");
        assert!(sent.contains(r#""cause":"reset""#), "{sent}");
        assert_eq!(client.last_delivered(), Some(position(2, 1)));
    }

    #[tokio::test]
    async fn a_client_waiting_for_the_first_snapshot_is_told_once_how_the_upstream_fares() {
        let stream = stream("sim");
        let mut client = Subscription::new(Arc::clone(&stream), Start::Snapshot);
        assert_eq!(ready(&mut client), None, "nothing yet");

        let degraded = UpstreamState::Degraded("subscribe failed: unavailable".to_owned());
        stream.set_upstream(degraded, None);
        let told = ready(&mut client).expect("told it is degraded");
        let again = ready(&mut client);
        stream.set_upstream(UpstreamState::Ended("simulator not found".to_owned()), None);
        let ended = ready(&mut client).expect("told it ended");

        assert!(told.contains("event: status"), "{told}");
        assert!(told.contains(r#""state":"degraded""#), "{told}");
        assert!(told.contains("subscribe failed: unavailable"), "{told}");
        assert_eq!(again, None, "once per state");
        assert!(ended.contains(r#""state":"ended""#), "{ended}");
        assert!(ended.contains("simulator not found"), "{ended}");
        // The first snapshot still comes when the stream has one.
        stream.publish(&[snapshot(1, 10)]);
        let first = ready(&mut client).expect("the snapshot");
        assert!(first.contains("event: snapshot"), "{first}");
    }

    /// A stream whose clients may be 1 KiB behind; `client` sits at its head.
    fn with_small_queue() -> (Arc<Stream>, Subscription) {
        let stream = stream_with(
            "sim",
            HubSettingsForTest {
                client_queue_bytes: 1024,
                ..settings()
            },
        );
        stream.publish(&[snapshot(1, 10)]);
        let client = Subscription::new(Arc::clone(&stream), Start::After(position(1, 10)));
        (stream, client)
    }

    use crate::hub::HubSettings as HubSettingsForTest;

    /// Publishes enough to put a client more than its queue behind; what it is sent then.
    fn fall_behind(stream: &Stream, client: &mut Subscription, from: &mut u64) -> String {
        let last = *from + 40;
        stream.publish(&updates(1, *from + 1, last));
        *from = last;
        ready(client).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_more_than_its_queue_behind_is_conflated_to_a_snapshot() {
        let (stream, mut client) = with_small_queue();
        let mut head = 10;

        let sent = fall_behind(&stream, &mut client, &mut head);

        assert!(sent.contains(r#""cause":"conflated""#), "{sent}");
        assert!(
            !sent.contains("event: delta"),
            "the backlog is dropped: {sent}"
        );
        assert_eq!(client.last_delivered(), Some(position(1, head)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_conflated_too_often_within_the_period_is_told_to_reconnect() {
        let (stream, mut client) = with_small_queue();
        let mut head = 10;
        for _ in 0..settings().max_conflations {
            fall_behind(&stream, &mut client, &mut head);
            tokio::time::advance(Duration::from_secs(1)).await;
        }

        stream.publish(&updates(1, head + 1, head + 40));
        let last = client.take().unwrap();

        assert!(matches!(last, Delivery::Last(_)));
        assert!(text(&last).contains("slow_consumer"), "{}", text(&last));
        assert!(client.take().is_none(), "nothing after the advice");
    }

    #[tokio::test(start_paused = true)]
    async fn conflations_older_than_the_period_are_forgotten() {
        let (stream, mut client) = with_small_queue();
        let mut head = 10;
        for _ in 0..settings().max_conflations {
            fall_behind(&stream, &mut client, &mut head);
        }

        tokio::time::advance(settings().conflation_period).await;
        let sent = fall_behind(&stream, &mut client, &mut head);

        assert!(sent.contains(r#""cause":"conflated""#), "{sent}");
    }
}
