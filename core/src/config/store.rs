//! `store`: which adapter holds session state, and how patiently DynamoDB is called.

use std::time::Duration;

use serde::Deserialize;

use super::duration::check_range;
use super::{ConfigError, invalid};

/// Where session state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// This process's memory: the embedded default.
    Memory,
    /// A DynamoDB table (or a DynamoDB-API server such as moto's).
    Dynamodb,
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Which adapter.
    pub backend: StoreBackend,
    /// The DynamoDB table.
    pub table_name: String,
    /// A DynamoDB endpoint other than AWS's (e.g. `http://127.0.0.1:5000`).
    pub endpoint: Option<String>,
    /// One DynamoDB request that takes longer is abandoned and retried (a hung connection,
    /// not a slow table: DynamoDB answers in milliseconds).
    #[serde(deserialize_with = "super::duration::millis")]
    pub attempt_timeout_ms: Duration,
    /// A store call, retries included, fails as unavailable after this long, well within the
    /// functions' timeouts.
    #[serde(deserialize_with = "super::duration::millis")]
    pub call_timeout_ms: Duration,
    /// Establishing a connection to DynamoDB (TCP and TLS) that takes longer is abandoned, and
    /// the attempt retried on another.
    #[serde(deserialize_with = "super::duration::millis")]
    pub connect_timeout_ms: Duration,
    /// Most idle connections to DynamoDB the client keeps for reuse; a burst beyond them opens
    /// connections that are closed once it is over.
    pub pool_max_idle_per_host: u32,
    /// An idle pooled connection is closed after this long (before a load balancer's idle
    /// timeout drops it under a request).
    #[serde(deserialize_with = "super::duration::millis")]
    pub pool_idle_timeout_ms: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            table_name: "session-service".to_owned(),
            endpoint: None,
            attempt_timeout_ms: Duration::from_millis(3_000),
            call_timeout_ms: Duration::from_millis(8_000),
            connect_timeout_ms: Duration::from_millis(1_000),
            pool_max_idle_per_host: 32,
            pool_idle_timeout_ms: Duration::from_millis(50_000),
        }
    }
}

impl StoreSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let table = &self.table_name;
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return invalid(
                "store.table_name",
                "must be 3 to 255 letters, digits, '_', '.' or '-'",
            );
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return invalid("store.endpoint", "must be an http:// or https:// URL");
        }
        check_range(
            "store.attempt_timeout_ms",
            self.attempt_timeout_ms.as_millis(),
            100..=60_000,
        )?;
        if !(self.attempt_timeout_ms..=Duration::from_secs(60)).contains(&self.call_timeout_ms) {
            return invalid(
                "store.call_timeout_ms",
                "must be between store.attempt_timeout_ms and 60000",
            );
        }
        if self.connect_timeout_ms > self.attempt_timeout_ms {
            return invalid(
                "store.connect_timeout_ms",
                "must be at most store.attempt_timeout_ms",
            );
        }
        check_range(
            "store.connect_timeout_ms",
            self.connect_timeout_ms.as_millis(),
            50..=60_000,
        )?;
        check_range(
            "store.pool_max_idle_per_host",
            u128::from(self.pool_max_idle_per_host),
            1..=1_024,
        )?;
        check_range(
            "store.pool_idle_timeout_ms",
            self.pool_idle_timeout_ms.as_millis(),
            1_000..=3_600_000,
        )?;
        Ok(())
    }
}
