//! The in-memory adapter of [`RevocationStore`]: revoked targets in the store's one map,
//! swept as they lapse.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::domain::{Revocation, RevocationTarget, UserId};
use crate::store::{RevocationStore, StoreError};

#[async_trait]
impl RevocationStore for InMemoryStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.revocations.retain(|_, until| *until > now);
        let until = state
            .revocations
            .entry(revocation.target.clone())
            .or_insert(revocation.until);
        *until = (*until).max(revocation.until);
        Ok(())
    }

    async fn revocation(
        &self,
        token_id: &str,
        subject: &UserId,
    ) -> Result<Option<Revocation>, StoreError> {
        let now = self.clock.now();
        let state = self.lock();
        let targets = RevocationTarget::of_token(token_id, subject);
        Ok(targets.into_iter().flatten().find_map(|target| {
            let until = *state.revocations.get(&target)?;
            let revocation = Revocation { target, until };
            revocation.is_in_force(now).then_some(revocation)
        }))
    }
}
