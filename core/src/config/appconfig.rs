//! `appconfig`: where the AppConfig Agent's local HTTP API is, and which profiles to read.

use std::time::Duration;

use serde::Deserialize;

use super::duration::check_range;
use super::{ConfigError, invalid};

/// The AppConfig Agent (the Lambda extension, or the agent beside the streamer) and the
/// profiles read through it. Disabled while `base_url` is unset: every flag is then off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfigSettings {
    /// The agent's base URL (`http://localhost:2772`, where the extension listens). Unset by
    /// default, so a function deployed without the extension does not log a failed poll every
    /// interval; set it where the extension is attached.
    pub base_url: Option<String>,
    /// The AppConfig application.
    pub application: String,
    /// The AppConfig environment.
    pub environment: String,
    /// The feature-flag configuration profile.
    pub flags_profile: String,
    /// The runtime settings' configuration profile (`crate::appconfig::RuntimeSettings`).
    pub settings_profile: String,
    /// How often the agent is asked for the documents; also the `Retry-After` of a refusal a
    /// flag decides (a flip is seen within it).
    #[serde(deserialize_with = "super::duration::millis")]
    pub poll_interval_ms: Duration,
}

impl Default for AppConfigSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            application: "session-service".to_owned(),
            environment: "prod".to_owned(),
            flags_profile: "flags".to_owned(),
            settings_profile: "settings".to_owned(),
            poll_interval_ms: Duration::from_secs(15),
        }
    }
}

impl AppConfigSettings {
    /// Whether an agent is configured.
    pub fn enabled(&self) -> bool {
        self.base_url.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self
            .base_url
            .as_ref()
            .is_some_and(|url| !url.starts_with("http://") || url.ends_with('/'))
        {
            return invalid(
                "appconfig.base_url",
                "must be an http:// URL without a trailing slash (http://localhost:2772)",
            );
        }
        for (setting, value) in [
            ("appconfig.application", &self.application),
            ("appconfig.environment", &self.environment),
            ("appconfig.flags_profile", &self.flags_profile),
            ("appconfig.settings_profile", &self.settings_profile),
        ] {
            if value.is_empty() || value.contains('/') {
                return invalid(setting, "must be a non-empty name without '/'");
            }
        }
        check_range(
            "appconfig.poll_interval_ms",
            self.poll_interval_ms.as_millis(),
            100..=3_600_000,
        )
    }
}
