//! Leases: which streamer serves a session, for how long.

use super::{SessionId, Timestamp};

/// A time-bound claim of one owner on a named resource (serialisable for the shared cache
/// tier, `crate::cache`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The holder is shutting down and about to hand the lease over, so heartbeats advise the
    /// session's clients to reconnect (`draining`). Renewals keep it; acquiring clears it, since
    /// whoever acquires a lease means to serve it.
    pub draining: bool,
}

impl Lease {
    /// Whether it has lapsed at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}

/// The name of the lease that gives one streamer `session` (`session/<id>`): the streamers take
/// it, heartbeats read it.
pub fn session_lease_name(session: &SessionId) -> String {
    format!("session/{session}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lease_is_named_after_its_session() {
        let session = SessionId::parse("id", "ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0").unwrap();

        assert_eq!(
            session_lease_name(&session),
            "session/ses_01JDQ7Z8X9K3M4N5P6Q7R8S9T0"
        );
    }
}
