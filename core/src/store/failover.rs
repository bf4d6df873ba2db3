//! What a failover of sessions' home region (`docs/multi-region.md`, "Failover of a session's
//! home") asks of the session store, and what each session's takeover found.

use crate::domain::{RegionName, Session};

/// The simulators' `reason` when a failover of their session's home failed them: simulators
/// are regional, so the old home's instances are gone for the new home.
pub const REGION_FAILOVER_REASON: &str = "region_failover";

/// One session's move: from the home it was listed with to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeMove<'a> {
    /// The home region the session was listed in.
    pub from: &'a RegionName,
    /// Its epoch there (an item without `home_epoch` is at 1).
    pub epoch: u64,
    /// The region taking the session over.
    pub to: &'a RegionName,
    /// The primary region: items without `home_region` are homed there.
    pub primary: &'a RegionName,
}

impl HomeMove<'_> {
    /// Whether `session`'s stored home is the one this move starts from.
    pub fn starts_at(&self, session: &Session) -> bool {
        let home = session.home_region.as_ref().unwrap_or(self.primary);
        home == self.from && session.home_epoch == self.epoch
    }

    /// Whether `session`'s stored home is already this move's destination.
    pub fn ended_at(&self, session: &Session) -> bool {
        session.home_region.as_ref().unwrap_or(self.primary) == self.to
    }
}

/// What the takeover of one session's home did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// The home is now `to` at `epoch`; `failed_simulators` of its simulators (starting or
    /// running) were marked failed.
    Moved {
        /// The new epoch (the old one plus one).
        epoch: u64,
        /// How many simulators were failed.
        failed_simulators: usize,
    },
    /// The home was `to` already (an earlier run moved it): nothing written.
    AlreadyMoved {
        /// Its epoch there.
        epoch: u64,
    },
    /// The home is neither the move's start nor its destination: another failover moved it.
    Conflict {
        /// The home region found (`None`: the primary, no `home_region` attribute).
        region: Option<RegionName>,
        /// The epoch found.
        epoch: u64,
    },
    /// The session is gone or expired.
    Gone,
}

/// The outcome of a move found in `session` as stored after its conditional write failed.
pub(crate) fn found(step: &HomeMove<'_>, session: Option<&Session>) -> Takeover {
    match session {
        None => Takeover::Gone,
        Some(s) if step.ended_at(s) => Takeover::AlreadyMoved {
            epoch: s.home_epoch,
        },
        Some(s) => Takeover::Conflict {
            region: s.home_region.clone(),
            epoch: s.home_epoch,
        },
    }
}
