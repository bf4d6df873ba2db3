//! Connect tickets: short-lived, single-use credentials for `EventSource` and `WebSocket`,
//! which cannot send an `Authorization` header.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{SessionId, TicketId, Timestamp, UserId};

/// The transport a ticket opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Server-sent events from the streamer.
    Sse,
    /// API Gateway WebSocket.
    Ws,
}

impl Transport {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Ws => "ws",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a ticket grants: one connection of `transport` to `session_id` for `owner`, once,
/// before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The ticket's id (`jti`); the store records its consumption.
    pub id: TicketId,
    /// The session it opens.
    pub session_id: SessionId,
    /// The user it was issued to.
    pub owner: UserId,
    /// The id (`jti`) of the bearer token it was minted with (claim `tid`), so that revoking
    /// that token also refuses its tickets.
    pub token_id: String,
    /// The transport it opens.
    pub transport: Transport,
    /// After this it is refused.
    pub expires_at: Timestamp,
}
