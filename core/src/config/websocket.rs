//! `websocket`: connection liveness, reconnect advice, and the origins allowed.

use std::time::Duration;

use serde::Deserialize;

use super::duration::{check_range, whole_secs};
use super::{ConfigError, invalid, validate_origins};

/// WebSocket connections: liveness and reconnect advice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// A connection not heard from for this long is dead and its record expires.
    #[serde(deserialize_with = "super::duration::secs")]
    pub heartbeat_timeout_secs: Duration,
    /// API Gateway's cap on a connection's life (2 hours); shorter in tests.
    #[serde(deserialize_with = "super::duration::secs")]
    pub max_connection_secs: Duration,
    /// Advise reconnecting this long before the cap.
    #[serde(deserialize_with = "super::duration::secs")]
    pub reconnect_before_cap_secs: Duration,
    /// A round-trip time above this is poor. This and `poor_jitter_ms` stay integers, not
    /// `Duration`s: they are compared with the milliseconds clients measure and report in
    /// their heartbeats.
    pub poor_rtt_ms: u32,
    /// A jitter above this is poor.
    pub poor_jitter_ms: u32,
    /// This many heartbeats missed at once make the connection poor.
    pub max_missed_heartbeats: u64,
    /// Browser origins allowed to open connections: the frontends', the same list as the HTTP
    /// API's CORS. A handshake whose `Origin` is not listed is refused; one without `Origin`
    /// (not a browser) is not; empty refuses every `Origin`.
    pub allowed_origins: Vec<String>,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            heartbeat_timeout_secs: Duration::from_secs(90),
            max_connection_secs: Duration::from_secs(2 * 3600),
            reconnect_before_cap_secs: Duration::from_secs(300),
            poor_rtt_ms: 2000,
            poor_jitter_ms: 500,
            max_missed_heartbeats: 3,
            allowed_origins: Vec::new(),
        }
    }
}

impl WebSocketSettings {
    /// The thresholds of reconnect advice.
    pub fn advice_policy(&self) -> crate::domain::AdvicePolicy {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        crate::domain::AdvicePolicy {
            max_age_ms: ms(self.max_connection_secs),
            reconnect_before_cap_ms: ms(self.reconnect_before_cap_secs),
            poor_rtt_ms: self.poor_rtt_ms,
            poor_jitter_ms: self.poor_jitter_ms,
            max_missed_heartbeats: self.max_missed_heartbeats,
        }
    }
}

impl WebSocketSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "websocket.heartbeat_timeout_secs",
            whole_secs(self.heartbeat_timeout_secs),
            10..=3600,
        )?;
        check_range(
            "websocket.max_connection_secs",
            whole_secs(self.max_connection_secs),
            60..=7200,
        )?;
        if self.reconnect_before_cap_secs >= self.max_connection_secs {
            return invalid(
                "websocket.reconnect_before_cap_secs",
                "must be below websocket.max_connection_secs",
            );
        }
        validate_origins("websocket.allowed_origins", &self.allowed_origins)
    }
}
