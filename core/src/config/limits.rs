//! `limits`: quotas per user and session, and how long a session lives.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Quotas and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open sessions one user may have.
    pub sessions_per_user: u32,
    /// Simulators (not stopped or failed) one session may have.
    pub simulators_per_session: u32,
    /// WebSocket connections one session may have.
    pub connections_per_session: u32,
    /// Simulator events per second one user's simulators (not stopped or failed) may add up to:
    /// one simulator at the maximum rate, or many slower ones.
    pub events_per_second_per_user: u32,
    /// How long a session lives, in seconds.
    #[serde(deserialize_with = "super::duration::secs")]
    pub session_lifetime_secs: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions_per_user: 10,
            simulators_per_session: 4,
            connections_per_session: 8,
            events_per_second_per_user: crate::domain::NewSimulator::MAX_EVENTS_PER_SECOND,
            session_lifetime_secs: Duration::from_secs(24 * 3600),
        }
    }
}

impl Limits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let limits = [
            ("limits.sessions_per_user", self.sessions_per_user),
            ("limits.simulators_per_session", self.simulators_per_session),
            (
                "limits.connections_per_session",
                self.connections_per_session,
            ),
            (
                "limits.events_per_second_per_user",
                self.events_per_second_per_user,
            ),
        ];
        for (setting, value) in limits {
            if value == 0 {
                return invalid(setting, "must be at least 1");
            }
        }
        if self.session_lifetime_secs < Duration::from_secs(60) {
            return invalid("limits.session_lifetime_secs", "must be at least 60");
        }
        Ok(())
    }
}
