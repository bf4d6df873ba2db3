//! The shared tier: a Redis/Valkey every process of the service reads and fills. Best effort:
//! a call that fails or outlasts its timeout is counted, logged (at most every
//! [`LOG_EVERY`]) and taken as a miss, and the tier is then skipped for [`PAUSE`] so a dead
//! server costs one timeout per pause rather than one per read.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};
use tracing::warn;

use super::value::Value;

/// How long the tier is skipped after a failure.
const PAUSE: Duration = Duration::from_secs(1);
/// The least time between two warnings about the tier.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Sets `KEYS[1]` to `ARGV[1] | ARGV[2]` for `ARGV[3]` ms unless it holds a newer stamp: a
/// process that read an item before another wrote it never puts the older copy back.
const PUT_IF_NEWER: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local bar = string.find(current, '|', 1, true)
  if bar and string.sub(current, 1, bar - 1) > ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
";

/// The shared tier's client.
pub(super) struct Shared {
    connection: ConnectionManager,
    put_if_newer: Script,
    timeout: Duration,
    ttl: Duration,
    /// Until when the tier is skipped, after a failure.
    paused_until: Mutex<Option<Instant>>,
    /// When the last warning was logged (ms since `started`), and failures since.
    last_warning_ms: AtomicU64,
    suppressed: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A client of the server at `url` that connects on first use.
    ///
    /// # Errors
    /// `url` is not a Redis URL.
    pub(super) fn new(url: &str, timeout: Duration, ttl: Duration) -> redis::RedisResult<Self> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_lazy_with_config(redis::Client::open(url)?, config)?;
        Ok(Self {
            connection,
            put_if_newer: Script::new(PUT_IF_NEWER),
            timeout,
            ttl,
            paused_until: Mutex::new(None),
            last_warning_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// The value under `key`, if the tier holds one it can decode; `None` on a miss or when the
    /// tier is skipped or failing.
    pub(super) async fn get(&self, key: &str) -> Option<Value> {
        let mut connection = self.connection.clone();
        let text: Option<String> = self
            .call("get", async move { connection.get(key).await })
            .await
            .flatten();
        let text = text?;
        let (_, json) = text.split_once('|')?;
        match serde_json::from_str(json) {
            Ok(value) => Some(value),
            Err(e) => {
                self.failed("decode", &e);
                None
            }
        }
    }

    /// Stores `value` under `key` unless the tier holds a newer version.
    pub(super) async fn put(&self, key: &str, value: &Value) {
        let json = match serde_json::to_string(value) {
            Ok(json) => json,
            Err(e) => return self.failed("encode", &e),
        };
        let mut invocation = self.put_if_newer.key(key);
        invocation
            .arg(value.stamp())
            .arg(json)
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let mut connection = self.connection.clone();
        let _: Option<i64> = self
            .call("put", async move {
                invocation.invoke_async(&mut connection).await
            })
            .await;
    }

    /// Drops `key`.
    pub(super) async fn remove(&self, key: &str) {
        let mut connection = self.connection.clone();
        let _: Option<i64> = self
            .call("remove", async move { connection.del(key).await })
            .await;
    }

    /// Runs `call` within the timeout unless the tier is paused; its value, or `None` after
    /// counting and logging the failure.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        if self.is_paused() {
            super::metrics::skipped();
            return None;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.failed(operation, &e);
                None
            }
            Err(elapsed) => {
                self.failed(operation, &elapsed);
                None
            }
        }
    }

    fn is_paused(&self) -> bool {
        let mut paused = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *paused {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *paused = None;
                false
            }
            None => false,
        }
    }

    /// Counts a failure, pauses the tier (not for an undecodable entry: the server is fine)
    /// and warns, at most every [`LOG_EVERY`].
    fn failed(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        super::metrics::error(operation);
        if operation != "decode" && operation != "encode" {
            *self
                .paused_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + PAUSE);
        }
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_warning_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            warn!(
                operation,
                error = %error,
                suppressed,
                "the shared cache failed; reads go to the store until it answers"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
