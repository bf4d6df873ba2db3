//! The DynamoDB adapter of [`LeaseStore`]: one item per lease (`LEASE#<name>` / `LEASE`),
//! lapsed rather than deleted so its fencing token keeps growing.

use crate::store::ports::{GET_ITEM, MethodActions, UPDATE_ITEM};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{Item, key, lease_from, ms, n, s};
use super::write::{Write, WriteError, backend};
use super::{DynamoStore, MissingReturnValues, applied};
use crate::domain::Lease;
use crate::store::{LeaseStore, StoreError};

/// Lapsed leases are kept this long so fencing tokens keep growing across holders.
const LEASE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn lease_key(name: &str) -> Item {
    key(format!("LEASE#{name}"), "LEASE")
}

/// The DynamoDB actions of each method of [`LeaseStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[
    ("acquire_lease", &[UPDATE_ITEM, GET_ITEM]),
    ("renew_lease", &[UPDATE_ITEM]),
    ("mark_draining", &[UPDATE_ITEM]),
    ("release_lease", &[UPDATE_ITEM]),
    ("get_lease", &[GET_ITEM]),
];

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        for _ in 0..4 {
            let now = self.clock.now();
            let expires_at = now.plus(ttl);
            let ttl_seconds = n(expires_at.plus(LEASE_RETENTION).unix_seconds_ceil());
            // Free or lapsed: take it with the next fencing token.
            let take = Write::update(
                lease_key(name),
                "SET #name = :name, #owner = :owner, #expires_at = :expires_at, #ttl = :ttl, \
                 #draining = :false, #token = if_not_exists(#token, :zero) + :one",
            )
            .when("attribute_not_exists(#PK) OR #expires_at <= :now")
            .bind(":name", s(name))
            .bind(":owner", s(owner))
            .bind(":expires_at", ms(expires_at))
            .bind(":ttl", ttl_seconds.clone())
            .bind(":zero", n(0))
            .bind(":one", n(1))
            .bind(":false", AttributeValue::Bool(false))
            .bind(":now", ms(now));
            match self.write(take).await {
                Ok(Some(item)) => return lease_from(&item),
                Ok(None) => return Err(backend(MissingReturnValues)),
                Err(WriteError::Store(e)) => return Err(e),
                Err(WriteError::ConditionFailed) => {}
            }
            // Already ours and live: extend it, same token (acquiring clears draining).
            let extend = Write::update(
                lease_key(name),
                "SET #expires_at = :expires_at, #ttl = :ttl, #draining = :false",
            )
            .when("#owner = :owner AND #expires_at > :now")
            .bind(":false", AttributeValue::Bool(false))
            .bind(":owner", s(owner))
            .bind(":expires_at", ms(expires_at))
            .bind(":ttl", ttl_seconds)
            .bind(":now", ms(now));
            match self.write(extend).await {
                Ok(Some(item)) => return lease_from(&item),
                Ok(None) => return Err(backend(MissingReturnValues)),
                Err(WriteError::Store(e)) => return Err(e),
                Err(WriteError::ConditionFailed) => {}
            }
            if let Some(item) = self.get(lease_key(name)).await? {
                let held = lease_from(&item)?;
                if !held.is_expired(self.clock.now()) && held.owner != owner {
                    return Err(StoreError::LeaseHeld {
                        name: name.to_owned(),
                        owner: held.owner,
                        expires_at: held.expires_at,
                    });
                }
            }
            // It lapsed or changed between our writes and the read: try again.
        }
        Err(StoreError::Conflict {
            entity: "lease",
            id: name.to_owned(),
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let expires_at = self.clock.now().plus(ttl);
        let renew = Write::update(
            lease_key(&lease.name),
            "SET #expires_at = :expires_at, #ttl = :ttl",
        )
        .when("#owner = :owner AND #token = :token")
        .bind(":owner", s(&lease.owner))
        .bind(":token", n(lease.token))
        .bind(":expires_at", ms(expires_at))
        .bind(
            ":ttl",
            n(expires_at.plus(LEASE_RETENTION).unix_seconds_ceil()),
        );
        match self.write(renew).await {
            Ok(Some(item)) => lease_from(&item),
            Ok(None) => Err(backend(MissingReturnValues)),
            Err(WriteError::ConditionFailed) => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    async fn mark_draining(&self, lease: &Lease) -> Result<Lease, StoreError> {
        // Only while live, unlike a renewal: a lapsed lease serves nobody, so nothing drains.
        let mark = Write::update(lease_key(&lease.name), "SET #draining = :true")
            .when("#owner = :owner AND #token = :token AND #expires_at > :now")
            .bind(":owner", s(&lease.owner))
            .bind(":token", n(lease.token))
            .bind(":true", AttributeValue::Bool(true))
            .bind(":now", ms(self.clock.now()));
        match self.write(mark).await {
            Ok(Some(item)) => lease_from(&item),
            Ok(None) => Err(backend(MissingReturnValues)),
            Err(WriteError::ConditionFailed) => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        // Lapse it rather than delete it, so the next holder's token is still higher.
        let release = Write::update(lease_key(&lease.name), "SET #expires_at = :now")
            .when("#owner = :owner AND #token = :token")
            .bind(":owner", s(&lease.owner))
            .bind(":token", n(lease.token))
            .bind(":now", ms(self.clock.now()));
        applied(self.write(release).await).map(|_| ())
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let now = self.clock.now();
        let lease = self
            .get(lease_key(name))
            .await?
            .as_ref()
            .map(lease_from)
            .transpose()?;
        Ok(lease.filter(|l| !l.is_expired(now)))
    }
}
