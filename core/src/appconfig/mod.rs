//! Runtime configuration from AWS AppConfig, read through the AppConfig Agent's local HTTP API
//! (the Lambda extension, or the agent beside the streamer), as AWS recommends: the agent
//! caches, retries and authenticates; this process polls it on loopback.
//!
//! Layout: the agent's client in `client`; a profile kept current by a background poll in
//! `live`; the feature-flag profile and its per-user evaluation in `flags`; the runtime
//! settings profile in `runtime`, its sections declared with `overlay`.

mod client;
mod flags;
mod live;
mod overlay;
mod runtime;

pub use client::{AgentClient, AppConfigError};
pub use flags::{Flag, FlagSet, Flags, FlagsError, MAINTENANCE_MODE, WS_COMPRESSION};
pub use live::{LiveDocument, Source, changed_keys};
pub use runtime::{
    LimitsOverlay, RateLimitsOverlay, Runtime, RuntimeSettings, RuntimeSettingsError,
    TelemetryOverlay, WebSocketOverlay, follow_log_filter, live_settings, settings_source,
};
