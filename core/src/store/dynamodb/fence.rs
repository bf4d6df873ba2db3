//! The fence of a region a failover takes sessions from (`docs/multi-region.md`, "Failover of
//! a session's home"): one item, `REGION#<name>` / `FENCE`, written once and kept until the
//! region is reconciled. Only `session-admin region failover` writes it, as the `recovery`
//! component.

use super::DynamoStore;
use super::item::{ItemExt as _, key, ms, region_pk, s};
use super::write::{Write, WriteError};
use crate::domain::{RegionName, Timestamp};
use crate::store::StoreError;

/// The sort key of a region's fence item.
const FENCE_SK: &str = "FENCE";

/// The fence as the failover found or set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// This call set it.
    Set {
        /// When.
        at: Timestamp,
    },
    /// An earlier failover had set it (re-runs are idempotent).
    Already {
        /// When it was set.
        at: Timestamp,
        /// The region the failover that set it moved sessions to.
        by: String,
    },
}

/// A region's fence as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// When the failover set it.
    pub at: Timestamp,
    /// The region that failover moved the sessions to.
    pub by: String,
}

impl DynamoStore {
    /// The fence of `region`, if a failover set one.
    ///
    /// # Errors
    /// The store's, or a fence item that cannot be read.
    pub async fn region_fence(&self, region: &RegionName) -> Result<Option<Fenced>, StoreError> {
        let Some(found) = self.get(key(region_pk(region), FENCE_SK)).await? else {
            return Ok(None);
        };
        Ok(Some(Fenced {
            at: Timestamp::from_unix_millis(found.number("fenced_at")?),
            by: found.string("fenced_by")?.to_owned(),
        }))
    }

    /// Marks `region` fenced by a failover to `by`, unless it is fenced already.
    ///
    /// # Errors
    /// The store's, or a fence item that cannot be read.
    pub async fn fence_region(
        &self,
        region: &RegionName,
        by: &RegionName,
    ) -> Result<Fence, StoreError> {
        let at = self.clock.now();
        let mut item = key(region_pk(region), FENCE_SK);
        item.insert("fenced_at".to_owned(), ms(at));
        item.insert("fenced_by".to_owned(), s(by.as_str()));
        match self
            .write(Write::put(item).when("attribute_not_exists(#PK)"))
            .await
        {
            Ok(_) => Ok(Fence::Set { at }),
            Err(WriteError::Store(e)) => Err(e),
            Err(WriteError::ConditionFailed) => match self.region_fence(region).await? {
                Some(Fenced { at, by }) => Ok(Fence::Already { at, by }),
                // Set and gone between the two calls: only a person deletes a fence.
                None => Err(StoreError::Conflict {
                    entity: "region fence",
                    id: region.to_string(),
                }),
            },
        }
    }
}
