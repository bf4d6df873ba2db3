use super::*;

fn read(document: &str) -> Result<Runtime, RuntimeSettingsError> {
    Runtime::read(&Settings::default(), document.as_bytes())
}

#[test]
fn a_document_overrides_only_the_keys_it_names() {
    let runtime = read(
        r#"{"limits": {"sessions_per_user": 3},
            "rate_limits": {"writes": {"per_second": 1, "burst": 2}},
            "telemetry": {"log_filter": "warn"},
            "streamer": {"max_streams_per_user": 1}}"#,
    )
    .unwrap();
    let defaults = Settings::default();
    assert_eq!(runtime.settings.limits.sessions_per_user, 3);
    assert_eq!(
        runtime.settings.limits.simulators_per_session,
        defaults.limits.simulators_per_session
    );
    assert_eq!(
        runtime.settings.rate_limits.writes,
        RateQuota {
            per_second: 1,
            burst: 2
        }
    );
    assert_eq!(
        runtime.settings.rate_limits.reads,
        defaults.rate_limits.reads
    );
    assert_eq!(runtime.settings.telemetry.log_filter, "warn");
    assert_eq!(
        runtime.settings.telemetry.log_format,
        defaults.telemetry.log_format
    );
    let empty = read("{}").unwrap();
    assert_eq!(empty.settings.limits, defaults.limits);
    assert_eq!(
        runtime.changes(&empty),
        vec![
            "limits.sessions_per_user",
            "rate_limits.writes.burst",
            "rate_limits.writes.per_second",
            "streamer.max_streams_per_user",
            "telemetry.log_filter",
        ]
    );
}

#[test]
fn an_out_of_range_value_is_refused_naming_the_setting_as_at_start_up() {
    let error = read(r#"{"limits": {"sessions_per_user": 0}}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "settings document: configuration: limits.sessions_per_user: must be at least 1"
    );
    let error = read(r#"{"websocket": {"reconnect_before_cap_secs": 9000}}"#).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("websocket.reconnect_before_cap_secs"),
        "{error}"
    );
    let error = read(r#"{"telemetry": {"log_filter": "info,[="}}"#).unwrap_err();
    assert!(
        error.to_string().contains("telemetry.log_filter"),
        "{error}"
    );
}

#[test]
fn unknown_keys_start_up_settings_and_non_json_are_refused_naming_the_key() {
    let error = read(r#"{"limits": {"sessions_per_usr": 3}}"#).unwrap_err();
    assert!(
        error.to_string().contains("limits.sessions_per_usr"),
        "{error}"
    );
    let error = read(r#"{"store": {"table": "other"}}"#).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `store`"),
        "{error}"
    );
    let error = read(r#"{"limits": {"sessions_per_user": "3"}}"#).unwrap_err();
    assert!(
        error.to_string().contains("limits.sessions_per_user"),
        "{error}"
    );
    assert!(read("sessions_per_user = 3").is_err());
}
