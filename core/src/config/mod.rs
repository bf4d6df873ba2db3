//! Typed configuration, layered: built-in defaults, then an optional TOML file, then
//! `SESSION_*` environment variables (`SESSION_STORE__BACKEND=dynamodb`). Validated once at
//! start; every error names the setting.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::Deserialize;

mod appconfig;
mod auth;
mod backends;
mod cache;
mod discovery;
pub mod duration;
mod edge;
mod limits;
mod rate_limits;
mod regions;
mod store;
mod streaming;
mod telemetry;
#[cfg(test)]
mod tests;
mod ticket_keys;
mod websocket;

pub use appconfig::AppConfigSettings;
pub use auth::AuthSettings;
pub use backends::{BackendSettings, BackendTlsSettings};
pub use cache::CacheSettings;
pub use discovery::{DiscoveryMode, DiscoverySettings};
pub use edge::EdgeSettings;
pub use limits::Limits;
pub use rate_limits::{RateLimitSettings, RateQuota};
pub use regions::RegionSettings;
pub use store::{StoreBackend, StoreSettings};
pub use streaming::StreamingSettings;
pub use telemetry::{LogFormat, TelemetrySettings};
pub use websocket::WebSocketSettings;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type (figment names the key).
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of its allowed range.
    #[error("configuration: {setting}: {problem}")]
    Invalid {
        /// The setting, as a dotted path (`limits.sessions_per_user`).
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// `setting` is out of its allowed range for `problem`.
///
/// # Errors
/// Always: [`ConfigError::Invalid`].
pub fn invalid<T>(setting: &'static str, problem: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        setting,
        problem: problem.into(),
    })
}

/// `arn`, if set, is a Secrets Manager secret's ARN.
fn validate_secret_arn(setting: &'static str, arn: Option<&str>) -> Result<(), ConfigError> {
    if arn.is_some_and(|arn| !arn.starts_with("arn:") || !arn.contains(":secretsmanager:")) {
        return invalid(
            setting,
            "must be a Secrets Manager secret's ARN (arn:aws:secretsmanager:...)",
        );
    }
    Ok(())
}

/// Every entry of `origins` is an origin (scheme and host, no path, no trailing slash).
///
/// # Errors
/// An entry is not an origin.
pub fn validate_origins(setting: &'static str, origins: &[String]) -> Result<(), ConfigError> {
    match origins
        .iter()
        .find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
    {
        Some(origin) => invalid(
            setting,
            format!("{origin:?} is not an origin like https://app.example.com"),
        ),
        None => Ok(()),
    }
}

/// Every setting shared by the service's processes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Session state.
    pub store: StoreSettings,
    /// Quotas and lifetimes.
    pub limits: Limits,
    /// Logs.
    pub telemetry: TelemetrySettings,
    /// Tokens and tickets.
    pub auth: AuthSettings,
    /// gRPC backends.
    pub backends: BackendSettings,
    /// Streaming endpoints given to clients.
    pub streaming: StreamingSettings,
    /// WebSocket liveness and advice.
    pub websocket: WebSocketSettings,
    /// `streamer.*`: the streamer's own settings (`session_streamer::settings`), read by the
    /// streamer from the same sources; accepted and ignored here.
    pub streamer: serde::de::IgnoredAny,
    /// The edge in front of the HTTP API.
    pub edge: EdgeSettings,
    /// Rate limits per user and per source address.
    pub rate_limits: RateLimitSettings,
    /// The AppConfig Agent and the feature flags read through it.
    pub appconfig: AppConfigSettings,
    /// The read-through cache of hot store reads.
    pub cache: CacheSettings,
    /// How the backends' servers are found.
    pub discovery: DiscoverySettings,
    /// This deployment's region, the primary one, and each region's HTTP API (boxed: the
    /// settings are held in processes' start-up futures, which clippy keeps under 16 KiB).
    pub regions: Box<RegionSettings>,
}

impl Settings {
    /// Prefix of the environment variables read; `__` separates levels.
    pub const ENV_PREFIX: &'static str = "SESSION_";

    /// Defaults, then `file` if given, then the environment; validated.
    ///
    /// # Errors
    /// A source is unreadable, a value has the wrong type or is out of range.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(&Self::figment(file)?)
    }

    /// The sources every process reads, in order: `file` if given, then the `SESSION_*`
    /// environment (defaults come from the types).
    ///
    /// # Errors
    /// `file` is given but does not exist.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return invalid("config file", format!("{} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file(file));
        }
        Ok(figment.merge(Env::prefixed(Self::ENV_PREFIX).split("__")))
    }

    /// Extracts and validates settings from any figment (tests build their own), and reads the
    /// files they name (`backends.tls`, `auth.ticket_*_file`).
    ///
    /// # Errors
    /// A value has the wrong type or is out of range, or a named file cannot be read.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut settings: Self = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        settings.backends.tls.load()?;
        settings.auth.load_ticket_key_files()?;
        Ok(settings)
    }

    /// Checks every value's range, naming the first setting out of it (also run on each
    /// runtime settings document merged onto the start-up settings).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.store.validate()?;
        self.limits.validate()?;
        self.auth.validate()?;
        self.backends.validate()?;
        self.streaming.validate()?;
        self.websocket.validate()?;
        self.rate_limits.validate()?;
        self.edge.validate()?;
        self.appconfig.validate()?;
        self.cache.validate()?;
        self.discovery.validate()?;
        self.regions.validate()?;
        self.telemetry.validate()
    }
}
