//! Connect tickets: short-lived, single-use credentials for `EventSource` and `WebSocket`,
//! which cannot send an `Authorization` header.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{RegionName, SessionId, TicketId, Timestamp, UserId};

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

/// How the pushes of a WebSocket connection are encoded: asked for on its ticket, granted
/// while the `ws_compression` flag is on for the user, recorded with the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// JSON text frames, as they are.
    #[default]
    None,
    /// Binary frames holding the raw deflate (RFC 1951) of the JSON message.
    Deflate,
}

impl Compression {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Deflate => "deflate",
        }
    }

    /// Whether pushes go as they are (what a record or ticket without the field means).
    pub const fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// The compression a wire name names, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "deflate" => Some(Self::Deflate),
            _ => None,
        }
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
    /// How the connection's pushes are encoded (WebSocket only; granted when minted).
    pub compression: Compression,
    /// After this it is refused.
    pub expires_at: Timestamp,
    /// The region that minted it and alone admits it (claim `reg`, `docs/multi-region.md`);
    /// `None` (single-region deployments, tickets minted before regions existed): any region.
    pub region: Option<RegionName>,
}
