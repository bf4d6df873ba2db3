//! The `settings` profile: the settings that may change without a restart, as an overlay of
//! the start-up settings with the same names and units
//! (`{"limits": {"sessions_per_user": 3}, "streamer": {"max_streams_per_user": 1}}`). Absent
//! keys keep the start-up value, unknown keys are refused; the merged settings go through the
//! same validation as at start-up, so an error names the setting as a dotted path.
//!
//! The `streamer` section is read by the streamer crate (`session_streamer::runtime`), which
//! also assembles the whole document's JSON Schema (`infra/appconfig/settings.schema.json`):
//! core does not depend on it.

use std::convert::identity;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::client::AgentClient;
use super::live::{LiveDocument, Source, changed_keys};
use crate::config::{ConfigError, Limits, RateLimitSettings, RateQuota, Settings};
use crate::config::{TelemetrySettings, WebSocketSettings};

/// Why a runtime settings document was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeSettingsError {
    /// Not JSON, an unknown key, or a value of the wrong type (`path` names the key).
    #[error("settings document: {path}: {message}")]
    Malformed {
        /// The dotted path of the key at fault (`.` for the document itself).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value out of its range once merged (the error names the setting).
    #[error("settings document: {0}")]
    Invalid(#[from] ConfigError),
}

impl RuntimeSettingsError {
    /// The error of a failed deserialization, naming the path it failed at.
    pub fn malformed(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        Self::Malformed {
            path: error.path().to_string(),
            message: error.inner().to_string(),
        }
    }
}

crate::overlay! {
    /// `limits.*`, every key.
    pub struct LimitsOverlay => Limits {
        /// Open sessions one user may have.
        #[schemars(range(min = 1))]
        sessions_per_user: u32 => identity,
        /// Simulators one session may have.
        #[schemars(range(min = 1))]
        simulators_per_session: u32 => identity,
        /// WebSocket connections one session may have.
        #[schemars(range(min = 1))]
        connections_per_session: u32 => identity,
        /// Simulator events per second one user's simulators may add up to.
        #[schemars(range(min = 1))]
        events_per_second_per_user: u32 => identity,
        /// How long a new session lives, in seconds.
        #[schemars(range(min = 60))]
        session_lifetime_secs: u64 => Duration::from_secs,
    }
}

crate::overlay! {
    /// `rate_limits.*`: each class's quota, whole (`per_second` and `burst`).
    pub struct RateLimitsOverlay => RateLimitSettings {
        /// REST reads, per user.
        reads: RateQuota => identity,
        /// REST writes, per user.
        writes: RateQuota => identity,
        /// Ticket issuing, per user.
        tickets: RateQuota => identity,
        /// Simulator start and stop, per user.
        simulator_control: RateQuota => identity,
        /// Every REST route, per source address.
        per_address: RateQuota => identity,
        /// WebSocket `$connect`, per user.
        ws_connect: RateQuota => identity,
        /// WebSocket messages, per connection.
        ws_messages: RateQuota => identity,
        /// SSE stream opens, per user.
        sse_connect: RateQuota => identity,
        /// WebSocket `$connect` and SSE opens, per source address.
        connect_per_address: RateQuota => identity,
    }
}

crate::overlay! {
    /// `telemetry.log_filter`: the log level.
    pub struct TelemetryOverlay => TelemetrySettings {
        /// `tracing` filter directives (`info,session_core=debug`).
        log_filter: String => identity,
    }
}

crate::overlay! {
    /// `websocket.*`: liveness and reconnect advice.
    pub struct WebSocketOverlay => WebSocketSettings {
        /// A connection not heard from for this long is dead, in seconds.
        #[schemars(range(min = 10, max = 3600))]
        heartbeat_timeout_secs: u64 => Duration::from_secs,
        /// The cap on a connection's life, in seconds.
        #[schemars(range(min = 60, max = 7200))]
        max_connection_secs: u64 => Duration::from_secs,
        /// Advise reconnecting this long before the cap, in seconds (below the cap).
        reconnect_before_cap_secs: u64 => Duration::from_secs,
        /// A round-trip time above this is poor, in milliseconds.
        poor_rtt_ms: u32 => identity,
        /// A jitter above this is poor, in milliseconds.
        poor_jitter_ms: u32 => identity,
        /// This many heartbeats missed at once make the connection poor.
        max_missed_heartbeats: u64 => identity,
    }
}

/// A `settings` document: the runtime-changeable settings, by section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Quotas and lifetimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsOverlay>,
    /// Rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsOverlay>,
    /// The log level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryOverlay>,
    /// WebSocket liveness and advice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketOverlay>,
    /// The streamer's section, read and validated by the streamer (its schema is added to the
    /// document's by `session_streamer::runtime::schema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub streamer: Option<serde_json::Value>,
}

impl RuntimeSettings {
    /// The document's keys.
    ///
    /// # Errors
    /// It is not JSON, has an unknown key, or a value of the wrong type.
    pub fn parse(document: &[u8]) -> Result<Self, RuntimeSettingsError> {
        let mut json = serde_json::Deserializer::from_slice(document);
        serde_path_to_error::deserialize(&mut json).map_err(|e| RuntimeSettingsError::malformed(&e))
    }

    /// `startup` with this document's keys laid over it, validated as at start-up.
    ///
    /// # Errors
    /// A merged value is out of its range (the error names the setting).
    pub fn apply(&self, startup: &Settings) -> Result<Settings, ConfigError> {
        let mut settings = startup.clone();
        if let Some(limits) = &self.limits {
            limits.apply_to(&mut settings.limits);
        }
        if let Some(rate_limits) = &self.rate_limits {
            rate_limits.apply_to(&mut settings.rate_limits);
        }
        if let Some(telemetry) = &self.telemetry {
            telemetry.apply_to(&mut settings.telemetry);
        }
        if let Some(websocket) = &self.websocket {
            websocket.apply_to(&mut settings.websocket);
        }
        settings.validate()?;
        Ok(settings)
    }
}

/// The settings in force: the start-up settings with the last good document laid over them.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The document applied (empty until one is read).
    pub document: RuntimeSettings,
    /// The merged settings.
    pub settings: Arc<Settings>,
}

impl Runtime {
    /// The start-up settings, no document applied.
    pub fn startup(settings: Settings) -> Self {
        Self {
            document: RuntimeSettings::default(),
            settings: Arc::new(settings),
        }
    }

    /// `document` read and laid over `startup`.
    ///
    /// # Errors
    /// The document is malformed or a merged value out of range.
    pub fn read(startup: &Settings, document: &[u8]) -> Result<Self, RuntimeSettingsError> {
        let document = RuntimeSettings::parse(document)?;
        let settings = Arc::new(document.apply(startup)?);
        Ok(Self { document, settings })
    }

    /// The settings two runtimes' documents differ in, as dotted paths.
    pub fn changes(&self, other: &Self) -> Vec<String> {
        changed_keys(&self.document, &other.document)
    }
}

/// Where `settings` say the `settings` profile is read from; `None` without an agent.
pub fn settings_source(settings: &Settings) -> Option<Source> {
    AgentClient::from_settings(&settings.appconfig).map(|client| Source {
        client,
        profile: settings.appconfig.settings_profile.clone(),
        poll_interval: settings.appconfig.poll_interval_ms,
    })
}

/// The runtime settings of a function: `startup` kept current from the agent's `settings`
/// profile (start-up settings only without an agent), the log filter following it.
pub fn live_settings(startup: &Settings) -> LiveDocument<Runtime> {
    let base = startup.clone();
    let live = LiveDocument::polled(
        settings_source(startup),
        Runtime::startup(startup.clone()),
        move |document: &[u8]| Runtime::read(&base, document),
        Runtime::changes,
    );
    follow_log_filter(&live, |runtime| {
        runtime.settings.telemetry.log_filter.clone()
    });
    live
}

/// Applies the log filter `filter_of` each value of `live` to the process's logs, as values
/// change (a no-op outside a Tokio runtime).
pub fn follow_log_filter<T: Send + Sync + 'static>(
    live: &LiveDocument<T>,
    filter_of: fn(&T) -> String,
) {
    let mut changes = live.subscribe();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut applied = filter_of(&changes.borrow());
            while changes.changed().await.is_ok() {
                let filter = filter_of(&changes.borrow_and_update());
                if filter != applied {
                    if let Err(error) = crate::telemetry::set_log_filter(&filter) {
                        tracing::warn!(%error, "the log filter could not be changed");
                    }
                    applied = filter;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
