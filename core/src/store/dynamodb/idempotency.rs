//! The DynamoDB adapter of [`IdempotencyStore`]: one item per user and key
//! (`IDEM#<user>` / `KEY#<key>`), pending while its request runs, then holding the response.

use crate::store::ports::{DELETE_ITEM, GET_ITEM, MethodActions, PUT_ITEM, UPDATE_ITEM};
use std::time::Duration;

use async_trait::async_trait;

use super::item::{Item, ItemExt as _, key, ms, n, response_attributes, response_from, s};
use super::write::Write;
use super::{DynamoStore, LIVE, TableSpec, applied};
use crate::domain::{IdempotencyClaim, IdempotencyKey, RequestFingerprint, StoredResponse, UserId};
use crate::store::{IDEMPOTENCY_LOCK, IdempotencyStore, StoreError};

fn idempotency_key(owner: &UserId, key_: &IdempotencyKey) -> Item {
    key(format!("IDEM#{owner}"), format!("KEY#{}", key_.as_str()))
}

/// The DynamoDB actions of each method of [`IdempotencyStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[
    ("claim_idempotency", &[PUT_ITEM, GET_ITEM]),
    ("complete_idempotency", &[UPDATE_ITEM]),
    ("abandon_idempotency", &[DELETE_ITEM]),
];

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_idempotency(
        &self,
        owner: &UserId,
        key_: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        ttl: Duration,
    ) -> Result<IdempotencyClaim, StoreError> {
        for _ in 0..4 {
            let now = self.clock.now();
            let expires_at = now.plus(ttl);
            let mut record = idempotency_key(owner, key_);
            record.extend([
                ("fingerprint".to_owned(), s(fingerprint.as_str())),
                ("state".to_owned(), s("pending")),
                ("locked_until".to_owned(), ms(now.plus(IDEMPOTENCY_LOCK))),
                ("expires_at".to_owned(), ms(expires_at)),
                (TableSpec::TTL.to_owned(), n(expires_at.unix_seconds_ceil())),
            ]);
            let claim = Write::put(record)
                .when(
                    "attribute_not_exists(#PK) OR #expires_at <= :now \
                     OR (#fingerprint = :fingerprint AND #state = :pending AND #locked_until <= :now)",
                )
                .bind(":now", ms(now))
                .bind(":fingerprint", s(fingerprint.as_str()))
                .bind(":pending", s("pending"));
            if applied(self.write(claim).await)? {
                return Ok(IdempotencyClaim::Claimed);
            }
            let Some(existing) = self.get(idempotency_key(owner, key_)).await? else {
                continue; // expired and deleted meanwhile: claim again
            };
            if existing.timestamp("expires_at")? <= now {
                continue;
            }
            if existing.string("fingerprint")? != fingerprint.as_str() {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if existing.string("state")? == "done" {
                return Ok(IdempotencyClaim::Completed(response_from(&existing)?));
            }
            if existing.timestamp("locked_until")? > now {
                return Ok(IdempotencyClaim::InProgress);
            }
        }
        Err(StoreError::Conflict {
            entity: "idempotency key",
            id: key_.as_str().to_owned(),
        })
    }

    async fn complete_idempotency(
        &self,
        owner: &UserId,
        key_: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut complete = Write::update(
            idempotency_key(owner, key_),
            "SET #state = :done, #response_status = :response_status, \
             #response_headers = :response_headers, #response_body = :response_body",
        )
        .when(&format!(
            "{LIVE} AND #fingerprint = :fingerprint AND #state = :pending"
        ))
        .bind(":now", ms(now))
        .bind(":done", s("done"))
        .bind(":pending", s("pending"))
        .bind(":fingerprint", s(fingerprint.as_str()));
        for (name, value) in response_attributes(response) {
            complete = complete.bind(&format!(":{name}"), value);
        }
        if applied(self.write(complete).await)? {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                entity: "idempotency key",
                id: key_.as_str().to_owned(),
            })
        }
    }

    async fn abandon_idempotency(
        &self,
        owner: &UserId,
        key_: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<(), StoreError> {
        let abandon = Write::delete(idempotency_key(owner, key_))
            .when("#fingerprint = :fingerprint AND #state = :pending")
            .bind(":fingerprint", s(fingerprint.as_str()))
            .bind(":pending", s("pending"));
        // Nothing to abandon (already completed or taken over) is fine.
        applied(self.write(abandon).await).map(|_| ())
    }
}
