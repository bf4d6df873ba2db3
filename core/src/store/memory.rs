//! The in-memory store: the embedded default for local runs and tests.
//!
//! One mutex guards all state, so every operation is atomic by construction; quotas count live
//! items directly instead of keeping counters. Expired items are skipped on read and swept on
//! write, so memory stays bounded by what is live.

mod rate_limit;
mod revocation;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    ConnectionStore, IdempotencyStore, LeaseStore, Quota, SessionStore, SimulatorQuotas,
    SimulatorStore, StoreError, TicketStore,
};
use crate::clock::Clock;
use crate::domain::{
    Connection, ConnectionId, Cursor, EventId, IdempotencyClaim, IdempotencyKey, Lease, Page,
    PageRequest, RequestFingerprint, Session, SessionId, Simulator, SimulatorId, StoredResponse,
    TicketId, Timestamp, UserId,
};

/// How long an unfinished idempotency claim blocks retries before one may take it over.
pub(super) const IDEMPOTENCY_LOCK: Duration = Duration::from_secs(60);

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
}

impl State {
    fn usable_session(&self, id: &SessionId, now: Timestamp) -> Result<&Session, StoreError> {
        match self.sessions.get(id) {
            Some(s) if s.is_usable(now) => Ok(s),
            _ => Err(StoreError::SessionNotActive { id: id.to_string() }),
        }
    }

    /// The sum of `events_per_second` of `owner`'s simulators that are not stopped or failed,
    /// in sessions that are active and unexpired (what the event budget counts).
    fn owner_event_rate(&self, owner: &UserId, now: Timestamp) -> u64 {
        self.sessions
            .values()
            .filter(|s| &s.owner == owner && s.is_usable(now))
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
}

impl InMemoryStore {
    /// An empty store that reads time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::default(),
            clock,
        }
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

#[async_trait]
impl SessionStore for InMemoryStore {
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.sessions.contains_key(&session.id) {
            return Err(StoreError::AlreadyExists {
                entity: "session",
                id: session.id.to_string(),
            });
        }
        let open = state
            .sessions
            .values()
            .filter(|s| s.owner == session.owner && s.is_usable(now))
            .count();
        if open >= max_open as usize {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::SessionsPerUser,
                limit: max_open,
            });
        }
        state.sessions.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .sessions
            .get(id)
            .filter(|s| !s.is_expired(now))
            .cloned())
    }

    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        let now = self.clock.now();
        let state = self.lock();
        let upper = page.cursor.as_ref().map(Cursor::last_id);
        let mut items: Vec<Session> = state
            .sessions
            .values()
            .rev()
            .filter(|s| upper.is_none_or(|last| &s.id < last))
            .filter(|s| &s.owner == owner && !s.is_expired(now))
            .take(page.limit as usize + 1)
            .cloned()
            .collect();
        let next_cursor = if items.len() > page.limit as usize {
            items.truncate(page.limit as usize);
            items.last().map(|s| Cursor::after(&s.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        match state.sessions.get_mut(&previous.id) {
            Some(stored) if !stored.is_expired(now) && stored.version == previous.version => {
                *stored = next.clone();
                Ok(())
            }
            Some(stored) if !stored.is_expired(now) => Err(conflict("session", &previous.id)),
            _ => Err(StoreError::NotFound {
                entity: "session",
                id: previous.id.to_string(),
            }),
        }
    }
}

#[async_trait]
impl SimulatorStore for InMemoryStore {
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.usable_session(&simulator.session_id, now)?;
        let budget = quotas.max_events_per_second;
        let used = state.owner_event_rate(owner, now);
        let max_active = quotas.max_active;
        let of_session = state
            .simulators
            .entry(simulator.session_id.clone())
            .or_default();
        if of_session.contains_key(&simulator.id) {
            return Err(StoreError::AlreadyExists {
                entity: "simulator",
                id: simulator.id.to_string(),
            });
        }
        let active = of_session
            .values()
            .filter(|s| !s.status.is_terminal())
            .count();
        if active >= max_active as usize {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::SimulatorsPerSession,
                limit: max_active,
            });
        }
        if used + u64::from(simulator.events_per_second) > u64::from(budget) {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::EventsPerSecondPerUser,
                limit: budget,
            });
        }
        of_session.insert(simulator.id.clone(), simulator.clone());
        Ok(())
    }

    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .simulators
            .get(session)
            .and_then(|of_session| of_session.get(id))
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .simulators
            .get(session)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|sim| sim.expires_at > now)
            .cloned()
            .collect())
    }

    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let stored = state
            .simulators
            .get_mut(&previous.session_id)
            .and_then(|of_session| of_session.get_mut(&previous.id));
        match stored {
            Some(stored) if stored.expires_at > now && stored.version == previous.version => {
                *stored = next.clone();
                Ok(())
            }
            Some(stored) if stored.expires_at > now => Err(conflict("simulator", &previous.id)),
            _ => Err(StoreError::NotFound {
                entity: "simulator",
                id: previous.id.to_string(),
            }),
        }
    }
}

#[async_trait]
impl ConnectionStore for InMemoryStore {
    async fn put_connection(
        &self,
        connection: &Connection,
        max_per_session: u32,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.usable_session(&connection.session_id, now)?;
        let session = connection.session_id.clone();
        let key = (session.clone(), connection.id.clone());
        if state.connections.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                entity: "connection",
                id: connection.id.to_string(),
            });
        }
        // Dead connections leave room: drop the session's expired records first.
        state
            .connections
            .retain(|(s, _), c| s != &session || !c.is_expired(now));
        let live = state
            .connections
            .keys()
            .filter(|(s, _)| s == &session)
            .count();
        if live >= max_per_session as usize {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::ConnectionsPerSession,
                limit: max_per_session,
            });
        }
        state.connections.insert(key, connection.clone());
        Ok(())
    }

    async fn get_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .connections
            .get(&(session.clone(), id.clone()))
            .filter(|c| !c.is_expired(now))
            .cloned())
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .connections
            .iter()
            .filter(|((s, _), c)| s == session && !c.is_expired(now))
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn update_connection(
        &self,
        previous: &Connection,
        next: &Connection,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let key = (previous.session_id.clone(), previous.id.clone());
        match state.connections.get_mut(&key) {
            Some(stored) if !stored.is_expired(now) && stored.version == previous.version => {
                *stored = next.clone();
                Ok(())
            }
            Some(stored) if !stored.is_expired(now) => Err(conflict("connection", &previous.id)),
            _ => Err(StoreError::NotFound {
                entity: "connection",
                id: previous.id.to_string(),
            }),
        }
    }

    async fn delete_connection(
        &self,
        session: &SessionId,
        id: &ConnectionId,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let removed = self
            .lock()
            .connections
            .remove(&(session.clone(), id.clone()));
        Ok(removed.is_some_and(|c| !c.is_expired(now)))
    }

    async fn sessions_with_connections(&self) -> Result<Vec<SessionId>, StoreError> {
        let now = self.clock.now();
        let mut sessions: Vec<SessionId> = self
            .lock()
            .connections
            .iter()
            .filter(|(_, c)| !c.is_expired(now))
            .map(|((session, _), _)| session.clone())
            .collect();
        // Keyed by (session, connection): a session's connections are adjacent.
        sessions.dedup();
        Ok(sessions)
    }
}

#[async_trait]
impl TicketStore for InMemoryStore {
    async fn consume_ticket(&self, id: &TicketId, expires_at: Timestamp) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.tickets.get(id).is_some_and(|t| t.expires_at > now) {
            return Err(StoreError::TicketAlreadyUsed);
        }
        state.tickets.insert(
            id.clone(),
            TicketEntry {
                expires_at,
                release: None,
            },
        );
        state.sweep(now);
        Ok(())
    }

    async fn release_ticket(
        &self,
        id: &TicketId,
        last_delivered: EventId,
        resumable_until: Timestamp,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        match self.lock().tickets.get_mut(id) {
            Some(t) if t.expires_at > now => {
                t.expires_at = t.expires_at.max(resumable_until);
                t.release = Some(TicketRelease {
                    last_delivered,
                    resumable_until,
                });
                Ok(())
            }
            _ => Err(StoreError::NotFound {
                entity: "ticket",
                id: id.to_string(),
            }),
        }
    }

    async fn resume_ticket(&self, id: &TicketId, from: EventId) -> Result<(), StoreError> {
        let now = self.clock.now();
        match self.lock().tickets.get_mut(id) {
            Some(t) if t.expires_at > now && t.release.is_some_and(|r| r.admits(from, now)) => {
                t.release = None;
                Ok(())
            }
            _ => Err(StoreError::TicketAlreadyUsed),
        }
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryStore {
    async fn claim_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let map_key = (owner.clone(), key.clone());
        if let Some(entry) = state
            .idempotency
            .get(&map_key)
            .filter(|e| e.expires_at > now)
        {
            if &entry.fingerprint != fingerprint {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if let Some(response) = &entry.response {
                return Ok(IdempotencyClaim::Completed(response.clone()));
            }
            if entry.locked_until > now {
                return Ok(IdempotencyClaim::InProgress);
            }
        }
        state.idempotency.insert(
            map_key,
            IdempotencyEntry {
                fingerprint: fingerprint.clone(),
                response: None,
                locked_until: now.plus(IDEMPOTENCY_LOCK),
                expires_at: now.plus(ttl),
            },
        );
        state.sweep(now);
        Ok(IdempotencyClaim::Claimed)
    }

    async fn complete_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        match state.idempotency.get_mut(&(owner.clone(), key.clone())) {
            Some(e)
                if e.expires_at > now && &e.fingerprint == fingerprint && e.response.is_none() =>
            {
                e.response = Some(response.clone());
                Ok(())
            }
            _ => Err(conflict("idempotency key", &key.as_str())),
        }
    }

    async fn abandon_idempotency(
        &self,
        owner: &UserId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let map_key = (owner.clone(), key.clone());
        if state
            .idempotency
            .get(&map_key)
            .is_some_and(|e| &e.fingerprint == fingerprint && e.response.is_none())
        {
            state.idempotency.remove(&map_key);
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for InMemoryStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let token = match state.leases.get(name) {
            Some(l) if !l.is_expired(now) && l.owner != owner => {
                return Err(StoreError::LeaseHeld {
                    name: name.to_owned(),
                    owner: l.owner.clone(),
                    expires_at: l.expires_at,
                });
            }
            Some(l) if !l.is_expired(now) => l.token,
            Some(l) => l.token + 1,
            None => 1,
        };
        let lease = Lease {
            name: name.to_owned(),
            owner: owner.to_owned(),
            expires_at: now.plus(ttl),
            token,
            draining: false,
        };
        state.leases.insert(name.to_owned(), lease.clone());
        Ok(lease)
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        match state.leases.get_mut(&lease.name) {
            Some(l) if l.owner == lease.owner && l.token == lease.token => {
                l.expires_at = now.plus(ttl);
                Ok(l.clone())
            }
            _ => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
            }),
        }
    }

    async fn mark_draining(&self, lease: &Lease) -> Result<Lease, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        match state.leases.get_mut(&lease.name) {
            Some(l) if l.owner == lease.owner && l.token == lease.token && !l.is_expired(now) => {
                l.draining = true;
                Ok(l.clone())
            }
            _ => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
            }),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let now = self.clock.now();
        if let Some(l) = self.lock().leases.get_mut(&lease.name)
            && l.owner == lease.owner
            && l.token == lease.token
        {
            // Lapse it rather than delete it, so the next holder's token is still higher.
            l.expires_at = now;
        }
        Ok(())
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .leases
            .get(name)
            .filter(|l| !l.is_expired(now))
            .cloned())
    }
}
