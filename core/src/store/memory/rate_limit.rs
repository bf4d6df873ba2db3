//! The in-memory adapter of [`RateLimitStore`]: each key's TAT in the store's one map (one
//! mutex, so each decision is atomic), swept of keys back at full capacity as the map grows.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::ratelimit::{Decision, Rate, gcra};
use crate::store::{RateLimitStore, StoreError};

/// Keys at full capacity (a TAT in the past) are swept whenever the map holds a multiple of this
/// many (amortised, as the other maps are).
const SWEEP_EVERY: usize = 1024;

#[async_trait]
impl RateLimitStore for InMemoryStore {
    async fn acquire_rate(&self, key: &str, rate: Rate) -> Result<Decision, StoreError> {
        let now = gcra::micros_of_millis(self.clock.now().unix_millis());
        let mut state = self.lock();
        if state.rate_limits.len().is_multiple_of(SWEEP_EVERY) {
            state.rate_limits.retain(|_, tat| *tat > now);
        }
        let (decision, next) = gcra::decide(rate, state.rate_limits.get(key).copied(), now);
        if let Some(next) = next {
            state.rate_limits.insert(key.to_owned(), next);
        }
        Ok(decision)
    }
}
