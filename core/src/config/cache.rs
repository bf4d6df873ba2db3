//! `cache`: the read-through cache of hot store reads (`crate::cache`), in process and, when a
//! URL is set, in a shared Redis/Valkey behind it.

use std::time::Duration;

use serde::Deserialize;

use super::duration::check_range;
use super::{ConfigError, invalid};

/// Cache settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// The off switch: `false` sends every read to the store.
    pub enabled: bool,
    /// How long an entry is served: the longest a change made by another process can go
    /// unseen (this process's own writes replace or drop their entries at once).
    #[serde(deserialize_with = "super::duration::millis")]
    pub ttl_ms: Duration,
    /// Entries held in process, at most (least recently and frequently used go first).
    pub max_entries: u64,
    /// A shared Redis/Valkey (`redis://host:port`, `rediss://` for TLS) behind the in-process
    /// tier; unset, the cache is in process only.
    pub redis_url: Option<String>,
    /// A Redis call that takes longer is abandoned and the tier skipped for that read: a slow
    /// cache must cost less than the DynamoDB read it saves.
    #[serde(deserialize_with = "super::duration::millis")]
    pub redis_timeout_ms: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_ms: Duration::from_millis(2_000),
            max_entries: 10_000,
            redis_url: None,
            redis_timeout_ms: Duration::from_millis(50),
        }
    }
}

impl CacheSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_range("cache.ttl_ms", self.ttl_ms.as_millis(), 10..=60_000)?;
        check_range(
            "cache.max_entries",
            u128::from(self.max_entries),
            1..=10_000_000,
        )?;
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return invalid(
                "cache.redis_url",
                "must be a redis:// or rediss:// URL (redis://host:6379)",
            );
        }
        check_range(
            "cache.redis_timeout_ms",
            self.redis_timeout_ms.as_millis(),
            1..=5_000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_in_process_only() {
        let settings = CacheSettings::default();
        assert!(settings.validate().is_ok());
        assert!(settings.enabled && settings.redis_url.is_none());
    }

    #[test]
    fn a_redis_url_of_another_scheme_is_refused_naming_the_setting() {
        let settings = CacheSettings {
            redis_url: Some("http://cache:6379".to_owned()),
            ..CacheSettings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("cache.redis_url"), "{error}");
    }

    #[test]
    fn a_ttl_out_of_range_is_refused_naming_the_setting() {
        let settings = CacheSettings {
            ttl_ms: Duration::from_secs(600),
            ..CacheSettings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("cache.ttl_ms"), "{error}");
    }
}
