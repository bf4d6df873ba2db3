//! The template against the code it deploys: the table, the HTTP and WebSocket routes, one
//! function per binary, the backend settings, and the invocation paths through the `live` alias.

#[allow(clippy::wildcard_imports)]
use super::*;

#[test]
fn the_template_declares_the_table_and_the_global_table_as_table_spec_renders_them() -> Result<()> {
    // Arrange
    let template = template()?;
    let expected = TableSpec::cloudformation();
    let expected = expected
        .as_object()
        .context("TableSpec::cloudformation() is not an object")?;

    // The standalone table and the global table of TableMode global: the same schema.
    for kind in ["AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"] {
        // Act
        let tables = resources(&template, kind)?;

        // Assert
        let [(id, table)] = tables.as_slice() else {
            bail!("expected exactly one {kind}, found {}", tables.len());
        };
        let properties = &table["Properties"];
        for (property, value) in expected {
            assert_eq!(
                &properties[property], value,
                "{id}.Properties.{property} differs from TableSpec::cloudformation() \
                 (core/src/store/dynamodb/schema.rs)"
            );
        }
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
    let mut documented = documented_routes()?;
    ensure!(!documented.is_empty(), "openapi.json documents no route");
    // Not a documented route: the catch-all that lets the function answer 404 and 405 (as
    // the local emulator's `RouteTable::with_default_route`).
    documented.insert(("ANY".to_owned(), "$default".to_owned(), true));

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
            let (method, path) = match (properties.get("Method"), properties.get("Path")) {
                // SAM's form of the `$default` route.
                (None, None) => ("ANY", "$default"),
                (Some(Value::String(method)), Some(Value::String(path))) => {
                    (method.as_str(), path.as_str())
                }
                _ => bail!("{id}.Events.{name} lacks a literal Method or Path"),
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
fn every_function_gets_both_backend_urls_and_with_tls_the_layer_files_and_the_key_secret()
-> Result<()> {
    // Arrange
    let template = template()?;
    let runbook = std::fs::read_to_string(workspace_root().join("docs/deploy.md"))?;
    let component = std::fs::read_to_string(
        workspace_root().join("infra/k8s/components/backend-tls/kustomization.yaml"),
    )?;
    let globals = &template["Globals"]["Function"];
    let when = |condition: &str, then: Value| serde_json::json!({ "!If": [condition, then, { "!Ref": "AWS::NoValue" }] });

    // Act
    let variables = &globals["Environment"]["Variables"];
    let functions = resources(&template, "AWS::Serverless::Function")?;

    // Assert
    // Settings validate both URLs whichever one a function calls (and, with TLS, both must be
    // https://), so both are global, never set function by function.
    assert_eq!(
        variables["SESSION_BACKENDS__AUTH_URL"],
        serde_json::json!({ "!Ref": "AuthServiceUrl" })
    );
    assert_eq!(
        variables["SESSION_BACKENDS__SIMULATOR_URL"],
        serde_json::json!({ "!Ref": "SimulatorServiceUrl" })
    );
    // After the AppConfig extension (tests/tests/infra/appconfig.rs), the TLS layer and the
    // ADOT collector's (AdotLayerArn), each only when given.
    let tls_layer = serde_json::json!({ "!Ref": "BackendTlsLayerArn" });
    let adot_layer = serde_json::json!({ "!Ref": "AdotLayerArn" });
    assert_eq!(
        globals["Layers"].as_array().map(|l| &l[1..]),
        Some(
            &[
                when("HasBackendTls", tls_layer),
                when("HasAdot", adot_layer)
            ][..]
        )
    );
    for (setting, file) in [("CA", "ca.crt"), ("CERT", "tls.crt")] {
        let name = format!("SESSION_BACKENDS__TLS__{setting}_FILE");
        assert_eq!(
            variables[&name],
            when("HasBackendTls", format!("/opt/backend-tls/{file}").into()),
            "{name}"
        );
        assert!(
            runbook.contains(&format!("/opt/backend-tls/{file}")),
            "docs/deploy.md does not say the layer puts /opt/backend-tls/{file}"
        );
        assert!(component.contains(&name), "the k8s component lacks {name}");
    }
    // The private key never ships in the layer: the functions read it from Secrets Manager.
    assert_eq!(
        variables["SESSION_BACKENDS__TLS__KEY_SECRET_ARN"],
        when(
            "HasBackendTlsKey",
            serde_json::json!({ "!Ref": "BackendTlsKeySecretArn" })
        )
    );
    assert!(
        variables.get("SESSION_BACKENDS__TLS__KEY_FILE").is_none(),
        "the functions' key comes from BackendTlsKeySecretArn, not a file"
    );
    assert!(
        !runbook.contains("/opt/backend-tls/tls.key"),
        "docs/deploy.md still puts the private key into the layer"
    );
    assert_eq!(
        variables["SESSION_BACKENDS__TLS__DOMAIN"],
        when(
            "HasBackendTlsDomain",
            serde_json::json!({ "!Ref": "BackendTlsDomain" })
        )
    );
    for (id, function) in functions {
        if let Some(own) = function["Properties"]["Environment"]["Variables"].as_object() {
            ensure!(
                !own.keys().any(|k| k.starts_with("SESSION_BACKENDS__")),
                "{id} overrides the global backend settings"
            );
        }
    }
    Ok(())
}

/// The logical id a `!Ref <Function>.Alias` names, if `value` is one.
fn alias_ref(value: &Value) -> Option<&str> {
    value["!Ref"].as_str()?.strip_suffix(".Alias")
}

/// The alias a `!Sub [".../functions/${Alias}/invocations", {Alias: !Ref <Function>.Alias}]`
/// invokes, if `value` is one.
fn alias_invocation_uri(value: &Value) -> Option<&str> {
    let [uri, variables] = value["!Sub"].as_array()?.as_slice() else {
        return None;
    };
    uri.as_str()?
        .ends_with("/functions/${Alias}/invocations")
        .then(|| alias_ref(&variables["Alias"]))?
}

#[test]
fn every_invocation_path_names_the_live_alias_that_codedeploy_shifts_with_a_rollback_alarm()
-> Result<()> {
    // Arrange
    let template = template()?;
    let globals = &template["Globals"]["Function"];
    let functions = resources(&template, "AWS::Serverless::Function")?;
    let all = &template["Resources"];

    // Act
    let http_authorizer = &all["HttpApi"]["Properties"]["Auth"]["Authorizers"]["BearerToken"];
    let ws_authorizers = resources(&template, "AWS::ApiGatewayV2::Authorizer")?;
    let ws_integrations = resources(&template, "AWS::ApiGatewayV2::Integration")?;
    let permissions = resources(&template, "AWS::Lambda::Permission")?;

    // Assert
    assert_eq!(globals["AutoPublishAlias"], "live");
    assert_eq!(
        globals["DeploymentPreference"]["Type"],
        serde_json::json!({ "!If": ["CanaryDeployment", "Canary10Percent5Minutes", "AllAtOnce"] })
    );
    for (id, _) in &functions {
        let preference = &all[*id]["Properties"]["DeploymentPreference"];
        // Invoked only by CloudFormation, ahead of the others (tests/tests/infra/appconfig.rs).
        if *id == "MigrationsFunction" {
            assert_eq!(preference["Enabled"], false, "{id}");
            continue;
        }
        let [alarm] = preference["Alarms"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        else {
            bail!("{id}: DeploymentPreference.Alarms must be its one new-version alarm");
        };
        let alarm_id = alarm["!Ref"]
            .as_str()
            .with_context(|| format!("{id}: the rollback alarm is not a !Ref"))?;
        let dimensions = &all[alarm_id]["Properties"]["Dimensions"];
        assert_eq!(
            dimensions,
            &serde_json::json!([
                { "Name": "FunctionName", "Value": { "!Ref": id } },
                { "Name": "Resource", "Value": { "!Sub": format!("${{{id}}}:live") } },
                { "Name": "ExecutedVersion", "Value": { "!GetAtt": format!("{id}.Version.Version") } },
            ]),
            "{alarm_id} must watch the version {id} published, through its live alias"
        );
    }
    assert_eq!(
        alias_ref(&http_authorizer["FunctionArn"]),
        Some("AuthorizerFunction")
    );
    for (id, authorizer) in ws_authorizers {
        assert_eq!(
            alias_invocation_uri(&authorizer["Properties"]["AuthorizerUri"]),
            Some("WsAuthorizerFunction"),
            "{id}"
        );
    }
    for (id, integration) in ws_integrations {
        assert_eq!(
            alias_invocation_uri(&integration["Properties"]["IntegrationUri"]),
            Some("WsHandlerFunction"),
            "{id}"
        );
    }
    ensure!(!permissions.is_empty(), "no explicit invoke permissions");
    for (id, permission) in permissions {
        ensure!(
            alias_ref(&permission["Properties"]["FunctionName"]).is_some(),
            "{id} allows invoking the function itself, not its live alias"
        );
    }
    Ok(())
}
