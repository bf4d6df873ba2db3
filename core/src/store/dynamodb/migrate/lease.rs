//! The `migrations` lease: one runner at a time, on the store's ordinary lease (a conditional
//! write with an expiry), whose fencing token fences the runner's checkpoints.

use std::time::Duration;

use super::super::DynamoStore;
use crate::domain::Lease;
use crate::store::{LeaseStore, StoreError};

/// The lease's name (`LEASE#migrations`).
pub(super) const LEASE_NAME: &str = "migrations";

/// A held `migrations` lease.
pub(super) struct MigrationLease {
    lease: Lease,
    ttl: Duration,
}

impl MigrationLease {
    /// Takes the lease for `owner`; [`StoreError::LeaseHeld`] names the runner holding it.
    pub(super) async fn acquire(
        store: &DynamoStore,
        owner: &str,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let lease = store.acquire_lease(LEASE_NAME, owner, ttl).await?;
        Ok(Self { lease, ttl })
    }

    /// The runner holding the lease now, if any.
    pub(super) async fn holder(store: &DynamoStore) -> Result<Option<String>, StoreError> {
        Ok(store.get_lease(LEASE_NAME).await?.map(|l| l.owner))
    }

    /// The fencing token: grows each time the lease changes hands.
    pub(super) fn token(&self) -> u64 {
        self.lease.token
    }

    /// Extends the lease by its time to live; [`StoreError::LeaseLost`] if it lapsed and
    /// changed hands.
    pub(super) async fn renew(&mut self, store: &DynamoStore) -> Result<(), StoreError> {
        self.lease = store.renew_lease(&self.lease, self.ttl).await?;
        Ok(())
    }

    /// Lets the lease lapse now.
    pub(super) async fn release(self, store: &DynamoStore) -> Result<(), StoreError> {
        store.release_lease(&self.lease).await
    }
}
