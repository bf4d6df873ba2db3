//! The in-memory adapter of [`TicketStore`]: consumed tickets and their releases.

use async_trait::async_trait;

use super::{InMemoryStore, TicketEntry, TicketRelease};
use crate::domain::{EventId, TicketId, Timestamp};
use crate::store::{StoreError, TicketStore};

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
