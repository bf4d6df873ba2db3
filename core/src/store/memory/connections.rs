//! The in-memory adapter of [`ConnectionStore`]: WebSocket connections by session; the quota
//! counts the unexpired ones.

use async_trait::async_trait;

use super::{InMemoryStore, conflict};
use crate::domain::{Connection, ConnectionId, SessionId};
use crate::store::{ConnectionStore, Quota, StoreError};

#[async_trait]
impl ConnectionStore for InMemoryStore {
    async fn put_connection(
        &self,
        connection: &Connection,
        max_per_session: u32,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        self.check_home(&state, &connection.session_id)?;
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
        let mut state = self.lock();
        if state
            .connections
            .contains_key(&(session.clone(), id.clone()))
        {
            self.check_home(&state, session)?;
        }
        let removed = state.connections.remove(&(session.clone(), id.clone()));
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
