//! The streamer's settings load from files and the environment, and bad values name their
//! setting.

use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Toml};

use super::*;

fn with(toml: &str) -> Result<StreamerSettings, ConfigError> {
    StreamerSettings::from_figment(&Figment::new().merge(Toml::string(toml)))
}

#[test]
fn no_streamer_table_gives_the_defaults_and_core_accepts_the_table() {
    assert_eq!(with("").unwrap(), StreamerSettings::default());
    let figment = Figment::new().merge(Toml::string("[streamer]\nretry_ms = 2000"));
    Settings::from_figment(&figment).expect("core ignores the streamer's table");
    assert_eq!(
        StreamerSettings::from_figment(&figment).unwrap().retry_ms,
        2_000
    );
}

#[test]
fn streamer_admission_settings_are_checked_and_name_the_setting() {
    let err = with("[streamer]\nmax_connections = 0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: streamer.max_connections: must be between 1 and 1000000"
    );
    let err =
        with("[streamer]\nmax_streams_per_user = 30\nmax_streams_per_address = 10").unwrap_err();
    assert!(
        err.to_string().contains("streamer.max_streams_per_address"),
        "{err}"
    );
    let err = with("[streamer]\nheader_timeout_ms = 5").unwrap_err();
    assert!(
        err.to_string().contains("streamer.header_timeout_ms"),
        "{err}"
    );
    let err = with("[streamer]\nwrite_timeout_ms = 0").unwrap_err();
    assert!(
        err.to_string().contains("streamer.write_timeout_ms"),
        "{err}"
    );
}

#[test]
fn streamer_cloudwatch_settings_are_off_by_default_and_checked_naming_the_setting() {
    let defaults = with("").unwrap();
    assert_eq!(defaults.cloudwatch_namespace, None);
    assert_eq!(defaults.cloudwatch_interval_ms, Duration::from_secs(60));
    let set = with("[streamer]\ncloudwatch_namespace = \"SessionService\"").unwrap();
    assert_eq!(set.cloudwatch_namespace.as_deref(), Some("SessionService"));
    for (toml, setting) in [
        (
            "cloudwatch_namespace = \"AWS/Lambda\"",
            "streamer.cloudwatch_namespace",
        ),
        (
            "cloudwatch_namespace = \"\"",
            "streamer.cloudwatch_namespace",
        ),
        (
            "cloudwatch_endpoint = \"localhost:4566\"",
            "streamer.cloudwatch_endpoint",
        ),
        (
            "cloudwatch_interval_ms = 10",
            "streamer.cloudwatch_interval_ms",
        ),
        (
            "push_max_concurrent_posts = 0",
            "streamer.push_max_concurrent_posts",
        ),
    ] {
        let err = with(&format!("[streamer]\n{toml}")).unwrap_err();
        assert!(err.to_string().contains(setting), "{toml}: {err}");
    }
}

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn duration_settings_load_from_the_same_millisecond_and_second_variables() {
    figment::Jail::expect_with(|jail| {
        // Arrange
        jail.set_env("SESSION_STREAMER__PUSH_BATCH_DELAY_MS", "7");
        jail.set_env("SESSION_STREAMER__LINGER_SECS", "3");

        // Act
        let settings = StreamerSettings::load(None).expect("valid settings");

        // Assert
        assert_eq!(settings.push_batch_delay_ms, Duration::from_millis(7));
        assert_eq!(settings.linger_secs, Duration::from_secs(3));
        Settings::load(None).expect("core ignores SESSION_STREAMER__*");
        Ok(())
    });
    let settings = with("[streamer]\nupstream_idle_timeout_ms = 2500\nheartbeat_secs = 4").unwrap();
    assert_eq!(
        settings.upstream_idle_timeout_ms,
        Duration::from_millis(2_500)
    );
    assert_eq!(settings.heartbeat_secs, Duration::from_secs(4));
}

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn a_bad_duration_names_the_setting() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SESSION_STREAMER__PUSH_POLL_MS", "soon");
        let err = StreamerSettings::load(None).unwrap_err();
        // Figment names an environment variable's key as written (`STREAMER.PUSH_POLL_MS`).
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("\"streamer.push_poll_ms\""),
            "{err}"
        );
        Ok(())
    });
    let err = with("[streamer]\ncoalesce_ms = -1").unwrap_err();
    assert!(err.to_string().contains("coalesce_ms"), "{err}");
    let err = with("[streamer]\nupstream_idle_timeout_ms = 10").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: streamer.upstream_idle_timeout_ms: must be between 1100 and 600000"
    );
    let err = with("[streamer]\nheartbeat_secs = 0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: streamer.heartbeat_secs: must be between 1 and 300"
    );
    let err = with("[streamer]\npush_poll_ms = 5000\nlease_ttl_secs = 10").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("configuration: streamer.lease_ttl_secs: must outlast"),
        "{err}"
    );
}
