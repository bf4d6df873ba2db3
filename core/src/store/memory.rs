//! The in-memory store: the embedded default for local runs and tests.
//!
//! One mutex guards all state, so every operation is atomic by construction; quotas count live
//! items directly instead of keeping counters. Expired items are skipped on read and swept on
//! write, so memory stays bounded by what is live.
//!
//! Layout: this file holds the state and what every port shares; each port's `impl` has its own
//! file (`sessions`, `simulators`, `connections`, `tickets`, `idempotency`, `leases`,
//! `revocation`, `rate_limit`).

mod connections;
mod idempotency;
mod leases;
mod rate_limit;
mod region_beat;
mod revocation;
mod sessions;
mod simulators;
mod tickets;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{HomeFence, StoreError};
use crate::clock::Clock;
use crate::domain::{
    Connection, ConnectionId, EventId, IdempotencyKey, Lease, RegionName, RequestFingerprint,
    Session, SessionId, Simulator, SimulatorId, StoredResponse, TicketId, Timestamp, UserId,
};

#[derive(Debug)]
struct IdempotencyEntry {
    fingerprint: RequestFingerprint,
    response: Option<StoredResponse>,
    locked_until: Timestamp,
    expires_at: Timestamp,
}

/// A consumed ticket.
#[derive(Debug)]
struct TicketEntry {
    expires_at: Timestamp,
    /// Set while the connection the ticket opened has ended and may be resumed.
    release: Option<TicketRelease>,
}

/// Where a released ticket's stream may be reopened from, and until when.
#[derive(Debug, Clone, Copy)]
struct TicketRelease {
    last_delivered: EventId,
    resumable_until: Timestamp,
}

impl TicketRelease {
    fn admits(&self, from: EventId, now: Timestamp) -> bool {
        now < self.resumable_until
            && from.epoch == self.last_delivered.epoch
            && from.sequence <= self.last_delivered.sequence
    }
}

#[derive(Debug, Default)]
struct State {
    sessions: BTreeMap<SessionId, Session>,
    simulators: BTreeMap<SessionId, BTreeMap<SimulatorId, Simulator>>,
    connections: BTreeMap<(SessionId, ConnectionId), Connection>,
    tickets: HashMap<TicketId, TicketEntry>,
    idempotency: HashMap<(UserId, IdempotencyKey), IdempotencyEntry>,
    leases: HashMap<String, Lease>,
    /// Revoked targets and until when (`revocation.rs`).
    revocations: HashMap<crate::domain::RevocationTarget, Timestamp>,
    /// Rate-limit keys' theoretical arrival times, in µs (`rate_limit.rs`).
    rate_limits: HashMap<String, i64>,
    /// Each region's latest beat (`region_beat.rs`).
    beats: HashMap<RegionName, Timestamp>,
}

impl State {
    fn usable_session(&self, id: &SessionId, now: Timestamp) -> Result<&Session, StoreError> {
        match self.sessions.get(id) {
            Some(s) if s.is_usable(now) => Ok(s),
            _ => Err(StoreError::SessionNotActive { id: id.to_string() }),
        }
    }

    /// The sum of `events_per_second` of `owner`'s simulators that are not stopped or failed,
    /// in sessions that are active, unexpired and homed in `home`'s region if given (what the
    /// event budget counts: per region in a multi-region deployment).
    fn owner_event_rate(&self, owner: &UserId, now: Timestamp, home: Option<&HomeFence>) -> u64 {
        self.sessions
            .values()
            .filter(|s| &s.owner == owner && s.is_usable(now))
            .filter(|s| home.is_none_or(|f| f.is_home(s.home_region.as_ref())))
            .filter_map(|s| self.simulators.get(&s.id))
            .flat_map(BTreeMap::values)
            .filter(|sim| !sim.status.is_terminal())
            .map(|sim| u64::from(sim.events_per_second))
            .sum()
    }

    /// Drops what has expired, once the maps have grown (amortised: at most every 1024 inserts).
    fn sweep(&mut self, now: Timestamp) {
        if self.tickets.len().is_multiple_of(1024) {
            self.tickets.retain(|_, t| t.expires_at > now);
        }
        if self.idempotency.len().is_multiple_of(1024) {
            self.idempotency.retain(|_, e| e.expires_at > now);
        }
    }
}

/// A store in this process's memory.
#[derive(Debug, Clone)]
pub struct InMemoryStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    /// In a multi-region deployment, the region whose sessions alone this store writes.
    home: Option<HomeFence>,
}

impl InMemoryStore {
    /// An empty store that reads time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::default(),
            clock,
            home: None,
        }
    }

    /// The store writing only sessions homed in `fence`'s region, as the DynamoDB adapter's
    /// conditions do (`None`: single-region, no check).
    #[must_use]
    pub fn fenced_by(mut self, fence: Option<HomeFence>) -> Self {
        self.home = fence;
        self
    }

    /// [`StoreError::NotHome`] if session `id` is stored and homed in another region than this
    /// fenced store's: its item (and what counts on it) is written by its home only.
    fn check_home(&self, state: &State, id: &SessionId) -> Result<(), StoreError> {
        let (Some(fence), Some(session)) = (&self.home, state.sessions.get(id)) else {
            return Ok(());
        };
        if fence.is_home(session.home_region.as_ref()) {
            return Ok(());
        }
        Err(StoreError::NotHome {
            id: id.to_string(),
            home_region: fence.resolve(session.home_region.as_ref()).clone(),
            home_epoch: session.home_epoch,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every operation
        // checks first and mutates last.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn conflict(entity: &'static str, id: &impl ToString) -> StoreError {
    StoreError::Conflict {
        entity,
        id: id.to_string(),
    }
}
