//! The tiers in read order: this process's memory (`moka`), then the shared Redis/Valkey if
//! configured. Writes go to both; every put is version-checked, so an older copy never replaces
//! a newer one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::future::Cache;
use moka::ops::compute::Op;

use super::shared::Shared;
use super::value::Value;
use crate::config::CacheSettings;
use crate::domain::Timestamp;

/// An entry of the in-process tier.
#[derive(Debug)]
struct Entry {
    stamp: String,
    value: Value,
}

/// Both tiers.
#[derive(Debug)]
pub(super) struct Tiers {
    local: Cache<String, Arc<Entry>>,
    shared: Option<Shared>,
    /// Writes made through this process: a read that began before one may have read what it
    /// replaced, so its result is dropped again ([`Tiers::fill`]).
    writes: AtomicU64,
}

impl Tiers {
    /// The tiers `settings` ask for; a shared tier whose URL the client refuses is left out
    /// (logged).
    pub(super) fn new(settings: &CacheSettings) -> Self {
        let shared = settings.redis_url.as_deref().and_then(|url| {
            Shared::new(url, settings.redis_timeout_ms, settings.ttl_ms)
                .inspect_err(|e| tracing::error!(error = %e, "cache.redis_url: unusable; the cache stays in process"))
                .ok()
        });
        Self {
            local: Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl_ms)
                .build(),
            shared,
            writes: AtomicU64::new(0),
        }
    }

    /// The live value under `key`, from the first tier that has one (a shared hit is copied
    /// into this process).
    pub(super) async fn get(&self, key: &str, now: Timestamp) -> Option<Value> {
        if let Some(entry) = self.local.get(key).await
            && entry.value.is_live(now)
        {
            super::metrics::hit("local");
            return Some(entry.value.clone());
        }
        super::metrics::miss("local");
        let shared = self.shared.as_ref()?;
        let Some(value) = shared.get(key).await.filter(|value| value.is_live(now)) else {
            super::metrics::miss("redis");
            return None;
        };
        super::metrics::hit("redis");
        self.put_local(key, value.clone()).await;
        Some(value)
    }

    /// A mark to pass to [`Tiers::fill`], taken before reading the store.
    pub(super) fn mark(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Caches `value`, read from the store since `mark`; dropped again if this process wrote
    /// anything meanwhile (the write may have changed it, and a list has no stamp to tell).
    pub(super) async fn fill(&self, key: &str, value: Value, mark: u64) {
        if self.mark() != mark {
            return;
        }
        self.put(key, value).await;
        if self.mark() != mark {
            self.remove(key).await;
        }
    }

    /// Records a write through this process: `written` replaces the entry under `key` (unless
    /// a newer one is there already), `None` drops it.
    pub(super) async fn wrote(&self, key: &str, written: Option<Value>) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        match written {
            Some(value) => self.put(key, value).await,
            None => self.remove(key).await,
        }
    }

    async fn put(&self, key: &str, value: Value) {
        if let Some(shared) = &self.shared
            && value.is_shared()
        {
            shared.put(key, &value).await;
        }
        self.put_local(key, value).await;
    }

    async fn put_local(&self, key: &str, value: Value) {
        let entry = Arc::new(Entry {
            stamp: value.stamp(),
            value,
        });
        self.local
            .entry_by_ref(key)
            .and_compute_with(|current| async move {
                match current {
                    Some(current) if current.value().stamp > entry.stamp => Op::Nop,
                    _ => Op::Put(entry),
                }
            })
            .await;
    }

    async fn remove(&self, key: &str) {
        self.local.invalidate(key).await;
        if let Some(shared) = &self.shared {
            shared.remove(key).await;
        }
    }
}
