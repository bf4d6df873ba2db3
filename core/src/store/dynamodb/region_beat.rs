//! The DynamoDB adapter of [`RegionBeatStore`]: one item per region, `REGION#<name>` / `BEAT`
//! (beside the region's fence), put by that region only and replicated to the others.

use async_trait::async_trait;

use super::item::{ItemExt as _, key, ms, n, region_pk};
use super::write::Write;
use super::{DynamoStore, TableSpec, applied};
use crate::domain::{RegionName, Timestamp};
use crate::store::ports::{GET_ITEM, MethodActions, PUT_ITEM};
use crate::store::{RegionBeatStore, StoreError};

/// The sort key of a region's beat item.
const BEAT_SK: &str = "BEAT";

/// How long a beat item outlives its last beat: a region gone for a day leaves no item.
const BEAT_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn beat_key(region: &RegionName) -> super::item::Item {
    key(region_pk(region), BEAT_SK)
}

/// The DynamoDB actions of each method of [`RegionBeatStore`] here (checked against the calls
/// in this file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] =
    &[("beat", &[PUT_ITEM]), ("last_beat", &[GET_ITEM])];

#[async_trait]
impl RegionBeatStore for DynamoStore {
    async fn beat(&self, region: &RegionName, at: Timestamp) -> Result<(), StoreError> {
        let mut item = beat_key(region);
        item.extend([
            ("at".to_owned(), ms(at)),
            (
                TableSpec::TTL.to_owned(),
                n(at.plus(BEAT_KEPT).unix_seconds_ceil()),
            ),
        ]);
        let put = Write::put(item)
            .when("attribute_not_exists(#PK) OR #at < :at")
            .bind(":at", ms(at));
        // A failed condition is a later beat of the region, kept.
        applied(self.write(put).await).map(|_| ())
    }

    async fn last_beat(&self, region: &RegionName) -> Result<Option<Timestamp>, StoreError> {
        let Some(item) = self.get(beat_key(region)).await? else {
            return Ok(None);
        };
        Ok(Some(item.timestamp("at")?))
    }
}
