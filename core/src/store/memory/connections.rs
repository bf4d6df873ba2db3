//! The in-memory adapter of [`ConnectionStore`]: WebSocket connections by session; the quota
//! counts the unexpired ones of this region (all of them in a single-region deployment).

use async_trait::async_trait;

use super::{InMemoryStore, conflict};
use crate::domain::{Connection, ConnectionId, SessionId};
use crate::store::home_fence::{is_own_connection, own_connection};
use crate::store::{ConnectionStore, Quota, StoreError};

impl InMemoryStore {
    /// `connection` as this store records it: named as its region's.
    pub(crate) fn own_connection(&self, connection: &Connection) -> Connection {
        own_connection(self.home.as_ref(), connection)
    }

    /// Whether `connection` is this store's region's.
    fn is_own(&self, connection: &Connection) -> bool {
        is_own_connection(self.home.as_ref(), connection)
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
        let connection = &self.own_connection(connection);
        let mut state = self.lock();
        // Not the home's to admit: each region counts its own connections (see the DynamoDB
        // adapter), so a session homed elsewhere is streamed here too.
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
            .iter()
            .filter(|((s, _), c)| s == &session && self.is_own(c))
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
            .filter(|c| !c.is_expired(now) && self.is_own(c))
            .cloned())
    }

    async fn list_connections(&self, session: &SessionId) -> Result<Vec<Connection>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .connections
            .iter()
            .filter(|((s, _), c)| s == session && !c.is_expired(now) && self.is_own(c))
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
        match state.connections.get_mut(&key).filter(|c| self.is_own(c)) {
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
        let mut state = self.lock();
        let key = (session.clone(), id.clone());
        // Another region's connection is not ours to remove: absent, as it reads here.
        if !state.connections.get(&key).is_some_and(|c| self.is_own(c)) {
            return Ok(false);
        }
        let removed = state.connections.remove(&key);
        Ok(removed.is_some_and(|c| !c.is_expired(now)))
    }

    async fn sessions_with_connections(&self) -> Result<Vec<SessionId>, StoreError> {
        let now = self.clock.now();
        let mut sessions: Vec<SessionId> = self
            .lock()
            .connections
            .iter()
            .filter(|(_, c)| !c.is_expired(now) && self.is_own(c))
            .map(|((session, _), _)| session.clone())
            .collect();
        // Keyed by (session, connection): a session's connections are adjacent.
        sessions.dedup();
        Ok(sessions)
    }
}
