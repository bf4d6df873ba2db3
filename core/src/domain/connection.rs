//! WebSocket connections of a session, as API Gateway knows them.

use serde::{Deserialize, Serialize};

use super::{ConnectionId, SessionId, Timestamp, UserId};

/// What the heartbeat handler measured of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Bumped by every change; stores write a change only over the version it was made from.
    pub version: u64,
}

impl Connection {
    /// Whether the record no longer counts at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}
