//! The home fence of session-item writes (`docs/multi-region.md`: "every conditional write
//! names its region"): in a multi-region deployment each write to a session item, whatever
//! else it changes (its counters above all), holds only while the session is homed in this
//! region. Without a fence (single-region) nothing is added.

use super::DynamoStore;
use super::item::{Item, SESSION_SK, counters_key, key, s, session_from, session_pk};
use super::write::Write;
use crate::domain::{SessionId, UserId};
use crate::store::{HomeFence, StoreError};

impl DynamoStore {
    /// `write` (to a session item) made conditional on the session being homed here: its
    /// `home_region` is this region, or absent when this is the primary region.
    pub(super) fn homed_here(&self, write: Write) -> Write {
        let Some(fence) = &self.home else {
            return write;
        };
        let condition = if fence.is_primary() {
            "(attribute_not_exists(#home_region) OR #home_region = :this_region)"
        } else {
            "#home_region = :this_region"
        };
        write
            .and_when(condition)
            .bind(":this_region", s(fence.this().as_str()))
    }

    /// The key of `owner`'s counters in this region: suffixed by the region in a region other
    /// than the primary, the unsuffixed item otherwise (see [`counters_key`]).
    pub(super) fn counters_key(&self, owner: &UserId) -> Item {
        counters_key(owner, self.home.as_ref().and_then(HomeFence::key_region))
    }

    /// After a fenced session-item write failed: [`StoreError::NotHome`] if the session (as
    /// read now) is homed in another region, else `None` (the failure has another cause).
    pub(super) async fn not_home(&self, id: &SessionId) -> Result<Option<StoreError>, StoreError> {
        let Some(fence) = &self.home else {
            return Ok(None);
        };
        let Some(item) = self.get(key(session_pk(id), SESSION_SK)).await? else {
            return Ok(None);
        };
        let session = session_from(&item)?;
        Ok(
            (!fence.is_home(session.home_region.as_ref())).then(|| StoreError::NotHome {
                id: id.to_string(),
                home_region: fence.resolve(session.home_region.as_ref()).clone(),
                home_epoch: session.home_epoch,
            }),
        )
    }
}
