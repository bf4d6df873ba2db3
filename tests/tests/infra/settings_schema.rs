//! The `settings` profile's JSON Schema: generated from the Rust types
//! (`session_streamer::runtime::schema`), kept in `infra/appconfig/settings.schema.json`
//! (`UPDATE_SETTINGS_SCHEMA=1` rewrites it), registered as the `SettingsProfile`'s
//! `JSON_SCHEMA` validator in the template, and refusing what the Rust validation refuses.

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use session_core::config::Settings;
use session_streamer::StreamerSettings;
use session_streamer::runtime::{StreamerRuntime, schema};

use super::{template, workspace_root};

const SCHEMA_FILE: &str = "infra/appconfig/settings.schema.json";

#[test]
fn the_schema_file_is_the_one_the_rust_types_generate() -> Result<()> {
    let path = workspace_root().join(SCHEMA_FILE);
    let generated = format!("{}\n", serde_json::to_string_pretty(&schema())?);
    if std::env::var_os("UPDATE_SETTINGS_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().context("a folder")?)?;
        std::fs::write(&path, &generated)?;
    }
    let written = std::fs::read_to_string(&path).context(SCHEMA_FILE)?;
    ensure!(
        written == generated,
        "{SCHEMA_FILE} is stale: run UPDATE_SETTINGS_SCHEMA=1 cargo test -p session-tests \
         --test infra settings_schema"
    );
    Ok(())
}

#[test]
fn the_settings_profile_validates_with_the_schema_file() -> Result<()> {
    let template = template()?;
    let profile = &template["Resources"]["SettingsProfile"];
    ensure!(
        profile["Type"] == "AWS::AppConfig::ConfigurationProfile",
        "{profile}"
    );
    ensure!(profile["Properties"]["Name"] == "settings", "{profile}");
    let validators = profile["Properties"]["Validators"]
        .as_array()
        .context("SettingsProfile has no Validators")?;
    let [validator] = validators.as_slice() else {
        anyhow::bail!(
            "SettingsProfile has {} validators, not one",
            validators.len()
        );
    };
    ensure!(validator["Type"] == "JSON_SCHEMA", "{validator}");
    let registered: Value = serde_json::from_str(
        validator["Content"]
            .as_str()
            .context("the validator's Content is not a string")?,
    )?;
    ensure!(
        registered == schema(),
        "the template's schema differs from {SCHEMA_FILE}"
    );
    let initial = &template["Resources"]["SettingsInitialVersion"]["Properties"]["Content"];
    let initial = initial.as_str().context("no initial settings document")?;
    ensure!(
        StreamerRuntime::read(
            &Settings::default(),
            &StreamerSettings::default(),
            initial.as_bytes()
        )
        .is_ok(),
        "the initial settings document is refused: {initial}"
    );
    Ok(())
}

#[test]
fn the_schema_refuses_what_the_rust_validation_refuses_at_each_bound() -> Result<()> {
    // Draft 4, as AppConfig validates.
    let validator = jsonschema::draft4::new(&schema())?;
    let documents = [
        json!({}),
        json!({"limits": {"sessions_per_user": 0}}),
        json!({"limits": {"sessions_per_user": 1}}),
        json!({"limits": {"session_lifetime_secs": 59}}),
        json!({"limits": {"session_lifetime_secs": 60}}),
        json!({"limits": {"sessions_per_user": -1}}),
        json!({"limits": {"sessions_per_user": "3"}}),
        json!({"limits": {"sessions_per_usr": 3}}),
        json!({"rate_limits": {"writes": {"per_second": 0, "burst": 1}}}),
        json!({"rate_limits": {"writes": {"per_second": 100_000, "burst": 1_000_000}}}),
        json!({"rate_limits": {"writes": {"per_second": 100_001, "burst": 1}}}),
        json!({"rate_limits": {"writes": {"per_second": 1, "burst": 1_000_001}}}),
        json!({"rate_limits": {"writes": {"per_second": 1}}}),
        json!({"websocket": {"heartbeat_timeout_secs": 9}}),
        json!({"websocket": {"heartbeat_timeout_secs": 3600}}),
        json!({"websocket": {"heartbeat_timeout_secs": 3601}}),
        json!({"websocket": {"max_connection_secs": 60, "reconnect_before_cap_secs": 30}}),
        json!({"websocket": {"max_connection_secs": 7201}}),
        json!({"telemetry": {"log_filter": "warn,session_core=debug"}}),
        json!({"streamer": {"heartbeat_secs": 0}}),
        json!({"streamer": {"heartbeat_secs": 300}}),
        json!({"streamer": {"heartbeat_secs": 301}}),
        json!({"streamer": {"retry_ms": 99}}),
        json!({"streamer": {"retry_ms": 60_000}}),
        json!({"streamer": {"max_connections": 0}}),
        json!({"streamer": {"max_connections": 1_000_000}}),
        json!({"streamer": {"max_connections": 1_000_001}}),
        json!({"streamer": {"max_streams_per_user": 0}}),
        json!({"streamer": {"max_streams_per_user": 1, "max_streams_per_address": 1}}),
        json!({"streamer": {"max_streams_per_address": 1_000_001}}),
        json!({"streamer": {"push_batch_delay_ms": 0}}),
        json!({"streamer": {"listen": "0.0.0.0:1"}}),
        json!({"store": {"table": "other"}}),
    ];
    for document in documents {
        let rust = StreamerRuntime::read(
            &Settings::default(),
            &StreamerSettings::default(),
            document.to_string().as_bytes(),
        );
        ensure!(
            validator.is_valid(&document) == rust.is_ok(),
            "{document}: the schema says {}, the Rust validation {:?}",
            validator.is_valid(&document),
            rust.err().map(|e| e.to_string())
        );
    }
    Ok(())
}

/// Every keyword of draft 4's validation vocabulary (and annotations), the only ones AppConfig's
/// `JSON_SCHEMA` validator understands.
const DRAFT_4_KEYWORDS: &[&str] = &[
    "$schema",
    "$ref",
    "id",
    "title",
    "description",
    "default",
    "definitions",
    "type",
    "enum",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "patternProperties",
    "additionalProperties",
    "required",
    "minProperties",
    "maxProperties",
    "dependencies",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

/// The keywords a (sub)schema uses, with the path to each, skipping property names.
fn keywords(schema: &Value, path: &str, found: &mut Vec<(String, String)>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    for (key, value) in object {
        found.push((key.clone(), path.to_owned()));
        match key.as_str() {
            "properties" | "definitions" | "patternProperties" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    keywords(sub, &format!("{path}/{key}/{name}"), found);
                }
            }
            "anyOf" | "allOf" | "oneOf" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    keywords(sub, &format!("{path}/{key}/{i}"), found);
                }
            }
            "items" | "additionalProperties" | "not" | "additionalItems" => {
                keywords(value, &format!("{path}/{key}"), found);
            }
            _ => {}
        }
    }
}

#[test]
fn the_schema_is_draft_4_as_appconfig_validates() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    let mut found = Vec::new();
    keywords(&schema, "", &mut found);
    let foreign: Vec<_> = found
        .iter()
        .filter(|(key, _)| !DRAFT_4_KEYWORDS.contains(&key.as_str()))
        .collect();
    assert!(foreign.is_empty(), "keywords draft 4 lacks: {foreign:?}");
    assert!(
        jsonschema::draft4::meta::is_valid(&schema),
        "not a valid draft-4 schema"
    );
}
