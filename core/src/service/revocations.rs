//! Revoking bearer tokens, and the check every door makes: the REST API where it extracts the
//! caller, the WebSocket `$connect` and the SSE connect for the token a ticket was minted with.

use tracing::{info, instrument};

use super::{ServiceError, SessionService};
use crate::auth::{Principal, RevocationCheck, RevocationError};
use crate::domain::{Revocation, RevocationTarget, Timestamp, UserId, ValidationError};

impl SessionService {
    /// Passes unless the token `token_id` or its subject `user` is revoked, as seen within the
    /// revocation cache's bound (`auth.revocation_cache_ms`).
    ///
    /// # Errors
    /// `TokenRevoked`, or the store could not be asked.
    pub async fn ensure_not_revoked(
        &self,
        token_id: &str,
        user: &UserId,
    ) -> Result<(), ServiceError> {
        not_revoked(&self.revocations, token_id, user).await
    }

    /// Revokes `target` until `until` (named `until_field` in errors; default: the longest
    /// token life from now, by when every token it could refuse has expired).
    ///
    /// # Errors
    /// `Invalid` when `until` is not in the future or lies further ahead than the longest token
    /// life; or the store failed.
    #[instrument(skip_all, fields(admin = %caller.user, %target))]
    pub async fn revoke(
        &self,
        caller: &Principal,
        target: RevocationTarget,
        until: Option<Timestamp>,
        until_field: &str,
    ) -> Result<Revocation, ServiceError> {
        let now = self.clock.now();
        let latest = now.plus(self.max_token_life);
        let until = until.unwrap_or(latest);
        if until <= now {
            return Err(ValidationError::new(
                until_field,
                "must be in the future: a token past it is refused anyway",
            )
            .into());
        }
        if until > latest {
            return Err(ValidationError::new(
                until_field,
                format!(
                    "must be at most {} s ahead (auth.max_token_life_secs): no token lives longer",
                    self.max_token_life.as_secs()
                ),
            )
            .into());
        }
        let revocation = Revocation { target, until };
        self.revocation_list.revoke(&revocation).await?;
        info!(until = %until, "revoked");
        Ok(revocation)
    }
}

/// Passes unless `check` finds the token `token_id` or its subject `user` revoked: the check of
/// every door (REST, WebSocket `$connect`, SSE).
///
/// # Errors
/// `TokenRevoked`, or the store could not be asked.
pub(super) async fn not_revoked(
    check: &RevocationCheck,
    token_id: &str,
    user: &UserId,
) -> Result<(), ServiceError> {
    match check.check(token_id, user).await {
        Ok(()) => Ok(()),
        Err(RevocationError::Revoked(revocation)) => {
            info!(target_revoked = %revocation.target, "refused: revoked");
            Err(ServiceError::TokenRevoked)
        }
        Err(RevocationError::Store(e)) => Err(e.into()),
    }
}
