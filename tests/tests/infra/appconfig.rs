//! The template's AppConfig resources against the code that reads them, and the Migrations
//! custom resource against what must wait for it: the hosted flags version in AppConfig's
//! feature-flag format declares every flag the code reads, all off, in the shape the agent
//! serves and `FlagSet::parse` accepts; every function reads them through the extension by the
//! names the resources have, with a role that may; and no function, alias or API stage takes
//! traffic before the migrations ran.

#[allow(clippy::wildcard_imports)]
use super::*;
use session_core::appconfig::{FlagSet, MAINTENANCE_MODE, WS_COMPRESSION};

/// The flags the code reads.
const FLAGS: [&str; 2] = [MAINTENANCE_MODE, WS_COMPRESSION];

/// The template's hosted flags version, parsed.
fn hosted_flags(template: &Value) -> Result<Value> {
    let content = template["Resources"]["FlagsInitialVersion"]["Properties"]["Content"]
        .as_str()
        .context("FlagsInitialVersion has no literal Content")?;
    serde_json::from_str(content).context("FlagsInitialVersion's Content is not JSON")
}

/// What the AppConfig agent returns for a feature-flag version: each flag's values (`enabled`
/// and its attributes) under its name.
fn as_the_agent_serves_it(hosted: &Value) -> Result<Vec<u8>> {
    let values = hosted["values"]
        .as_object()
        .context("the flags version has no values")?;
    Ok(serde_json::to_vec(values)?)
}

#[test]
fn the_hosted_flags_version_declares_every_flag_the_code_reads_all_off_in_the_shape_it_parses()
-> Result<()> {
    // Arrange
    let template = template()?;
    let profile = &template["Resources"]["FlagsProfile"]["Properties"];
    let hosted = hosted_flags(&template)?;
    let local: Value = serde_json::from_str(&std::fs::read_to_string(
        workspace_root().join("local/appconfig/flags.json"),
    )?)?;

    // Act
    let served = FlagSet::parse(&as_the_agent_serves_it(&hosted)?)?;

    // Assert
    assert_eq!(profile["Type"], "AWS.AppConfig.FeatureFlags");
    assert_eq!(profile["LocationUri"], "hosted");
    assert_eq!(
        hosted["version"], "1",
        "AppConfig's feature-flag format version"
    );
    let declared: BTreeSet<&str> = hosted["flags"]
        .as_object()
        .context("no flags")?
        .keys()
        .map(String::as_str)
        .collect();
    let valued: BTreeSet<&str> = hosted["values"]
        .as_object()
        .context("no values")?
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(declared, FLAGS.into_iter().collect(), "flags declared");
    assert_eq!(valued, declared, "every declared flag has a value");
    for flag in FLAGS {
        assert!(!served.is_on(flag, "anyone"), "{flag} must start off");
        let attributes = &hosted["flags"][flag]["attributes"];
        assert_eq!(
            attributes["rollout_percent"]["constraints"],
            serde_json::json!({ "type": "number", "minimum": 0, "maximum": 100, "required": false }),
            "{flag}.rollout_percent"
        );
        assert_eq!(
            attributes["allow_users"]["constraints"],
            serde_json::json!({ "type": "array", "elements": { "type": "string" }, "required": false }),
            "{flag}.allow_users"
        );
    }
    // The local stack's defaults name only flags AWS knows too.
    for flag in local
        .as_object()
        .context("flags.json is not an object")?
        .keys()
    {
        assert!(
            declared.contains(flag.as_str()),
            "local/appconfig/flags.json has {flag}, which the template does not declare"
        );
    }
    Ok(())
}

#[test]
fn every_function_reads_the_flags_through_the_extension_by_the_resources_names_with_a_role_that_may()
-> Result<()> {
    // Arrange
    let template = template()?;
    let all = &template["Resources"];
    let globals = &template["Globals"]["Function"];
    let variables = &globals["Environment"]["Variables"];

    // Act
    let policy = &all["AppConfigReadPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let readers = [
        "RestApiRole",
        "AuthorizerRole",
        "WsAuthorizerRole",
        "WsHandlerRole",
        "StreamerRole",
    ];

    // Assert
    assert_eq!(
        variables["SESSION_APPCONFIG__BASE_URL"],
        "http://localhost:2772"
    );
    assert_eq!(
        variables["SESSION_APPCONFIG__APPLICATION"],
        all["AppConfigApplication"]["Properties"]["Name"]
    );
    assert_eq!(
        variables["SESSION_APPCONFIG__ENVIRONMENT"],
        all["AppConfigEnvironment"]["Properties"]["Name"]
    );
    assert_eq!(
        variables["SESSION_APPCONFIG__FLAGS_PROFILE"],
        all["FlagsProfile"]["Properties"]["Name"]
    );
    assert_eq!(
        variables["SESSION_APPCONFIG__SETTINGS_PROFILE"],
        all["SettingsProfile"]["Properties"]["Name"]
    );
    assert_eq!(
        globals["Layers"][0]["!If"][2],
        serde_json::json!({ "!FindInMap": ["AppConfigExtension", { "!Ref": "AWS::Region" }, "Arm64"] }),
        "the extension is every function's first layer"
    );
    for (region, arn) in template["Mappings"]["AppConfigExtension"]
        .as_object()
        .context("no AppConfigExtension mapping")?
    {
        let arn = arn["Arm64"].as_str().unwrap_or_default();
        ensure!(
            arn.starts_with(&format!("arn:aws:lambda:{region}:"))
                && arn.contains(":layer:AWS-AppConfig-Extension-Arm64:"),
            "{region}: {arn} is not the arm64 extension of that region"
        );
    }
    let [statement] = policy.as_array().map(Vec::as_slice).unwrap_or_default() else {
        bail!("AppConfigReadPolicy must have one statement");
    };
    assert_eq!(
        statement["Action"],
        serde_json::json!([
            "appconfig:StartConfigurationSession",
            "appconfig:GetLatestConfiguration"
        ])
    );
    let resource = statement["Resource"]["!Sub"].as_str().unwrap_or_default();
    assert!(
        resource.ends_with(
            ":application/${AppConfigApplication}/environment/${AppConfigEnvironment}/configuration/*"
        ),
        "the reads are limited to this stack's environment: {resource}"
    );
    for role in readers {
        let attached = &all[role]["Properties"]["ManagedPolicyArns"];
        ensure!(
            attached.as_array().is_some_and(
                |list| list.contains(&serde_json::json!({ "!Ref": "AppConfigReadPolicy" }))
            ),
            "{role} does not attach AppConfigReadPolicy"
        );
    }
    Ok(())
}

/// The logical ids a resource's `DependsOn` names (a string or a list).
fn depends_on(resource: &Value) -> Vec<&str> {
    match &resource["DependsOn"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_migrations_run_on_every_deploy_before_any_function_or_stage_takes_traffic() -> Result<()> {
    // Arrange
    let template = template()?;
    let all = &template["Resources"];

    // Act
    let migrations = &all["Migrations"];
    let function = &all["MigrationsFunction"];
    let functions = resources(&template, "AWS::Serverless::Function")?;

    // Assert
    assert_eq!(migrations["Type"], "Custom::Migrations");
    let properties = &migrations["Properties"];
    assert_eq!(
        properties["ServiceToken"],
        serde_json::json!({ "!Ref": "MigrationsFunction.Alias" }),
        "a token that never changes, naming the version just published"
    );
    assert_eq!(
        properties["FunctionVersion"],
        serde_json::json!({ "!Ref": "MigrationsFunction.Version" }),
        "a new binary changes the resource, so CloudFormation runs it again"
    );
    assert_eq!(
        properties["DeployId"],
        serde_json::json!({ "!Ref": "DeployId" })
    );
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"],
        "session-admin"
    );
    assert_eq!(function["Properties"]["Timeout"], 900);
    assert_eq!(
        function["Properties"]["DeploymentPreference"]["Enabled"],
        false
    );
    for (id, resource) in functions {
        if id != "MigrationsFunction" {
            assert_eq!(depends_on(resource), ["Migrations"], "{id}");
        }
    }
    for id in ["HttpApi", "WebSocketStage"] {
        assert!(
            depends_on(&all[id]).contains(&"Migrations"),
            "{id} must wait for the migrations"
        );
    }
    Ok(())
}
