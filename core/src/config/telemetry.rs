//! `telemetry`: the log format and filter.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line: for CloudWatch and log pipelines.
    Json,
    /// Human-readable lines: for a terminal.
    Pretty,
}

/// Telemetry settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directives (`info,session_core=debug`).
    pub log_filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
        }
    }
}

impl TelemetrySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.log_filter).is_err() {
            return invalid(
                "telemetry.log_filter",
                "is not a valid tracing filter (e.g. \"info,session_core=debug\")",
            );
        }
        Ok(())
    }
}
