//! The gap check a frontend makes on either transport: a stream starts with a snapshot, and
//! every sequenced event after it carries the next sequence number of the snapshot's epoch.
//!
//! Events without an id are out of band (a stream's own status); `reset` and `reconnect` are
//! too, but either means the stream did not simply flow, which a smoke run reports. A snapshot
//! split into parts (WebSocket messages have a size limit) counts once all its parts are in.

use std::fmt;

use serde_json::Value;
use session_core::domain::EventId;

/// What to do with an event the client already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeats {
    /// A failure: SSE sends each event once per connection.
    Refuse,
    /// Dropped and counted: a WebSocket push that is taken over resumes a little before the
    /// client's position, and clients drop the repeats by id.
    Drop,
}

/// Why a stream is not in sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// An id that is not `<epoch>-<seq>`.
    #[error("event {kind} has the id {id:?}, not <epoch>-<seq>")]
    BadId {
        /// The event type.
        kind: String,
        /// The id.
        id: String,
    },
    /// A sequenced event before the first snapshot.
    #[error("expected a snapshot first, got {kind} {id}")]
    NoSnapshot {
        /// The event type.
        kind: String,
        /// Its id.
        id: EventId,
    },
    /// A sequence number skipped, or another epoch.
    #[error("gap: expected {expected}, got {kind} {got}")]
    Gap {
        /// The next id.
        expected: EventId,
        /// The event type.
        kind: String,
        /// What came.
        got: EventId,
    },
    /// An event sent again.
    #[error("duplicate: {kind} {got} after {at}")]
    Duplicate {
        /// The event type.
        kind: String,
        /// What came.
        got: EventId,
        /// The position.
        at: EventId,
    },
    /// A second snapshot: the stream started over.
    #[error("a new snapshot {id} ({cause}) after {at}: the stream started over")]
    Resnapshot {
        /// Its id.
        id: EventId,
        /// Its `cause`.
        cause: String,
        /// The position.
        at: EventId,
    },
    /// The parts of a split snapshot do not follow each other.
    #[error("snapshot part {part} of {parts} with id {id}, expected part {expected}")]
    Parts {
        /// The part's id.
        id: EventId,
        /// Its `part`.
        part: u64,
        /// Its `parts`.
        parts: u64,
        /// The part expected.
        expected: u64,
    },
    /// The service voided the client's state or asked it to reconnect.
    #[error("the stream sent {kind} ({reason})")]
    Interrupted {
        /// `reset` or `reconnect`.
        kind: String,
        /// Its `reason`.
        reason: String,
    },
}

/// A stream's position and what it has seen.
#[derive(Debug, Clone)]
pub struct Sequence {
    repeats: Repeats,
    snapshot: Option<EventId>,
    position: Option<EventId>,
    /// A split snapshot being received: its id, the next part and how many there are.
    parts: Option<(EventId, u64, u64)>,
    counts: Counts,
}

/// Sequenced events after the snapshot, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `delta` events.
    pub delta: usize,
    /// `trade` events.
    pub trade: usize,
    /// Any other sequenced events (`status` of the simulator).
    pub other: usize,
    /// Repeats dropped ([`Repeats::Drop`]).
    pub repeats: usize,
}

impl Counts {
    /// Sequenced events after the snapshot.
    pub fn events(&self) -> usize {
        self.delta + self.trade + self.other
    }
}

impl Sequence {
    /// A stream not started yet.
    pub fn new(repeats: Repeats) -> Self {
        Self {
            repeats,
            snapshot: None,
            position: None,
            parts: None,
            counts: Counts::default(),
        }
    }

    /// Takes the next event: its type, `id` if it has one, and its data.
    ///
    /// # Errors
    /// The event does not continue the stream.
    pub fn apply(
        &mut self,
        kind: &str,
        id: Option<&str>,
        data: &Value,
    ) -> Result<(), SequenceError> {
        let Some(id) = id else {
            return match kind {
                "reset" | "reconnect" => Err(SequenceError::Interrupted {
                    kind: kind.to_owned(),
                    reason: data["reason"]
                        .as_str()
                        .unwrap_or("no reason given")
                        .to_owned(),
                }),
                _ => Ok(()),
            };
        };
        let id = EventId::parse("id", id).map_err(|_| SequenceError::BadId {
            kind: kind.to_owned(),
            id: id.to_owned(),
        })?;
        if kind == "snapshot" {
            return self.snapshot_part(id, data);
        }
        let Some(at) = self.position.filter(|_| self.parts.is_none()) else {
            return Err(SequenceError::NoSnapshot {
                kind: kind.to_owned(),
                id,
            });
        };
        let expected = EventId {
            epoch: at.epoch,
            sequence: at.sequence + 1,
        };
        if id.epoch == at.epoch && id.sequence <= at.sequence {
            return match self.repeats {
                Repeats::Refuse => Err(SequenceError::Duplicate {
                    kind: kind.to_owned(),
                    got: id,
                    at,
                }),
                Repeats::Drop => {
                    self.counts.repeats += 1;
                    Ok(())
                }
            };
        }
        if id != expected {
            return Err(SequenceError::Gap {
                expected,
                kind: kind.to_owned(),
                got: id,
            });
        }
        self.position = Some(id);
        match kind {
            "delta" => self.counts.delta += 1,
            "trade" => self.counts.trade += 1,
            _ => self.counts.other += 1,
        }
        Ok(())
    }

    fn snapshot_part(&mut self, id: EventId, data: &Value) -> Result<(), SequenceError> {
        if let Some(at) = self.position.filter(|_| self.parts.is_none()) {
            if id == at && self.repeats == Repeats::Drop {
                // A push taken over re-sends the snapshot the client already has.
                self.counts.repeats += 1;
                return Ok(());
            }
            return Err(SequenceError::Resnapshot {
                id,
                cause: data["cause"]
                    .as_str()
                    .unwrap_or("no cause given")
                    .to_owned(),
                at,
            });
        }
        let parts = data["parts"].as_u64().unwrap_or(1);
        let part = data["part"].as_u64().unwrap_or(1);
        let expected = match self.parts {
            Some((pending, next, _)) if pending == id => next,
            _ => 1,
        };
        if part != expected || part > parts {
            return Err(SequenceError::Parts {
                id,
                part,
                parts,
                expected,
            });
        }
        self.parts = (part < parts).then_some((id, part + 1, parts));
        self.position = Some(id);
        if self.parts.is_none() {
            self.snapshot = Some(id);
        }
        Ok(())
    }

    /// The snapshot's id, once it is whole.
    pub fn snapshot(&self) -> Option<EventId> {
        self.snapshot
    }

    /// The last event applied.
    pub fn position(&self) -> Option<EventId> {
        self.position
    }

    /// Sequenced events after the snapshot, and repeats dropped.
    pub fn counts(&self) -> Counts {
        self.counts
    }
}

impl fmt::Display for Sequence {
    /// `snapshot 3-10, then 20 events in sequence to 3-30 (18 delta, 2 trade)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(snapshot), Some(position)) = (self.snapshot, self.position) else {
            return f.write_str("no snapshot yet");
        };
        let Counts {
            delta,
            trade,
            other,
            repeats,
        } = self.counts;
        write!(
            f,
            "snapshot {snapshot}, then {} events in sequence to {position} ({delta} delta, {trade} trade",
            self.counts.events()
        )?;
        if other > 0 {
            write!(f, ", {other} status")?;
        }
        if repeats > 0 {
            write!(f, "; {repeats} repeats dropped")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn feed(sequence: &mut Sequence, events: &[(&str, Option<&str>)]) -> Result<(), SequenceError> {
        events
            .iter()
            .try_for_each(|(kind, id)| sequence.apply(kind, *id, &json!({})))
    }

    fn id(text: &str) -> EventId {
        EventId::parse("id", text).unwrap()
    }

    #[test]
    fn a_snapshot_then_consecutive_events_is_in_sequence_and_out_of_band_events_are_skipped() {
        let mut sequence = Sequence::new(Repeats::Refuse);

        feed(
            &mut sequence,
            &[
                ("status", None),
                ("snapshot", Some("7-10")),
                ("delta", Some("7-11")),
                ("trade", Some("7-12")),
                ("status", None),
                ("delta", Some("7-13")),
            ],
        )
        .unwrap();

        assert_eq!(sequence.snapshot(), Some(id("7-10")));
        assert_eq!(sequence.position(), Some(id("7-13")));
        assert_eq!(sequence.counts().events(), 3);
        assert_eq!(
            sequence.to_string(),
            "snapshot 7-10, then 3 events in sequence to 7-13 (2 delta, 1 trade)"
        );
    }

    #[test]
    fn a_gap_another_epoch_or_an_event_before_the_snapshot_is_refused() {
        let mut early = Sequence::new(Repeats::Refuse);
        assert_eq!(
            early
                .apply("delta", Some("7-3"), &json!({}))
                .unwrap_err()
                .to_string(),
            "expected a snapshot first, got delta 7-3"
        );
        let mut gap = Sequence::new(Repeats::Refuse);
        let error = feed(
            &mut gap,
            &[("snapshot", Some("7-10")), ("delta", Some("7-12"))],
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "gap: expected 7-11, got delta 7-12"
        );
        let mut epoch = Sequence::new(Repeats::Drop);
        let error = feed(
            &mut epoch,
            &[("snapshot", Some("7-10")), ("delta", Some("8-11"))],
        );
        assert!(matches!(error, Err(SequenceError::Gap { .. })), "{error:?}");
        let mut bad = Sequence::new(Repeats::Refuse);
        assert!(matches!(
            bad.apply("snapshot", Some("seven"), &json!({})),
            Err(SequenceError::BadId { .. })
        ));
    }

    #[test]
    fn a_repeat_is_refused_on_sse_and_dropped_and_counted_on_websocket() {
        let events = [
            ("snapshot", Some("7-10")),
            ("delta", Some("7-11")),
            ("delta", Some("7-11")),
            ("delta", Some("7-12")),
        ];
        let mut sse = Sequence::new(Repeats::Refuse);
        assert_eq!(
            feed(&mut sse, &events).unwrap_err().to_string(),
            "duplicate: delta 7-11 after 7-11"
        );
        let mut ws = Sequence::new(Repeats::Drop);
        feed(&mut ws, &events).unwrap();
        assert_eq!(ws.counts().repeats, 1);
        assert_eq!(ws.counts().events(), 2);
    }

    #[test]
    fn a_split_snapshot_counts_once_its_parts_are_in_and_parts_out_of_order_are_refused() {
        let mut sequence = Sequence::new(Repeats::Drop);
        let part = |k: u64| json!({"cause": "initial", "part": k, "parts": 2, "books": []});
        sequence.apply("snapshot", Some("7-10"), &part(1)).unwrap();
        assert_eq!(sequence.snapshot(), None);
        assert!(matches!(
            sequence.clone().apply("delta", Some("7-11"), &json!({})),
            Err(SequenceError::NoSnapshot { .. })
        ));
        sequence.apply("snapshot", Some("7-10"), &part(2)).unwrap();
        sequence.apply("delta", Some("7-11"), &json!({})).unwrap();
        assert_eq!(sequence.snapshot(), Some(id("7-10")));

        let mut skipped = Sequence::new(Repeats::Drop);
        assert!(matches!(
            skipped.apply("snapshot", Some("7-10"), &part(2)),
            Err(SequenceError::Parts { expected: 1, .. })
        ));
    }

    #[test]
    fn a_second_snapshot_a_reset_or_a_reconnect_interrupts_the_stream() {
        let mut again = Sequence::new(Repeats::Refuse);
        again.apply("snapshot", Some("7-10"), &json!({})).unwrap();
        let error = again
            .apply("snapshot", Some("7-20"), &json!({"cause": "conflated"}))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "a new snapshot 7-20 (conflated) after 7-10: the stream started over"
        );
        let mut reset = Sequence::new(Repeats::Refuse);
        let error = reset
            .apply(
                "reconnect",
                None,
                &json!({"reason": "draining", "retry_ms": 500}),
            )
            .unwrap_err();
        assert_eq!(error.to_string(), "the stream sent reconnect (draining)");
    }
}
