//! One subscriber's stream: backlog first, then the live feed, never a gap or a duplicate.
//!
//! The stream tracks the sequence of the last event it sent. A batch from the broadcast is sent
//! from the event after it; if the subscriber lagged (the broadcast dropped batches it had not
//! read) or a batch starts beyond it, the stream re-attaches to the instance as a resume from
//! that sequence: the missed events come from the retained window, or, when they are gone, a
//! snapshot flagged `reset` replaces them. So a slow subscriber costs the instance nothing and
//! still never sees a silent gap.
//!
//! The stream ends cleanly after the instance's final `STOPPED` status. A restart of the
//! instance closes the broadcast without that status: the stream then ends with UNAVAILABLE, as
//! a crashed server's would, and the client resumes (and gets a reset snapshot of the new
//! epoch). Faults (`faults`) stall the stream or end it with UNAVAILABLE after some events.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::Stream;
use prost::bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tonic::Status;

use super::faults::StreamFaultPlan;
use super::instance::{Attachment, Batch, Instance, Resume};

/// The state of one stream.
#[derive(Debug)]
struct Subscriber {
    instance: Arc<Instance>,
    epoch: u64,
    /// Sequence of the last event sent (or that the backlog brings the subscriber to).
    last_sequence: u64,
    /// Events to send before anything from the broadcast.
    backlog: VecDeque<Bytes>,
    /// The batch being sent and the index of its next event.
    batch: Option<(Arc<Batch>, usize)>,
    receiver: Option<broadcast::Receiver<Arc<Batch>>>,
    faults: watch::Receiver<StreamFaultPlan>,
    stall_until: Option<Instant>,
    /// Events left before a fault ends the stream.
    cut_after: Option<u64>,
    /// The last `EndStreams` order for open streams this stream has seen (or predates).
    cut_order: u64,
    /// Ends once the backlog and batch are sent (the instance stopped).
    finishing: bool,
    done: bool,
}

/// The event stream of a subscriber attached with `attachment`; `cut_after` ends it with
/// UNAVAILABLE after that many events (a fault).
pub(crate) fn stream(
    instance: Arc<Instance>,
    attachment: Attachment,
    cut_after: Option<u64>,
) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
    let faults = instance.stream_faults.subscribe();
    let (stall_until, cut_order) = {
        let plan = faults.borrow();
        (plan.stall_until, plan.cut_order)
    };
    let mut subscriber = Subscriber {
        instance,
        epoch: attachment.epoch,
        last_sequence: 0,
        backlog: VecDeque::new(),
        batch: None,
        receiver: None,
        faults,
        stall_until,
        cut_after,
        cut_order,
        finishing: false,
        done: false,
    };
    subscriber.reattach(attachment);
    futures_util::stream::unfold(subscriber, |mut subscriber| async move {
        let item = subscriber.next().await?;
        Some((item, subscriber))
    })
}

fn restarted() -> Status {
    Status::unavailable("the simulator instance restarted: resume from your last position")
}

impl Subscriber {
    fn reattach(&mut self, attachment: Attachment) {
        self.last_sequence = attachment.last_sequence;
        self.backlog = attachment.backlog.into();
        self.finishing = attachment.receiver.is_none();
        self.receiver = attachment.receiver;
        self.batch = None;
    }

    /// The next event that is ready without waiting.
    fn ready(&mut self) -> Option<Bytes> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(event);
        }
        let (batch, index) = self.batch.as_mut()?;
        let (len, last) = (batch.events.len(), batch.last);
        while *index < len {
            let sequence = batch.first_sequence + *index as u64;
            if sequence > self.last_sequence + 1 {
                // A gap can only follow a lag the broadcast did not report: `at_gap` recovers
                // it the same way.
                return None;
            }
            *index += 1;
            if sequence == self.last_sequence + 1 {
                self.last_sequence = sequence;
                let event = batch.events[*index - 1].clone();
                if *index == len {
                    self.finishing |= last;
                    self.batch = None;
                }
                return Some(event);
            }
        }
        self.finishing |= last;
        self.batch = None;
        None
    }

    /// Whether the current batch is stuck on a gap.
    fn at_gap(&self) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|(batch, index)| *index < batch.events.len())
    }

    fn recover(&mut self) -> Result<(), Status> {
        // Let go of the old feed first: a subscriber never holds two places in the broadcast.
        self.receiver = None;
        let attachment = self.instance.attach(Resume::After {
            epoch: self.epoch,
            sequence: self.last_sequence,
        });
        if attachment.epoch != self.epoch {
            return Err(restarted());
        }
        self.reattach(attachment);
        Ok(())
    }

    fn apply_faults(&mut self) {
        let plan = *self.faults.borrow_and_update();
        self.stall_until = plan.stall_until.filter(|until| *until > Instant::now());
        if plan.cut_order != self.cut_order {
            self.cut_order = plan.cut_order;
            if let Some(after) = plan.end_open_after {
                self.cut_after = Some(self.cut_after.map_or(after, |left| left.min(after)));
            }
        }
    }

    async fn next(&mut self) -> Option<Result<Bytes, Status>> {
        loop {
            if self.done {
                return None;
            }
            // A stream with events ready never waits on `faults.changed()` below: look here too,
            // so that a stall or a cut applies at once even at full rate.
            if self.faults.has_changed().unwrap_or(false) {
                self.apply_faults();
            }
            if let Some(until) = self.stall_until {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => self.stall_until = None,
                    changed = self.faults.changed() => {
                        if changed.is_ok() {
                            self.apply_faults();
                        }
                    }
                }
                continue;
            }
            if let Some(event) = self.ready() {
                if let Some(left) = self.cut_after.as_mut() {
                    if *left == 0 {
                        self.done = true;
                        return Some(Err(Status::unavailable("stream ended by fault injection")));
                    }
                    *left -= 1;
                }
                return Some(Ok(event));
            }
            if self.at_gap() {
                if let Err(status) = self.recover() {
                    self.done = true;
                    return Some(Err(status));
                }
                continue;
            }
            if self.finishing {
                self.done = true;
                return None;
            }
            let Some(receiver) = self.receiver.as_mut() else {
                self.done = true;
                return None;
            };
            tokio::select! {
                biased;
                changed = self.faults.changed() => {
                    if changed.is_ok() {
                        self.apply_faults();
                    }
                }
                received = receiver.recv() => match received {
                    Ok(batch) => self.batch = Some((batch, 0)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(status) = self.recover() {
                            self.done = true;
                            return Some(Err(status));
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        // Closed without the final status: the instance restarted.
                        self.done = true;
                        return Some(Err(restarted()));
                    }
                },
            }
        }
    }
}
