//! The in-memory adapter of [`RevocationStore`]: revoked targets in the store's one map,
//! swept as they lapse.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::domain::{Revocation, RevocationTarget, TokenId, UserId};
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
        // An id that no admin could have revoked (empty, unparseable) is looked up by subject only.
        let token = TokenId::parse("token_id", token_id)
            .ok()
            .map(RevocationTarget::Token);
        let subject = Some(RevocationTarget::Subject(subject.clone()));
        Ok([token, subject].into_iter().flatten().find_map(|target| {
            let until = *state.revocations.get(&target)?;
            let revocation = Revocation { target, until };
            revocation.is_in_force(now).then_some(revocation)
        }))
    }
}
