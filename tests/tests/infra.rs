//! `infra/template.yaml` against the code it deploys: the table as the store declares it
//! (`TableSpec::cloudformation`), the HTTP API's routes as the REST API documents them
//! (`docs/openapi.json`), the WebSocket routes the handler serves, one function per binary of
//! `functions/src/bin`, and the backend TLS files where the runbook's layer puts them.
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

/// The template as JSON (tagged values become one-entry maps keyed by their tag).
fn template() -> Result<Value> {
    let path = workspace_root().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", path.display()))?;
    serde_json::to_value(yaml).context("the template as JSON")
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

#[test]
fn the_template_declares_the_table_as_table_spec_renders_it() -> Result<()> {
    // Arrange
    let template = template()?;
    let expected = TableSpec::cloudformation();
    let expected = expected
        .as_object()
        .context("TableSpec::cloudformation() is not an object")?;

    // Act
    let tables = resources(&template, "AWS::DynamoDB::Table")?;

    // Assert
    let [(id, table)] = tables.as_slice() else {
        bail!(
            "expected exactly one AWS::DynamoDB::Table, found {}",
            tables.len()
        );
    };
    let properties = &table["Properties"];
    for (property, value) in expected {
        assert_eq!(
            &properties[property], value,
            "{id}.Properties.{property} differs from TableSpec::cloudformation() \
             (core/src/store/dynamodb/schema.rs)"
        );
    }
    Ok(())
}

/// `(METHOD, path)` and whether the route needs a bearer token, from the OpenAPI document.
fn documented_routes() -> Result<BTreeSet<(String, String, bool)>> {
    let path = workspace_root().join("docs/openapi.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let document: Value = serde_json::from_str(&text)?;
    let mut routes = BTreeSet::new();
    for (route, operations) in document["paths"]
        .as_object()
        .context("openapi.json has no paths")?
    {
        for (method, operation) in operations.as_object().context("a path item")? {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            routes.insert((method.to_uppercase(), route.clone(), secured));
        }
    }
    Ok(routes)
}

#[test]
fn the_http_api_serves_exactly_the_documented_routes_with_their_authorization() -> Result<()> {
    // Arrange
    let template = template()?;
    let documented = documented_routes()?;
    ensure!(!documented.is_empty(), "openapi.json documents no route");

    // Act
    let mut deployed = BTreeSet::new();
    for (id, function) in resources(&template, "AWS::Serverless::Function")? {
        let Some(events) = function["Properties"]["Events"].as_object() else {
            continue;
        };
        for (name, event) in events {
            if event["Type"] != "HttpApi" {
                continue;
            }
            let properties = &event["Properties"];
            let (Some(method), Some(path)) =
                (properties["Method"].as_str(), properties["Path"].as_str())
            else {
                bail!("{id}.Events.{name} lacks a literal Method or Path");
            };
            let secured = properties["Auth"]["Authorizer"] != "NONE";
            let fresh = deployed.insert((method.to_uppercase(), path.to_owned(), secured));
            ensure!(fresh, "{id}.Events.{name}: {method} {path} is routed twice");
        }
    }

    // Assert
    let missing: Vec<_> = documented.difference(&deployed).collect();
    let extra: Vec<_> = deployed.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes as (method, path, needs the authorizer):\n\
         documented but not deployed (or deployed with other authorization): {missing:?}\n\
         deployed but not documented: {extra:?}"
    );
    Ok(())
}

#[test]
fn the_websocket_api_routes_what_the_handler_serves() -> Result<()> {
    // Arrange
    let template = template()?;

    // Act
    let apis = resources(&template, "AWS::ApiGatewayV2::Api")?;
    let routes: BTreeSet<&str> = resources(&template, "AWS::ApiGatewayV2::Route")?
        .into_iter()
        .filter_map(|(_, r)| r["Properties"]["RouteKey"].as_str())
        .collect();
    let authorizers = resources(&template, "AWS::ApiGatewayV2::Authorizer")?;

    // Assert
    let [(_, api)] = apis.as_slice() else {
        bail!("expected one WebSocket API, found {} APIs", apis.len());
    };
    assert_eq!(api["Properties"]["ProtocolType"], "WEBSOCKET");
    assert_eq!(
        api["Properties"]["RouteSelectionExpression"],
        "$request.body.action"
    );
    let expected: BTreeSet<&str> = ["$connect", "heartbeat", "$disconnect", "$default"].into();
    assert_eq!(routes, expected);
    let [(_, authorizer)] = authorizers.as_slice() else {
        bail!(
            "expected one $connect authorizer, found {}",
            authorizers.len()
        );
    };
    assert_eq!(authorizer["Properties"]["AuthorizerType"], "REQUEST");
    assert_eq!(
        authorizer["Properties"]["IdentitySource"],
        serde_json::json!(["route.request.querystring.ticket"])
    );
    Ok(())
}

#[test]
fn every_binary_of_the_functions_crate_is_one_arm64_al2023_function() -> Result<()> {
    // Arrange
    let template = template()?;
    let bin_dir = workspace_root().join("functions/src/bin");
    let mut binaries = BTreeSet::new();
    for entry in std::fs::read_dir(&bin_dir).with_context(|| format!("{}", bin_dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            binaries.insert(stem.to_owned());
        }
    }

    // Act
    let mut built = BTreeSet::new();
    for (id, function) in resources(&template, "AWS::Serverless::Function")? {
        let metadata = &function["Metadata"];
        assert_eq!(metadata["BuildMethod"], "rust-cargolambda", "{id}");
        let binary = metadata["BuildProperties"]["Binary"]
            .as_str()
            .with_context(|| format!("{id} names no binary"))?;
        ensure!(
            built.insert(binary.to_owned()),
            "{binary} is deployed twice"
        );
    }

    // Assert
    assert_eq!(
        built, binaries,
        "functions in the template vs functions/src/bin"
    );
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], serde_json::json!(["arm64"]));
    assert_eq!(globals["Handler"], "bootstrap");
    Ok(())
}

#[test]
fn with_a_tls_layer_every_function_reads_its_backend_tls_files_where_the_runbook_puts_them()
-> Result<()> {
    // Arrange
    let template = template()?;
    let runbook = std::fs::read_to_string(workspace_root().join("docs/deploy.md"))?;
    let component = std::fs::read_to_string(
        workspace_root().join("infra/k8s/components/backend-tls/kustomization.yaml"),
    )?;
    let globals = &template["Globals"]["Function"];
    let only_with_tls = |then: Value| serde_json::json!({ "!If": ["HasBackendTls", then, { "!Ref": "AWS::NoValue" }] });

    // Act
    let variables = &globals["Environment"]["Variables"];
    let functions = resources(&template, "AWS::Serverless::Function")?;

    // Assert
    assert_eq!(
        globals["Layers"],
        only_with_tls(serde_json::json!([{ "!Ref": "BackendTlsLayerArn" }]))
    );
    for (setting, file) in [("CA", "ca.crt"), ("CERT", "tls.crt"), ("KEY", "tls.key")] {
        let name = format!("SESSION_BACKENDS__TLS__{setting}_FILE");
        assert_eq!(
            variables[&name],
            only_with_tls(format!("/opt/backend-tls/{file}").into()),
            "{name}"
        );
        assert!(
            runbook.contains(&format!("/opt/backend-tls/{file}")),
            "docs/deploy.md does not say the layer puts /opt/backend-tls/{file}"
        );
        assert!(component.contains(&name), "the k8s component lacks {name}");
    }
    // The settings refuse an https:// backend URL without a CA: every function names one, so
    // every one gets the files (through Globals, not function by function).
    for (id, function) in functions {
        let own = function["Properties"]["Environment"]["Variables"]
            .as_object()
            .with_context(|| format!("{id} has no variables"))?;
        ensure!(
            own.keys()
                .any(|k| k.starts_with("SESSION_BACKENDS__") && k.ends_with("_URL")),
            "{id} names no backend URL: the TLS files need not be global"
        );
        ensure!(
            !own.keys().any(|k| k.starts_with("SESSION_BACKENDS__TLS__")),
            "{id} overrides the global TLS settings"
        );
    }
    Ok(())
}
