//! The streamer's settings as each overlay of `infra/k8s/overlays` sets them: the config map's
//! env files, layer by layer in kustomize's order (resources, then components, then the
//! overlay's own generator), loaded the way the streamer loads its environment. Unknown
//! `SESSION_*` names are refused by the settings, so a misspelt variable fails here, not at a
//! pod's start; the regional overlays (`components/regions`) must each name their own region.
//! `scripts/infra-check.sh` renders the same overlays with `kubectl kustomize` and checks the
//! objects.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use figment::Figment;
use figment::providers::Serialized;
use session_core::config::Settings;
use session_streamer::StreamerSettings;

use super::{workspace_root, yaml_file};

const OVERLAYS: &str = "infra/k8s/overlays";
/// The config map the streamer's pods read (`envFrom`).
const CONFIG_MAP: &str = "session-streamer";
/// Mounted from a Secret in the pod; not a file of the repository.
const MOUNTED_FILES: [&str; 1] = ["SESSION_AUTH__TICKET_VERIFY_KEYS_FILE"];

/// `KEY=VALUE` lines of an env file, as kustomize reads them (blank lines and comments skipped).
fn env_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("{}: {line:?} is not KEY=VALUE", path.display()))?;
            Ok((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The entries of the streamer's config map that the kustomization (or component) in
/// `relative` and everything it builds on generate, in order: later entries win.
fn config_map_layers(relative: &str) -> Result<Vec<(String, String)>> {
    let dir = workspace_root().join(relative);
    let kustomization = yaml_file(&format!("{relative}/kustomization.yaml"))?;
    let strings = |field: &str| -> Vec<String> {
        kustomization[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut entries = Vec::new();
    for base in strings("resources")
        .into_iter()
        .chain(strings("components"))
    {
        let path = dir.join(&base);
        if path.join("kustomization.yaml").is_file() {
            let path = path.canonicalize()?;
            let base = path.strip_prefix(workspace_root().canonicalize()?)?;
            entries.extend(config_map_layers(&base.to_string_lossy())?);
        }
    }
    let generators = kustomization["configMapGenerator"].as_array().cloned();
    for generator in generators.unwrap_or_default() {
        if generator["name"] != CONFIG_MAP {
            continue;
        }
        for env in generator["envs"].as_array().into_iter().flatten() {
            let file = env.as_str().context("an envs entry that is not a path")?;
            entries.extend(env_file(&dir.join(file))?);
        }
        for literal in generator["literals"].as_array().into_iter().flatten() {
            let (key, value) = literal
                .as_str()
                .and_then(|l| l.split_once('='))
                .with_context(|| format!("{relative}: literal {literal} is not KEY=VALUE"))?;
            entries.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(entries)
}

/// The config map an overlay renders, as the streamer's environment.
fn overlay_env(overlay: &str) -> Result<BTreeMap<String, String>> {
    Ok(config_map_layers(&format!("{OVERLAYS}/{overlay}"))?
        .into_iter()
        .collect())
}

/// Settings from `env` as `Settings::figment` reads the environment: the `SESSION_` prefix off,
/// lower case, `__` between levels, each value parsed as figment's `Env` parses it.
fn load(env: &BTreeMap<String, String>) -> Result<(Settings, StreamerSettings)> {
    let mut figment = Figment::new();
    for (key, value) in env {
        let Some(name) = key.strip_prefix(Settings::ENV_PREFIX) else {
            continue;
        };
        if MOUNTED_FILES.contains(&key.as_str()) {
            continue;
        }
        let path = name.to_ascii_lowercase().replace("__", ".");
        let value: figment::value::Value = value.parse()?;
        figment = figment.merge(Serialized::default(&path, value));
    }
    Ok((
        Settings::from_figment(&figment)?,
        StreamerSettings::from_figment(&figment)?,
    ))
}

/// The overlays' directory names.
fn overlays() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join(OVERLAYS))? {
        let entry = entry?;
        if entry.path().join("kustomization.yaml").is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether an overlay adds the regions of a multi-region deployment.
fn is_regional(overlay: &str) -> Result<bool> {
    let kustomization = yaml_file(&format!("{OVERLAYS}/{overlay}/kustomization.yaml"))?;
    let components = kustomization["components"].as_array().cloned();
    Ok(components
        .unwrap_or_default()
        .iter()
        .any(|c| c.as_str() == Some("../../components/regions")))
}

#[test]
fn every_overlays_streamer_settings_load_as_the_streamer_reads_them() -> Result<()> {
    // Arrange
    let overlays = overlays()?;
    ensure!(
        overlays.len() >= 4,
        "expected dev, prod and the regional overlays, found {overlays:?}"
    );

    for overlay in &overlays {
        // Act
        let env = overlay_env(overlay)?;
        let loaded = load(&env);

        // Assert
        let (settings, _) = loaded.with_context(|| format!("overlay {overlay}"))?;
        ensure!(
            settings.store.table_name == env["SESSION_STORE__TABLE_NAME"],
            "overlay {overlay}: the table name did not reach the settings"
        );
    }
    Ok(())
}

#[test]
fn each_regional_overlay_names_its_own_region_and_every_region_the_same_way() -> Result<()> {
    // Arrange
    let mut regional = Vec::new();
    for overlay in overlays()? {
        if is_regional(&overlay)? {
            regional.push(overlay);
        }
    }
    ensure!(
        regional.len() >= 2,
        "expected two regional overlays, found {regional:?}"
    );
    let mut shared: Option<(String, Vec<String>)> = None;
    let mut names = Vec::new();

    for overlay in &regional {
        // Act
        let env = overlay_env(overlay)?;
        let (settings, _) = load(&env).with_context(|| format!("overlay {overlay}"))?;
        let regions = &settings.regions;
        let this = regions.this.as_str();

        // Assert
        ensure!(
            overlay.ends_with(&format!("-{this}")),
            "overlay {overlay} names region {this}"
        );
        ensure!(
            env.get("AWS_REGION").map(String::as_str) == Some(this),
            "overlay {overlay}: AWS_REGION {:?} is not regions.this {this}",
            env.get("AWS_REGION")
        );
        ensure!(
            regions.is_multi_region(),
            "overlay {overlay} is not multi-region"
        );
        ensure!(
            regions.api_of(&regions.this).is_some(),
            "overlay {overlay}: regions.apis lacks its own region {this}"
        );
        // Connection ids, and the endpoint that pushes to them, are regional.
        for key in [
            "SESSION_STREAMER__CONNECTIONS_URL",
            "SESSION_STREAMING__WS_URL",
        ] {
            let url = env.get(key).map(String::as_str).unwrap_or_default();
            ensure!(
                url.contains(&format!(".execute-api.{this}.")),
                "overlay {overlay}: {key}={url} is not this region's WebSocket API"
            );
        }
        let apis: Vec<String> = regions.apis.keys().map(|r| r.as_str().to_owned()).collect();
        let view = (regions.primary().as_str().to_owned(), apis);
        names.push(this.to_owned());
        match &shared {
            None => shared = Some(view),
            Some(first) => ensure!(
                *first == view,
                "overlay {overlay} sees the regions as {view:?}, another overlay as {first:?}"
            ),
        }
    }
    let (primary, apis) = shared.context("no regional overlay")?;
    for name in &names {
        ensure!(apis.contains(name), "regions.apis lacks {name}: {apis:?}");
    }
    ensure!(
        apis.contains(&primary),
        "the primary {primary} has no API in {apis:?}"
    );
    Ok(())
}
