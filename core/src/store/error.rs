//! What can go wrong in a store, in terms callers can act on.

use std::fmt;

use crate::domain::Timestamp;

/// A limit enforced by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// Open sessions per user.
    SessionsPerUser,
    /// Simulators per session that are not stopped or failed.
    SimulatorsPerSession,
    /// WebSocket connections per session.
    ConnectionsPerSession,
    /// Simulator events per second per user (the sum over their running simulators).
    EventsPerSecondPerUser,
}

impl Quota {
    /// A stable name, used in problem types and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionsPerUser => "sessions-per-user",
            Self::SimulatorsPerSession => "simulators-per-session",
            Self::ConnectionsPerSession => "connections-per-session",
            Self::EventsPerSecondPerUser => "events-per-second-per-user",
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a store operation did not happen. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The item to change does not exist (or has expired).
    #[error("{entity} {id} not found")]
    NotFound {
        /// The kind of item.
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// An item with this id exists already.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// The kind of item.
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// The item changed since it was read: re-read and decide again.
    #[error("{entity} {id} was changed concurrently")]
    Conflict {
        /// The kind of item.
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// The session is closed or expired, so nothing can be added to it.
    #[error("session {id} is not active")]
    SessionNotActive {
        /// The session's id.
        id: String,
    },
    /// A quota would be exceeded.
    #[error("quota {quota} of {limit} reached")]
    QuotaExceeded {
        /// Which quota.
        quota: Quota,
        /// Its limit.
        limit: u32,
    },
    /// The session is homed in another region, whose item this region may not write
    /// (`docs/multi-region.md`); nothing was written.
    #[error("session {id} is homed in {home_region}")]
    NotHome {
        /// The session's id.
        id: String,
        /// Its home region.
        home_region: crate::domain::RegionName,
        /// Its home's epoch.
        home_epoch: u64,
    },
    /// The ticket was consumed before.
    #[error("ticket already used")]
    TicketAlreadyUsed,
    /// Another owner holds the lease.
    #[error("lease {name} is held by {owner} until {expires_at}")]
    LeaseHeld {
        /// The lease.
        name: String,
        /// Its holder.
        owner: String,
        /// When it lapses.
        expires_at: Timestamp,
    },
    /// The lease lapsed or changed hands.
    #[error("lease {name} was lost")]
    LeaseLost {
        /// The lease.
        name: String,
    },
    /// The backend could not answer now (throttled, timed out, unreachable): worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend answered with an error retrying will not fix, or returned data this code
    /// cannot read.
    #[error("store failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
