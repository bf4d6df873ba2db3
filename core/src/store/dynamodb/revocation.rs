//! The DynamoDB adapter of [`RevocationStore`]: one item per revoked target,
//! `REVOKED#jti#<token id>` or `REVOKED#sub#<user>` / `REVOKED`, whose TTL is the revocation's
//! `until` (for a token, its expiry), so the list never outgrows the tokens it refuses.
//!
//! Reads are two `GetItem`s sent together, eventually consistent: half the read cost of
//! consistent reads, on the hottest read of the service (every door, every cache miss), and
//! an eventually consistent read reflects a write within about a second, well inside the
//! bound the doors' cache already puts on when a revocation takes effect
//! (`auth.revocation_cache_ms`). Two `GetItem`s rather than one `BatchGetItem`: the same
//! cost and round trip, without unprocessed keys to retry, and within the `GetItem` every
//! door's role already has.

use crate::store::ports::{GET_ITEM, MethodActions, PUT_ITEM};
use async_trait::async_trait;

use super::item::{Item, ItemExt as _, key, ms, n};
use super::write::{Write, classify};
use super::{DynamoStore, TableSpec, applied};
use crate::domain::{Revocation, RevocationTarget, Timestamp, UserId};
use crate::store::{RevocationStore, StoreError};

const REVOKED_SK: &str = "REVOKED";

fn revocation_key(target: &RevocationTarget) -> Item {
    let pk = match target {
        RevocationTarget::Token(id) => format!("REVOKED#jti#{id}"),
        RevocationTarget::Subject(user) => format!("REVOKED#sub#{user}"),
    };
    key(pk, REVOKED_SK)
}

impl DynamoStore {
    /// The revocation of `target` in force at `now`, read eventually consistently.
    async fn revocation_of(
        &self,
        target: Option<RevocationTarget>,
        now: Timestamp,
    ) -> Result<Option<Revocation>, StoreError> {
        let Some(target) = target else {
            return Ok(None);
        };
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(revocation_key(&target)))
            .consistent_read(false)
            .send()
            .await
            .map_err(classify)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let revocation = Revocation {
            target,
            until: item.timestamp("expires_at")?,
        };
        Ok(revocation.is_in_force(now).then_some(revocation))
    }
}

/// The DynamoDB actions of each method of [`RevocationStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] =
    &[("revoke", &[PUT_ITEM]), ("revocation", &[GET_ITEM])];

#[async_trait]
impl RevocationStore for DynamoStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let mut record = revocation_key(&revocation.target);
        record.extend([
            ("expires_at".to_owned(), ms(revocation.until)),
            (
                TableSpec::TTL.to_owned(),
                n(revocation.until.unix_seconds_ceil()),
            ),
        ]);
        let put = Write::put(record)
            .when("attribute_not_exists(#PK) OR #expires_at < :until")
            .bind(":until", ms(revocation.until));
        // A failed condition is a revocation of the same target that lasts at least as long.
        applied(self.write(put).await).map(|_| ())
    }

    async fn revocation(
        &self,
        token_id: &str,
        subject: &UserId,
    ) -> Result<Option<Revocation>, StoreError> {
        let now = self.clock.now();
        let [token, subject] = RevocationTarget::of_token(token_id, subject);
        let (token, subject) = tokio::try_join!(
            self.revocation_of(token, now),
            self.revocation_of(subject, now)
        )?;
        Ok(token.or(subject))
    }
}
