//! Leases: which streamer serves a session, for how long.

use super::Timestamp;

/// A time-bound claim of one owner on a named resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is leased (e.g. `session/ses_…`).
    pub name: String,
    /// Who holds it (a streamer instance id).
    pub owner: String,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
    /// Fencing token: grows each time the lease changes hands, so a deposed holder's writes can
    /// be told apart from its successor's.
    pub token: u64,
}

impl Lease {
    /// Whether it has lapsed at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}
