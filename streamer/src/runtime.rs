//! The streamer's runtime settings: the `settings` profile (`session_core::appconfig::
//! RuntimeSettings`) with its `streamer` section, which this crate reads and validates, kept
//! current from the agent beside the pod and applied without a restart. Handlers read the
//! value in force at use ([`LiveDocument::current`]); the caps and the push batch delay, which
//! live in their own types, are set by `app`'s follower on each change.
//!
//! The whole document's JSON Schema ([`schema`]) is assembled here: core's sections and this
//! crate's `streamer` section (core does not depend on the streamer).

use std::convert::identity;
use std::sync::Arc;
use std::time::Duration;

use session_core::appconfig::{LiveDocument, Runtime, RuntimeSettingsError, changed_keys};
use session_core::appconfig::{RuntimeSettings, follow_log_filter, settings_source};
use session_core::config::Settings;

use crate::settings::StreamerSettings;

session_core::overlay! {
    /// `streamer.*`: the keys of the streamer's settings that change without a restart.
    pub struct StreamerOverlay => StreamerSettings {
        /// Most connections the pod holds.
        #[schemars(range(min = 1, max = 1_000_000))]
        max_connections: u32 => identity,
        /// Most streams one user holds open on the pod at once.
        #[schemars(range(min = 1, max = 1_000_000))]
        max_streams_per_user: u32 => identity,
        /// Most streams one source address holds open on the pod at once (at least
        /// `max_streams_per_user`).
        #[schemars(range(min = 1, max = 1_000_000))]
        max_streams_per_address: u32 => identity,
        /// After a first event, how long a WebSocket push waits for more before posting, in
        /// milliseconds.
        push_batch_delay_ms: u64 => Duration::from_millis,
        /// Seconds between comment heartbeats on an idle SSE connection.
        #[schemars(range(min = 1, max = 300))]
        heartbeat_secs: u64 => Duration::from_secs,
        /// What `EventSource` is told to wait before reconnecting, in milliseconds.
        #[schemars(range(min = 100, max = 60_000))]
        retry_ms: u64 => identity,
    }
}

/// The streamer's settings in force: core's and its own, each with the last good document
/// laid over the start-up values.
#[derive(Debug, Clone)]
pub struct StreamerRuntime {
    /// Core's settings and the document applied.
    pub core: Runtime,
    /// The document's `streamer` section.
    pub overlay: StreamerOverlay,
    /// The streamer's merged settings.
    pub streamer: Arc<StreamerSettings>,
}

impl StreamerRuntime {
    /// The start-up settings, no document applied.
    pub fn startup(settings: Settings, streamer: StreamerSettings) -> Self {
        Self {
            core: Runtime::startup(settings),
            overlay: StreamerOverlay::default(),
            streamer: Arc::new(streamer),
        }
    }

    /// `document` read and laid over the start-up settings, validated as at start-up.
    ///
    /// # Errors
    /// The document is malformed, or a merged value out of range (named as a dotted path).
    pub fn read(
        settings: &Settings,
        streamer: &StreamerSettings,
        document: &[u8],
    ) -> Result<Self, RuntimeSettingsError> {
        let core = Runtime::read(settings, document)?;
        let section = core.document.streamer.clone().unwrap_or_default();
        let overlay: StreamerOverlay = match section {
            serde_json::Value::Null => StreamerOverlay::default(),
            section => serde_path_to_error::deserialize(section).map_err(|e| {
                RuntimeSettingsError::Malformed {
                    path: format!("streamer.{}", e.path()),
                    message: e.inner().to_string(),
                }
            })?,
        };
        let mut merged = streamer.clone();
        overlay.apply_to(&mut merged);
        merged.validate()?;
        Ok(Self {
            core,
            overlay,
            streamer: Arc::new(merged),
        })
    }

    /// The settings two runtimes differ in, as dotted paths.
    pub fn changes(&self, other: &Self) -> Vec<String> {
        changed_keys(&self.core.document, &other.core.document)
    }
}

/// The streamer's runtime settings, kept current from the agent `settings.appconfig` names
/// (start-up settings only without one), the log filter following them.
pub fn live(settings: &Settings, streamer: &StreamerSettings) -> LiveDocument<StreamerRuntime> {
    let (base, base_streamer) = (settings.clone(), streamer.clone());
    let live = LiveDocument::polled(
        settings_source(settings),
        StreamerRuntime::startup(settings.clone(), streamer.clone()),
        move |document: &[u8]| StreamerRuntime::read(&base, &base_streamer, document),
        StreamerRuntime::changes,
    );
    follow_log_filter(&live, |runtime| {
        runtime.core.settings.telemetry.log_filter.clone()
    });
    live
}

/// The JSON Schema of a whole `settings` document: core's sections and `streamer`'s, no other
/// key allowed (`infra/appconfig/settings.schema.json`, the `SettingsProfile`'s validator).
pub fn schema() -> serde_json::Value {
    // AppConfig's JSON_SCHEMA validators read draft 4 only. schemars writes draft 7, but with
    // `definitions` and only keywords draft 4 has (a test holds it to that vocabulary), so the
    // document is draft 4 once it says so.
    let generator = || schemars::generate::SchemaSettings::draft07().into_generator();
    let mut document = generator()
        .into_root_schema_for::<RuntimeSettings>()
        .to_value();
    let mut streamer = generator()
        .into_root_schema_for::<StreamerOverlay>()
        .to_value();
    if let Some(object) = streamer.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    document["$schema"] = "http://json-schema.org/draft-04/schema#".into();
    document["title"] = "session-service runtime settings".into();
    document["properties"]["streamer"] = streamer;
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(document: &str) -> Result<StreamerRuntime, RuntimeSettingsError> {
        StreamerRuntime::read(
            &Settings::default(),
            &StreamerSettings::default(),
            document.as_bytes(),
        )
    }

    #[test]
    fn the_streamer_section_overrides_its_keys_and_keeps_the_others() {
        let runtime =
            read(r#"{"streamer": {"max_streams_per_user": 1, "retry_ms": 500}}"#).unwrap();
        assert_eq!(runtime.streamer.max_streams_per_user, 1);
        assert_eq!(runtime.streamer.retry_ms, 500);
        assert_eq!(
            runtime.streamer.max_connections,
            StreamerSettings::default().max_connections
        );
    }

    #[test]
    fn a_bad_streamer_section_is_refused_naming_the_setting() {
        let error = read(r#"{"streamer": {"max_streams_per_user": 0}}"#).unwrap_err();
        assert!(
            error.to_string().contains("streamer.max_streams_per_user"),
            "{error}"
        );
        let error = read(r#"{"streamer": {"listen": "0.0.0.0:1"}}"#).unwrap_err();
        assert!(error.to_string().contains("streamer.listen"), "{error}");
        let error = read(r#"{"streamer": {"max_streams_per_user": 500}}"#).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("streamer.max_streams_per_address"),
            "{error}"
        );
    }
}
