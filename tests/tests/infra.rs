//! `infra/template.yaml` against the code it deploys: the table as the store declares it
//! (`TableSpec::cloudformation`), the HTTP API's routes as the REST API documents them
//! (`docs/openapi.json`), the WebSocket routes the handler serves, one function per binary of
//! `functions/src/bin`, the backend settings every function gets (both URLs, the TLS files
//! where the runbook's layer puts them, the key from Secrets Manager), and every invocation
//! path through the functions' `live` alias, deployed by CodeDeploy with a rollback alarm on the
//! new version; and the cluster's OpenTelemetry collector (`infra/k8s/observability`) against
//! its IRSA role and the streamer's OTLP endpoint.
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
    // The TLS layer and the ADOT collector's (AdotLayerArn), each only when given.
    let tls_layer = serde_json::json!({ "!Ref": "BackendTlsLayerArn" });
    let adot_layer = serde_json::json!({ "!Ref": "AdotLayerArn" });
    assert_eq!(
        globals["Layers"],
        serde_json::json!({ "!If": [
            "HasBackendTls",
            { "!If": ["HasAdot", [tls_layer, adot_layer], [tls_layer]] },
            when("HasAdot", serde_json::json!([adot_layer])),
        ] })
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

/// The anchors of `docs/deploy.md`'s runbook sections (`<a id="alert-...">`).
fn runbook_anchors() -> Result<BTreeSet<String>> {
    let path = workspace_root().join("docs/deploy.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .split("<a id=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(id, _)| id.to_owned()))
        .filter(|id| id.starts_with("alert-"))
        .collect())
}

/// The runbook anchor a text links to (`docs/deploy.md#alert-...`), if any.
fn runbook_link(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("docs/deploy.md#")?;
    Some(
        rest.split(|c: char| c.is_whitespace() || c == ')')
            .next()
            .unwrap_or(rest),
    )
}

#[test]
fn every_alarm_notifies_one_severity_topic_and_links_a_runbook_section_that_exists() -> Result<()> {
    // Arrange
    let template = template()?;
    let anchors = runbook_anchors()?;
    let topics = ["AlarmTopic", "TicketTopic"];

    // Act
    let alarms = resources(&template, "AWS::CloudWatch::Alarm")?;

    // Assert
    ensure!(alarms.len() >= 10, "too few alarms found: {}", alarms.len());
    for (id, alarm) in alarms {
        let properties = &alarm["Properties"];
        let description = properties["AlarmDescription"].as_str().unwrap_or_default();
        let anchor = runbook_link(description)
            .with_context(|| format!("{id}: its description names no docs/deploy.md#alert-..."))?;
        ensure!(
            anchors.contains(anchor),
            "{id}: docs/deploy.md has no section {anchor}"
        );
        // Rollback triggers notify nobody; every other alarm one topic, for both transitions.
        let actions = &properties["AlarmActions"];
        if actions.is_null() {
            ensure!(
                id.ends_with("NewVersionErrorsAlarm"),
                "{id} notifies nobody"
            );
            continue;
        }
        let refs: Vec<&str> = actions
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["!Ref"].as_str()).collect())
            .unwrap_or_default();
        ensure!(
            matches!(refs.as_slice(), [topic] if topics.contains(topic)),
            "{id}: AlarmActions must be exactly one of {topics:?}, not {actions}"
        );
        assert_eq!(&properties["OKActions"], actions, "{id}: OKActions");
    }
    Ok(())
}

#[test]
fn every_prometheus_alert_has_a_routed_severity_and_a_runbook_section_that_exists() -> Result<()> {
    // Arrange
    let rules = yaml_file("infra/k8s/base/prometheusrule.yaml")?;
    let alertmanager = yaml_file("infra/k8s/alertmanager-example.yaml")?;
    let anchors = runbook_anchors()?;

    // Act: the receiver Alertmanager's example routes each severity to.
    let routes = alertmanager["route"]["routes"]
        .as_array()
        .context("the example has no routes")?;
    let receiver_of = |severity: &str| {
        let matcher = format!("severity = \"{severity}\"");
        routes
            .iter()
            .find(|r| {
                r["matchers"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m.as_str() == Some(matcher.as_str())))
            })
            .and_then(|r| r["receiver"].as_str())
    };

    // Assert
    assert_eq!(receiver_of("critical"), Some("page"));
    assert_eq!(receiver_of("warning"), Some("ticket"));
    let alerts: Vec<&Value> = rules["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["alert"].is_string())
        .collect();
    ensure!(!alerts.is_empty(), "no alerts in the PrometheusRule");
    for alert in alerts {
        let name = alert["alert"].as_str().unwrap_or_default();
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        ensure!(
            receiver_of(severity).is_some(),
            "{name}: severity {severity:?} is routed nowhere"
        );
        let url = alert["annotations"]["runbook_url"]
            .as_str()
            .with_context(|| format!("{name}: no runbook_url"))?;
        let anchor = runbook_link(url).with_context(|| format!("{name}: {url}"))?;
        ensure!(
            anchor == format!("alert-{}", name.to_lowercase()) && anchors.contains(anchor),
            "{name}: docs/deploy.md has no section {anchor}"
        );
    }
    Ok(())
}

/// The OpenTelemetry collector as `infra/k8s/observability` deploys it: its namespace, the
/// ServiceAccount its pods run as, and its Service's name and OTLP/gRPC port.
struct Collector {
    namespace: String,
    service_account: String,
    service: String,
    grpc_port: u64,
}

fn collector() -> Result<Collector> {
    let dir = "infra/k8s/observability";
    let kustomization = yaml_file(&format!("{dir}/kustomization.yaml"))?;
    let account = yaml_file(&format!("{dir}/serviceaccount.yaml"))?;
    let deployment = yaml_file(&format!("{dir}/deployment.yaml"))?;
    let service = yaml_file(&format!("{dir}/service.yaml"))?;
    let service_account = account["metadata"]["name"]
        .as_str()
        .context("the collector's ServiceAccount has no name")?;
    ensure!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == service_account,
        "the collector's pods do not run as its ServiceAccount {service_account}"
    );
    let grpc_port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "otlp-grpc")
        .and_then(|p| p["port"].as_u64())
        .context("the collector's Service has no port named otlp-grpc")?;
    Ok(Collector {
        namespace: kustomization["namespace"]
            .as_str()
            .context("the collector's kustomization sets no namespace")?
            .to_owned(),
        service_account: service_account.to_owned(),
        service: service["metadata"]["name"]
            .as_str()
            .context("the collector's Service has no name")?
            .to_owned(),
        grpc_port,
    })
}

/// `text` with every `${Name}` of a template parameter replaced by its default, if not empty.
fn substitute_defaults(template: &Value, text: &str) -> Result<String> {
    let mut out = text.to_owned();
    for (name, parameter) in template["Parameters"]
        .as_object()
        .context("the template has no Parameters")?
    {
        if let Some(default) = parameter["Default"].as_str().filter(|d| !d.is_empty()) {
            out = out.replace(&format!("${{{name}}}"), default);
        }
    }
    Ok(out)
}

#[test]
fn the_collector_role_trusts_exactly_the_service_account_of_the_collector_manifests() -> Result<()>
{
    // Arrange
    let template = template()?;
    let collector = collector()?;
    let role = &template["Resources"]["CollectorRole"];

    // Act
    let trust = role["Properties"]["AssumeRolePolicyDocument"]["!Sub"]
        .as_str()
        .context("CollectorRole's trust policy is not a !Sub string")?;
    let trust: Value = serde_json::from_str(&substitute_defaults(&template, trust)?)
        .context("CollectorRole's trust policy is not JSON")?;
    let policies = role["Properties"]["Policies"]
        .as_array()
        .context("CollectorRole has no inline policies")?;

    // Assert
    assert_eq!(role["Type"], "AWS::IAM::Role");
    let [statement] = trust["Statement"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    else {
        bail!("CollectorRole's trust policy must have exactly one statement: {trust}");
    };
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    // The issuer stays as written (EksOidcIssuer's default is empty: no role).
    assert_eq!(
        statement["Condition"],
        serde_json::json!({ "StringEquals": {
            "${EksOidcIssuer}:sub": format!(
                "system:serviceaccount:{}:{}",
                collector.namespace, collector.service_account
            ),
            "${EksOidcIssuer}:aud": "sts.amazonaws.com",
        } }),
        "CollectorRole must trust only infra/k8s/observability's ServiceAccount"
    );
    let statements: Vec<&Value> = policies
        .iter()
        .filter_map(|p| p["PolicyDocument"]["Statement"].as_array())
        .flatten()
        .collect();
    for statement in &statements {
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Resource"], "*", "X-Ray has no resource types");
        assert!(statement["Condition"].is_null());
    }
    let actions: BTreeSet<&str> = statements
        .iter()
        .filter_map(|s| s["Action"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    ]
    .into();
    assert_eq!(actions, expected, "CollectorRole's actions");
    assert!(
        role["Properties"]["ManagedPolicyArns"].is_null(),
        "CollectorRole gets no managed policy"
    );
    assert_eq!(
        template["Outputs"]["CollectorRoleArn"]["Value"],
        serde_json::json!({ "!GetAtt": "CollectorRole.Arn" })
    );
    Ok(())
}

#[test]
fn the_streamer_exports_traces_to_the_collector_service_and_may_reach_its_port() -> Result<()> {
    // Arrange
    let collector = collector()?;
    let path = workspace_root().join("infra/k8s/base/streamer.env");
    let env = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let policy = yaml_file("infra/k8s/base/networkpolicy.yaml")?;

    // Act
    let endpoint = env
        .lines()
        .find_map(|line| line.strip_prefix("OTEL_EXPORTER_OTLP_ENDPOINT="))
        .context("streamer.env sets no OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let egress_to_collector = policy["spec"]["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| {
            rule["to"].as_array().into_iter().flatten().any(|peer| {
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    == collector.namespace.as_str()
            })
        })
        .flat_map(|rule| rule["ports"].as_array().into_iter().flatten())
        .any(|port| port["port"].as_u64() == Some(collector.grpc_port));

    // Assert
    assert_eq!(
        endpoint,
        format!(
            "http://{}.{}.svc.cluster.local:{}",
            collector.service, collector.namespace, collector.grpc_port
        ),
        "streamer.env's OTEL_EXPORTER_OTLP_ENDPOINT must name infra/k8s/observability's Service"
    );
    assert!(
        env.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
        "the collector's {} is OTLP over gRPC",
        collector.grpc_port
    );
    assert!(
        egress_to_collector,
        "the streamer's NetworkPolicy does not let it reach {}:{} in namespace {}",
        collector.service, collector.grpc_port, collector.namespace
    );
    Ok(())
}

/// Every `dynamodb:*` action `value`'s policy statements allow (`Action` as a string or a list).
fn dynamodb_actions_in(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "Action" {
                    let actions = match inner {
                        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                        other => other.as_str().into_iter().collect::<Vec<_>>(),
                    };
                    found.extend(
                        actions
                            .into_iter()
                            .filter(|a| a.starts_with("dynamodb:"))
                            .map(str::to_owned),
                    );
                } else {
                    dynamodb_actions_in(inner, found);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| dynamodb_actions_in(v, found)),
        _ => {}
    }
}

/// The `!Ref` targets anywhere in `value` (managed policies, conditional or not).
fn refs_in<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner.as_str()) {
                    ("!Ref", Some(target)) => found.push(target),
                    _ => refs_in(inner, found),
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| refs_in(v, found)),
        _ => {}
    }
}

/// The DynamoDB actions the role `role_id` allows: its inline policies' and those of the managed
/// policies of the template it attaches.
fn role_dynamodb_actions(template: &Value, role_id: &str) -> Result<BTreeSet<String>> {
    let role = &template["Resources"][role_id]["Properties"];
    ensure!(role.is_object(), "the template has no role {role_id}");
    let mut actions = BTreeSet::new();
    dynamodb_actions_in(&role["Policies"], &mut actions);
    let mut managed = Vec::new();
    refs_in(&role["ManagedPolicyArns"], &mut managed);
    for policy in managed {
        dynamodb_actions_in(
            &template["Resources"][policy]["Properties"]["PolicyDocument"],
            &mut actions,
        );
    }
    Ok(actions)
}

/// The role of the function deploying `binary` (`Role: !GetAtt <Role>.Arn`).
fn function_role<'a>(template: &'a Value, binary: &str) -> Result<&'a str> {
    let (id, function) = resources(template, "AWS::Serverless::Function")?
        .into_iter()
        .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"] == binary)
        .with_context(|| format!("no function deploys {binary}"))?;
    function["Properties"]["Role"]["!GetAtt"]
        .as_str()
        .and_then(|arn| arn.strip_suffix(".Arn"))
        .with_context(|| format!("{id} names its role other than by !GetAtt <Role>.Arn"))
}

#[test]
fn each_role_grants_exactly_the_dynamodb_actions_of_the_port_methods_its_entry_point_calls()
-> Result<()> {
    use session_core::component::Component;
    use session_core::store::ports::{PortUse, dynamodb_actions};
    use session_functions::wiring;

    // Arrange
    let template = template()?;
    let entry_points: [(Component, &[&[PortUse]]); 5] = [
        (Component::RestApi, wiring::REST_API_PORTS),
        (Component::Authorizer, wiring::AUTHORIZER_PORTS),
        (Component::WsAuthorizer, wiring::WS_AUTHORIZER_PORTS),
        (Component::WsHandler, wiring::WS_HANDLER_PORTS),
        (Component::Streamer, session_streamer::app::PORTS),
    ];

    let mut failures = Vec::new();
    for (component, ports) in entry_points {
        // Act
        let role = match component {
            Component::Streamer => "StreamerRole",
            function => function_role(&template, function.name())?,
        };
        let granted = role_dynamodb_actions(&template, role)?;
        let needed = dynamodb_actions(ports)?;

        // Assert (every difference at once, each naming who needs or grants what)
        for (action, users) in &needed {
            if !granted.contains(*action) {
                let users: Vec<String> = users.iter().map(|(p, m)| format!("{p}::{m}")).collect();
                failures.push(format!(
                    "{component}: {role} lacks {action}, needed by {}",
                    users.join(", ")
                ));
            }
        }
        for action in &granted {
            if !needed.contains_key(action.as_str()) {
                failures.push(format!(
                    "{component}: {role} grants {action}, which no port method it calls needs"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
