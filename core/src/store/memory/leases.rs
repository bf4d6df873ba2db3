//! The in-memory adapter of [`LeaseStore`]: leases by name, lapsed rather than removed so
//! fencing tokens keep growing.

use std::time::Duration;

use async_trait::async_trait;

use super::InMemoryStore;
use crate::domain::Lease;
use crate::store::{LeaseStore, StoreError};

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
