//! The in-memory adapter of [`RegionBeatStore`]: each region's latest beat.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::domain::{RegionName, Timestamp};
use crate::store::{RegionBeatStore, StoreError};

#[async_trait]
impl RegionBeatStore for InMemoryStore {
    async fn beat(&self, region: &RegionName, at: Timestamp) -> Result<(), StoreError> {
        let mut state = self.lock();
        let last = state.beats.entry(region.clone()).or_insert(at);
        *last = (*last).max(at);
        Ok(())
    }

    async fn last_beat(&self, region: &RegionName) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.lock().beats.get(region).copied())
    }
}
