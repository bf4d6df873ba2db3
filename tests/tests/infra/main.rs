//! `infra/template.yaml` against the code it deploys: the table as the store declares it
//! (`TableSpec::cloudformation`), the HTTP API's routes as the REST API documents them
//! (`docs/openapi.json`), the WebSocket routes the handler serves, one function per binary of
//! `functions/src/bin`, the backend settings every function gets (both URLs, the TLS files
//! where the runbook's layer puts them, the key from Secrets Manager), and every invocation
//! path through the functions' `live` alias, deployed by CodeDeploy with a rollback alarm on the
//! new version; and the cluster's OpenTelemetry collector (`infra/k8s/observability`) against
//! its IRSA role and the streamer's OTLP endpoint; the AppConfig resources against the flags the
//! code reads, and the Migrations custom resource ahead of everything that takes traffic; service
//! discovery (Cloud Map, the simulators' registration, the headless Services) and the
//! ElastiCache option against the `discovery.*` and `cache.*` settings; and the streamer's
//! settings in each overlay of `infra/k8s/overlays`, the regional ones naming their region.
//!
//! The template uses CloudFormation's short-form tags (`!Ref`, `!Sub`, `!If`). `serde_yaml_ng`
//! keeps an unknown tag as a tagged value instead of failing, so the file parses as it is and the
//! template stays in the form people write; the comparisons below only look at values that carry
//! no intrinsic function (a tagged value would show up as a `{"!Tag": ...}` map and fail them).
//! The offline linters and validators of the same file run in `scripts/infra-check.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use session_core::store::TableSpec;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A YAML file of the repository as JSON (tagged values become one-entry maps keyed by their
/// tag).
fn yaml_file(relative: &str) -> Result<Value> {
    let path = workspace_root().join(relative);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", path.display()))?;
    serde_json::to_value(yaml).with_context(|| format!("{} as JSON", path.display()))
}

/// The template as JSON.
fn template() -> Result<Value> {
    yaml_file("infra/template.yaml")
}

/// `(logical id, resource)` of every resource of `kind`.
fn resources<'a>(template: &'a Value, kind: &str) -> Result<Vec<(&'a str, &'a Value)>> {
    let all = template["Resources"]
        .as_object()
        .context("the template has no Resources")?;
    Ok(all
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect())
}

mod alerts;
mod appconfig;
mod collector;
mod discovery;
mod iam;
mod overlays;
mod settings_schema;
mod template;
