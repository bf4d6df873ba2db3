//! The settings load from files and the environment, and bad values name their setting.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Toml};
use secrecy::ExposeSecret as _;

use super::*;

fn with(toml: &str) -> Result<Settings, ConfigError> {
    Settings::from_figment(&Figment::new().merge(Toml::string(toml)))
}

#[test]
fn defaults_are_valid_and_use_the_in_memory_store() {
    let settings = with("").unwrap();
    assert_eq!(settings.store.backend, StoreBackend::Memory);
}

#[test]
fn a_file_overrides_defaults() {
    let settings =
        with("[store]\nbackend = \"dynamodb\"\nendpoint = \"http://127.0.0.1:1\"").unwrap();
    assert_eq!(settings.store.backend, StoreBackend::Dynamodb);
    assert_eq!(settings.limits, Limits::default());
}

#[test]
fn the_event_budget_defaults_to_one_simulator_at_the_maximum_rate_and_must_be_positive() {
    let settings = with("").unwrap();
    assert_eq!(settings.limits.events_per_second_per_user, 200_000);
    let err = with("[limits]\nevents_per_second_per_user = 0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: limits.events_per_second_per_user: must be at least 1"
    );
}

#[test]
fn errors_name_the_setting() {
    let err = with("[limits]\nsessions_per_user = 0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: limits.sessions_per_user: must be at least 1"
    );
    let err = with("[limits]\nsessions_per_user = \"ten\"").unwrap_err();
    assert!(err.to_string().contains("sessions_per_user"), "{err}");
    let err = with("[store]\nendpoint = \"localhost:8000\"").unwrap_err();
    assert!(err.to_string().contains("store.endpoint"), "{err}");
    let err = with("[store]\ntable = \"x\"").unwrap_err();
    assert!(err.to_string().contains("table"), "{err}");
    let err = with("[store]\nattempt_timeout_ms = 10").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: store.attempt_timeout_ms: must be between 100 and 60000"
    );
    let err = with("[store]\nattempt_timeout_ms = 3000\ncall_timeout_ms = 2000").unwrap_err();
    assert!(err.to_string().contains("store.call_timeout_ms"), "{err}");
    let err = with("[store]\nattempt_timeout_ms = 1000\nconnect_timeout_ms = 2000").unwrap_err();
    assert!(
        err.to_string().contains("store.connect_timeout_ms"),
        "{err}"
    );
    let err = with("[store]\npool_max_idle_per_host = 0").unwrap_err();
    assert!(
        err.to_string().contains("store.pool_max_idle_per_host"),
        "{err}"
    );
    let err = with("[store]\npool_idle_timeout_ms = 10").unwrap_err();
    assert!(
        err.to_string().contains("store.pool_idle_timeout_ms"),
        "{err}"
    );
    let err = with("[auth]\nticket_verify_keys_secret_arn = \"keys\"").unwrap_err();
    assert!(
        err.to_string()
            .contains("auth.ticket_verify_keys_secret_arn: must be a Secrets Manager"),
        "{err}"
    );
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn backend_tls_loads_from_environment_variables_and_reads_its_files() {
    figment::Jail::expect_with(|jail| {
        // Arrange
        jail.create_file("ca.pem", CERT)?;
        jail.create_file("client.pem", CERT)?;
        jail.create_file("client.key", KEY)?;
        jail.set_env("SESSION_BACKENDS__AUTH_URL", "https://auth.internal:50052");
        jail.set_env("SESSION_BACKENDS__SIMULATOR_URL", "https://10.0.0.7:50051");
        jail.set_env("SESSION_BACKENDS__TLS__CA_FILE", "ca.pem");
        jail.set_env("SESSION_BACKENDS__TLS__CERT_FILE", "client.pem");
        jail.set_env("SESSION_BACKENDS__TLS__KEY_FILE", "client.key");
        jail.set_env("SESSION_BACKENDS__TLS__DOMAIN", "simulator.internal");

        // Act
        let settings = Settings::load(None).expect("valid settings");

        // Assert
        let tls = &settings.backends.tls;
        assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.domain.as_deref(), Some("simulator.internal"));
        assert_eq!(tls.ca_pem(), Some(CERT));
        let (cert, key) = tls.identity_pem().expect("an identity");
        assert_eq!(cert, CERT);
        assert_eq!(key.expose_secret(), KEY);
        assert!(!format!("{settings:?}").contains("MIIB\n-----END PRIVATE"));
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn websocket_allowed_origins_come_from_the_environment_as_a_list() {
    figment::Jail::expect_with(|jail| {
        jail.set_env(
            "SESSION_WEBSOCKET__ALLOWED_ORIGINS",
            "[https://app.example.com, http://localhost:8080]",
        );
        let settings = Settings::load(None).expect("valid settings");
        assert_eq!(
            settings.websocket.allowed_origins,
            ["https://app.example.com", "http://localhost:8080"]
        );
        Ok(())
    });
    assert!(with("").unwrap().websocket.allowed_origins.is_empty());
    let err = with("[websocket]\nallowed_origins = [\"https://app.example.com/\"]").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("configuration: websocket.allowed_origins: "),
        "{err}"
    );
}

#[test]
fn backend_tls_is_off_by_default() {
    let settings = with("").unwrap();
    assert!(!settings.backends.tls.is_set());
    assert!(settings.backends.tls.ca_pem().is_none());
}

#[test]
fn backend_tls_errors_name_the_setting() {
    let https = "[backends]\nauth_url = \"https://a:1\"\nsimulator_url = \"https://s:1\"\n";
    let err = with(&format!(
        "{https}[backends.tls]\nca_file = \"ca.pem\"\nkey_file = \"k.pem\""
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("configuration: backends.tls.cert_file: must be set with"),
        "{err}"
    );
    let err = with(&format!(
        "{https}[backends.tls]\ncert_file = \"c.pem\"\nca_file = \"ca.pem\""
    ))
    .unwrap_err();
    assert!(err.to_string().contains("backends.tls.key_file"), "{err}");
    let err = with(https).unwrap_err();
    assert!(err.to_string().contains("backends.tls.ca_file"), "{err}");
    let err = with("[backends.tls]\nca_file = \"ca.pem\"").unwrap_err();
    assert!(
        err.to_string()
            .contains("backends.auth_url: must be an https://"),
        "{err}"
    );
    let err = with(&format!(
        "{https}[backends.tls]\nca_file = \"/nonexistent/ca.pem\""
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("configuration: backends.tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn duration_settings_load_from_the_same_millisecond_and_second_variables() {
    figment::Jail::expect_with(|jail| {
        // Arrange
        jail.set_env("SESSION_LIMITS__SESSION_LIFETIME_SECS", "120");
        jail.set_env("SESSION_BACKENDS__BREAKER_COOL_DOWN_SECS", "2");
        jail.set_env("SESSION_BACKENDS__DEADLINE_MS", "700");

        // Act
        let settings = Settings::load(None).expect("valid settings");

        // Assert
        assert_eq!(
            settings.limits.session_lifetime_secs,
            Duration::from_secs(120)
        );
        assert_eq!(settings.backends.deadline_ms, Duration::from_millis(700));
        assert_eq!(
            settings.backends.breaker_cool_down_secs,
            Duration::from_secs(2)
        );
        Ok(())
    });
    let settings = with("[backends]\ndeadline_ms = 2500\nbreaker_cool_down_secs = 4").unwrap();
    assert_eq!(settings.backends.deadline_ms, Duration::from_millis(2_500));
    assert_eq!(
        settings.backends.breaker_cool_down_secs,
        Duration::from_secs(4)
    );
}

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn a_bad_duration_names_the_setting() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SESSION_BACKENDS__DEADLINE_MS", "soon");
        let err = Settings::load(None).unwrap_err();
        // Figment names an environment variable's key as written (`BACKENDS.DEADLINE_MS`).
        assert!(
            err.to_string()
                .to_lowercase()
                .contains("\"backends.deadline_ms\""),
            "{err}"
        );
        Ok(())
    });
    let err = with("[backends]\ndeadline_ms = -1").unwrap_err();
    assert!(err.to_string().contains("deadline_ms"), "{err}");
    let err = with("[backends]\ndeadline_ms = 5").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: backends.deadline_ms: must be between 10 and 60000"
    );
    let err = with("[backends]\nbreaker_cool_down_secs = 0").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: backends.breaker_cool_down_secs: must be between 1 and 3600"
    );
}

#[test]
fn breaker_and_token_cache_settings_default_to_five_failures_ten_seconds_and_ten_thousand() {
    let settings = with("").unwrap();
    assert_eq!(settings.backends.breaker_threshold, 5);
    assert_eq!(
        settings.backends.breaker_cool_down_secs,
        Duration::from_secs(10)
    );
    assert_eq!(settings.auth.token_cache_entries, 10_000);
    for (toml, message) in [
        (
            "[backends]\nbreaker_threshold = 0",
            "configuration: backends.breaker_threshold: must be between 1 and 1000",
        ),
        (
            "[backends]\nbreaker_cool_down_secs = 0",
            "configuration: backends.breaker_cool_down_secs: must be between 1 and 3600",
        ),
        (
            "[auth]\ntoken_cache_entries = 0",
            "configuration: auth.token_cache_entries: must be between 1 and 1000000",
        ),
    ] {
        assert_eq!(with(toml).unwrap_err().to_string(), message, "{toml}");
    }
}

#[test]
fn every_timing_setting_reads_in_the_unit_its_name_says() {
    let settings = with(
        "[auth]\nticket_ttl_secs = 30\nrevocation_cache_ms = 250\nmax_token_life_secs = 3600\n\
         [backends]\ndeadline_ms = 1500\nretry_base_ms = 20\n\
         [store]\nattempt_timeout_ms = 1000\ncall_timeout_ms = 2500\nconnect_timeout_ms = 500\n\
         pool_idle_timeout_ms = 20000\n\
         [limits]\nsession_lifetime_secs = 600\n\
         [streaming]\nresume_chain_secs = 120\n\
         [websocket]\nheartbeat_timeout_secs = 45\nmax_connection_secs = 900\n\
         reconnect_before_cap_secs = 60",
    )
    .unwrap();
    let read = [
        settings.auth.ticket_ttl_secs,
        settings.auth.revocation_cache_ms,
        settings.auth.max_token_life_secs,
        settings.backends.deadline_ms,
        settings.backends.retry_base_ms,
        settings.store.attempt_timeout_ms,
        settings.store.call_timeout_ms,
        settings.store.connect_timeout_ms,
        settings.store.pool_idle_timeout_ms,
        settings.limits.session_lifetime_secs,
        settings.streaming.resume_chain_secs,
        settings.websocket.heartbeat_timeout_secs,
        settings.websocket.max_connection_secs,
        settings.websocket.reconnect_before_cap_secs,
    ];
    let expected = [
        Duration::from_secs(30),
        Duration::from_millis(250),
        Duration::from_secs(3600),
        Duration::from_millis(1500),
        Duration::from_millis(20),
        Duration::from_secs(1),
        Duration::from_millis(2500),
        Duration::from_millis(500),
        Duration::from_secs(20),
        Duration::from_secs(600),
        Duration::from_secs(120),
        Duration::from_secs(45),
        Duration::from_secs(900),
        Duration::from_secs(60),
    ];
    assert_eq!(read, expected);
}

#[test]
fn a_timing_setting_out_of_range_is_refused_in_its_own_unit() {
    for (toml, message) in [
        (
            "[auth]\nticket_ttl_secs = 4",
            "auth.ticket_ttl_secs: must be between 5 and 600",
        ),
        (
            "[auth]\nrevocation_cache_ms = 60001",
            "auth.revocation_cache_ms: must be at most 60000 (a minute)",
        ),
        (
            "[auth]\nmax_token_life_secs = 59",
            "auth.max_token_life_secs: must be between 60 and 2592000 (30 days)",
        ),
        (
            "[backends]\ndeadline_ms = 9",
            "backends.deadline_ms: must be between 10 and 60000",
        ),
        (
            "[backends]\nretry_base_ms = 0",
            "backends.retry_base_ms: must be between 1 and 10000",
        ),
        (
            "[limits]\nsession_lifetime_secs = 59",
            "limits.session_lifetime_secs: must be at least 60",
        ),
        (
            "[streaming]\nresume_chain_secs = 86401",
            "streaming.resume_chain_secs: must be between 1 and 86400",
        ),
        (
            "[websocket]\nheartbeat_timeout_secs = 9",
            "websocket.heartbeat_timeout_secs: must be between 10 and 3600",
        ),
        (
            "[websocket]\nmax_connection_secs = 7201",
            "websocket.max_connection_secs: must be between 60 and 7200",
        ),
        (
            "[websocket]\nmax_connection_secs = 600\nreconnect_before_cap_secs = 600",
            "websocket.reconnect_before_cap_secs: must be below websocket.max_connection_secs",
        ),
    ] {
        assert_eq!(
            with(toml).unwrap_err().to_string(),
            format!("configuration: {message}"),
            "{toml}"
        );
    }
    let err = with("[auth]\nticket_ttl_secs = \"a minute\"").unwrap_err();
    assert!(err.to_string().contains("ticket_ttl_secs"), "{err}");
}

#[test]
fn appconfig_is_off_by_default_and_its_errors_name_the_setting() {
    let settings = with("").unwrap();
    assert!(!settings.appconfig.enabled());
    assert_eq!(settings.appconfig.poll_interval_ms, Duration::from_secs(15));
    let on = with("[appconfig]\nbase_url = \"http://localhost:2772\"").unwrap();
    assert!(on.appconfig.enabled());
    let err = with("[appconfig]\nbase_url = \"localhost:2772\"").unwrap_err();
    assert!(err.to_string().contains("appconfig.base_url"), "{err}");
    let err = with("[appconfig]\npoll_interval_ms = 10").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: appconfig.poll_interval_ms: must be between 100 and 3600000"
    );
    let err = with("[appconfig]\nflags_profile = \"a/b\"").unwrap_err();
    assert!(err.to_string().contains("appconfig.flags_profile"), "{err}");
}

#[test]
#[allow(clippy::result_large_err)] // `Jail`'s closure returns figment's error
fn the_regions_of_a_deployment_come_from_two_environment_variables() {
    // As infra/template.yaml sets them on every function (parameters RegionsPrimary and
    // RegionsApis): a map cannot take its keys from a list of CloudFormation parameters.
    figment::Jail::expect_with(|jail| {
        jail.set_env("AWS_REGION", "us-east-1");
        jail.set_env("SESSION_REGIONS__PRIMARY", "eu-west-1");
        jail.set_env(
            "SESSION_REGIONS__APIS",
            r#"{eu-west-1="https://api.eu-west-1.example.com", us-east-1="https://api.us-east-1.example.com"}"#,
        );
        let settings = Settings::load(None).expect("valid settings");
        let regions = &settings.regions;
        assert_eq!(regions.this.as_str(), "us-east-1");
        assert_eq!(regions.primary().as_str(), "eu-west-1");
        assert!(regions.is_multi_region());
        let eu = crate::domain::RegionName::parse("r", "eu-west-1").unwrap();
        assert_eq!(
            regions.api_of(&eu),
            Some("https://api.eu-west-1.example.com")
        );
        Ok(())
    });
}
