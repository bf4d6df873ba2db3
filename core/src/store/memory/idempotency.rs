//! The in-memory adapter of [`IdempotencyStore`]: claims by user and key.

use std::time::Duration;

use async_trait::async_trait;

use super::{IdempotencyEntry, InMemoryStore, conflict};
use crate::domain::{IdempotencyClaim, IdempotencyKey, RequestFingerprint, StoredResponse, UserId};
use crate::store::{IDEMPOTENCY_LOCK, IdempotencyStore, StoreError};

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
