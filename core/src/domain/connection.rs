//! WebSocket connections of a session, as API Gateway knows them.

use serde::{Deserialize, Serialize};

use super::{Compression, ConnectionId, EventId, RegionName, SessionId, Timestamp, UserId};

/// What the heartbeat handler measured of a connection.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ConnectionQuality {
    /// Latest round-trip time, in milliseconds.
    pub rtt_ms: u32,
    /// Smoothed variation of the round-trip time, in milliseconds.
    pub jitter_ms: u32,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Heartbeats the client's sequence numbers show went missing.
    pub missed_heartbeats: u64,
    /// Events the client says it received.
    pub events_received: u64,
    /// Events the server sent to it.
    pub events_sent: u64,
    /// The counter of the latest heartbeat (0 before the first); older ones are ignored.
    #[serde(default, skip_serializing)]
    pub last_seq: u64,
}

/// A WebSocket connection of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: ConnectionId,
    /// The session it streams.
    pub session_id: SessionId,
    /// The user whose ticket opened it.
    pub owner: UserId,
    /// When the handshake was accepted.
    pub connected_at: Timestamp,
    /// When the client was last heard from.
    pub last_seen_at: Timestamp,
    /// When the record stops counting: a connection that stops heart-beating is dead then.
    pub expires_at: Timestamp,
    /// The last event id the client reported, so a reconnect can resume from it.
    pub last_event_id: Option<String>,
    /// Heartbeat measurements.
    pub quality: ConnectionQuality,
    /// The streamer instance that held the session's lease when a heartbeat last saw one, so
    /// the next heartbeat can tell that the session moved to another streamer.
    pub served_by: Option<String>,
    /// How its pushes are encoded, as its ticket granted (records written before the field
    /// existed have none: uncompressed).
    pub compression: Compression,
    /// The region whose WebSocket API holds it, in a multi-region deployment; `None`: the
    /// primary region (or the only one). Stores set it: a connection is its region's alone
    /// (connection ids and `@connections` endpoints are regional).
    pub region: Option<RegionName>,
    /// Bumped by every change; stores write a change only over the version it was made from.
    pub version: u64,
}

impl Connection {
    /// Whether the record no longer counts at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// The position to record after the client reported `reported`: it never moves back
    /// within an epoch. A streamer that hands the session over records the last event it
    /// sent, and a heartbeat written just after may report an earlier one (the client was
    /// still reading); the next streamer would send those events again.
    pub fn position_after(&self, reported: Option<&str>) -> Option<String> {
        let parse = |id: &str| EventId::parse("last_event_id", id).ok();
        let recorded = self.last_event_id.as_deref();
        match (recorded.and_then(parse), reported.and_then(parse)) {
            (Some(r), Some(c)) if r.epoch == c.epoch && c.sequence < r.sequence => {
                self.last_event_id.clone()
            }
            _ => reported.or(recorded).map(str::to_owned),
        }
    }
}

#[cfg(test)]
impl Connection {
    /// A connection of session `ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0`, opened at 1 s and never
    /// heart-beaten: the tests of every layer start from it.
    pub(crate) fn sample() -> Self {
        let opened = Timestamp::from_unix_millis(1_000);
        Self {
            id: ConnectionId::parse("id", "L0SM9cOFvHcCIhw=").unwrap(),
            session_id: SessionId::parse("id", "ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0").unwrap(),
            owner: UserId::parse("owner", "alice").unwrap(),
            connected_at: opened,
            last_seen_at: opened,
            expires_at: Timestamp::from_unix_millis(61_000),
            last_event_id: None,
            quality: ConnectionQuality::default(),
            served_by: None,
            compression: Compression::None,
            region: None,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last_event_id: Option<&str>) -> Connection {
        Connection {
            last_event_id: last_event_id.map(str::to_owned),
            ..Connection::sample()
        }
    }

    #[test]
    fn the_recorded_position_never_moves_back_within_an_epoch() {
        let cases = [
            (None, None, None),
            (None, Some("3-10"), Some("3-10")),
            (Some("3-10"), None, Some("3-10")),
            (Some("3-10"), Some("3-12"), Some("3-12")),
            (Some("3-10"), Some("3-7"), Some("3-10")),
            // A new epoch starts over; an older one is the client's to be reset from.
            (Some("3-10"), Some("4-2"), Some("4-2")),
            (Some("4-2"), Some("3-10"), Some("3-10")),
        ];
        for (recorded, reported, expected) in cases {
            assert_eq!(
                at(recorded).position_after(reported).as_deref(),
                expected,
                "{recorded:?} then {reported:?}"
            );
        }
    }
}
