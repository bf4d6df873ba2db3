//! Service discovery and the shared cache in `infra/template.yaml` and `infra/k8s/backends`
//! against the settings the code reads (`discovery.*`, `cache.redis_url`): the Cloud Map
//! namespace and services the functions are told to discover, the roles that may discover them
//! (exactly the components that call a backend), the simulators' registration role, the
//! headless Services of the `dns` mode, and the ElastiCache option's URL and security groups.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use figment::Figment;
use figment::providers::{Format as _, Toml};
use serde::Deserialize as _;
use session_core::config::{ConfigError, DiscoveryMode, DiscoverySettings, Settings};

#[allow(clippy::wildcard_imports)]
use super::*;

/// Settings from `SESSION_*` variables (`SESSION_DISCOVERY__MODE=dns` is `discovery.mode`), as
/// a process given them would read them, without touching this process's environment.
fn settings_from(variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in variables {
        let path = name
            .strip_prefix(Settings::ENV_PREFIX)
            .unwrap_or(name)
            .to_lowercase();
        let (table, key) = path.split_once("__").unwrap_or(("", &path));
        tables
            .entry(table.to_owned())
            .or_default()
            .push(format!("{key} = {value:?}"));
    }
    let mut toml = String::new();
    for (table, keys) in &tables {
        let _ = writeln!(toml, "[{table}]\n{}", keys.join("\n"));
    }
    Settings::from_figment(&Figment::new().merge(Toml::string(&toml)))
}

/// `{"!If": [condition, then, NoValue]}`'s condition and value.
fn only_if(value: &Value) -> Option<(&str, &Value)> {
    let branches = value["!If"].as_array()?;
    (branches.len() == 3 && branches[2] == serde_json::json!({ "!Ref": "AWS::NoValue" }))
        .then(|| Some((branches[0].as_str()?, &branches[1])))
        .flatten()
}

/// The Cloud Map services (`ServiceName` condition values) the role `role_id` may discover,
/// through its managed policies of the template; fails on any other Cloud Map action or on a
/// grant not held to the stack's namespace.
fn discoverable(template: &Value, role_id: &str) -> Result<BTreeSet<String>> {
    let role = &template["Resources"][role_id]["Properties"];
    ensure!(role.is_object(), "the template has no role {role_id}");
    ensure!(
        !role["Policies"].to_string().contains("servicediscovery:"),
        "{role_id} grants Cloud Map inline: the Discover* managed policies are the one place"
    );
    let mut services = BTreeSet::new();
    let Some(managed) = role["ManagedPolicyArns"].as_array() else {
        return Ok(services);
    };
    for arn in managed {
        let Some((condition, value)) = only_if(arn) else {
            let policy = arn["!Ref"].as_str().unwrap_or_default();
            ensure!(
                !policy.starts_with("Discover"),
                "{role_id} attaches {policy} whatever DiscoveryMode is"
            );
            continue;
        };
        let policy = value["!Ref"].as_str().unwrap_or_default();
        if !policy.starts_with("Discover") {
            continue;
        }
        ensure!(
            condition == "UseCloudMap",
            "{role_id} attaches {policy} under {condition}, not UseCloudMap"
        );
        let resource = &template["Resources"][policy];
        ensure!(
            resource["Condition"] == "UseCloudMap",
            "{policy} exists in static mode"
        );
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
            .as_array()
            .context("a statement list")?
        {
            ensure!(
                statement["Action"] == "servicediscovery:DiscoverInstances"
                    && statement["Resource"] == "*",
                "{policy}: only DiscoverInstances, on * (it has no resource type): {statement}"
            );
            let keys = &statement["Condition"]["StringEquals"];
            ensure!(
                keys["servicediscovery:NamespaceName"]
                    == serde_json::json!({ "!Ref": "DiscoveryNamespaceName" }),
                "{policy}: not held to the stack's namespace: {statement}"
            );
            services.insert(
                keys["servicediscovery:ServiceName"]
                    .as_str()
                    .with_context(|| format!("{policy}: no single ServiceName"))?
                    .to_owned(),
            );
        }
    }
    Ok(services)
}

#[test]
fn the_functions_are_told_to_discover_the_namespace_and_services_the_template_creates() -> Result<()>
{
    // Arrange
    let template = template()?;
    let variables = &template["Globals"]["Function"]["Environment"]["Variables"];
    let defaults = DiscoverySettings::default();
    let parameter = &template["Parameters"]["DiscoveryMode"];

    // Act
    let service_name = |id: &str| template["Resources"][id]["Properties"]["Name"].clone();
    let cloudmap_value = |name: &str| {
        only_if(&variables[name])
            .filter(|(condition, _)| *condition == "UseCloudMap")
            .map(|(_, value)| value.clone())
    };

    // Assert
    assert_eq!(
        variables["SESSION_DISCOVERY__MODE"],
        serde_json::json!({ "!Ref": "DiscoveryMode" })
    );
    // Every mode the parameter offers is one the settings read, and its default is theirs.
    for mode in parameter["AllowedValues"]
        .as_array()
        .context("DiscoveryMode's AllowedValues")?
    {
        let parsed: DiscoveryMode = serde_json::from_value(mode.clone())
            .with_context(|| format!("discovery.mode does not read {mode}"))?;
        ensure!(
            parsed != DiscoveryMode::Dns,
            "the Lambdas cannot resolve cluster DNS"
        );
    }
    assert_eq!(
        serde_json::from_value::<DiscoveryMode>(parameter["Default"].clone())?,
        DiscoveryMode::default()
    );
    assert_eq!(
        cloudmap_value("SESSION_DISCOVERY__NAMESPACE"),
        Some(serde_json::json!({ "!Ref": "DiscoveryNamespaceName" }))
    );
    assert_eq!(
        template["Resources"]["DiscoveryNamespace"]["Properties"]["Name"],
        serde_json::json!({ "!Ref": "DiscoveryNamespaceName" })
    );
    assert_eq!(
        template["Parameters"]["DiscoveryNamespaceName"]["Default"],
        defaults.namespace.as_str()
    );
    for (variable, service, default) in [
        (
            "SESSION_DISCOVERY__SIMULATOR_SERVICE",
            "SimulatorDiscoveryService",
            &defaults.simulator_service,
        ),
        (
            "SESSION_DISCOVERY__AUTH_SERVICE",
            "AuthDiscoveryService",
            &defaults.auth_service,
        ),
    ] {
        assert_eq!(
            cloudmap_value(variable),
            Some(service_name(service)),
            "{variable}"
        );
        assert_eq!(service_name(service), default.as_str(), "{service}");
        let properties = &template["Resources"][service]["Properties"];
        assert_eq!(
            properties["NamespaceId"],
            serde_json::json!({ "!Ref": "DiscoveryNamespace" })
        );
        assert!(
            properties["HealthCheckCustomConfig"].is_object(),
            "{service}: its registrants report their own health"
        );
    }
    // What a function gets in cloudmap mode is valid settings.
    let settings = settings_from(&[
        ("SESSION_DISCOVERY__MODE", "cloudmap"),
        ("SESSION_DISCOVERY__NAMESPACE", &defaults.namespace),
        ("SESSION_DISCOVERY__SIMULATOR_SERVICE", "simulator"),
        ("SESSION_DISCOVERY__AUTH_SERVICE", "auth"),
    ])?;
    assert_eq!(settings.discovery.mode, DiscoveryMode::Cloudmap);
    Ok(())
}

#[test]
fn each_role_may_discover_exactly_the_services_its_component_calls() -> Result<()> {
    // Arrange: rest-api starts and controls simulators; the HTTP authorizer validates tokens;
    // the WebSocket functions and the migrations call no backend; the streamer subscribes to
    // simulators and validates tokens.
    let template = template()?;
    let expected = [
        ("rest-api", vec!["simulator"]),
        ("authorizer", vec!["auth"]),
        ("ws-authorizer", vec![]),
        ("ws-handler", vec![]),
        ("session-admin", vec![]),
    ];

    // Act
    let mut roles = Vec::new();
    for (binary, services) in expected {
        roles.push((function_role_of(&template, binary)?, services));
    }
    roles.push(("StreamerRole", vec!["auth", "simulator"]));

    // Assert
    for (role, services) in roles {
        let found = discoverable(&template, role)?;
        let wanted: BTreeSet<String> = services.into_iter().map(str::to_owned).collect();
        assert_eq!(found, wanted, "{role}");
    }
    // The WebSocket functions build a simulator client they never call: pinned to static, they
    // start no discovery, whose calls their roles would refuse.
    for binary in ["ws-authorizer", "ws-handler"] {
        let (_, function) = resources(&template, "AWS::Serverless::Function")?
            .into_iter()
            .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"] == binary)
            .with_context(|| format!("no function deploys {binary}"))?;
        assert_eq!(
            function["Properties"]["Environment"]["Variables"]["SESSION_DISCOVERY__MODE"], "static",
            "{binary}"
        );
    }
    Ok(())
}

/// The role of the function deploying `binary`.
fn function_role_of<'a>(template: &'a Value, binary: &str) -> Result<&'a str> {
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
fn the_simulator_servers_register_only_in_the_simulator_service_as_their_service_account()
-> Result<()> {
    // Arrange
    let template = template()?;
    let registration = std::fs::read_to_string(
        workspace_root().join("infra/k8s/backends/simulator-registration.yaml"),
    )?;
    let objects: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&registration)
        .map(serde_yaml_ng::Value::deserialize)
        .collect::<Result<_, _>>()?;
    let role = &template["Resources"]["SimulatorRegistrarRole"];

    // Act
    let statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .context("the registrar's statements")?;
    let trust = role["Properties"]["AssumeRolePolicyDocument"]["!Sub"]
        .as_str()
        .context("the registrar's trust policy")?;
    let account = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .context("no ServiceAccount in simulator-registration.yaml")?;
    let config = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .context("no ConfigMap in simulator-registration.yaml")?;

    // Assert
    assert_eq!(role["Condition"], "CreateSimulatorRegistrarRole");
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0]["Action"],
        serde_json::json!([
            "servicediscovery:RegisterInstance",
            "servicediscovery:DeregisterInstance",
            "servicediscovery:UpdateInstanceCustomHealthStatus"
        ])
    );
    assert_eq!(
        statements[0]["Resource"],
        serde_json::json!({ "!GetAtt": "SimulatorDiscoveryService.Arn" })
    );
    assert!(
        trust.contains("system:serviceaccount:${SimulatorNamespace}:${SimulatorServiceAccount}"),
        "the registrar role trusts another ServiceAccount: {trust}"
    );
    assert_eq!(
        template["Parameters"]["SimulatorNamespace"]["Default"].as_str(),
        account["metadata"]["namespace"].as_str()
    );
    assert_eq!(
        template["Parameters"]["SimulatorServiceAccount"]["Default"].as_str(),
        account["metadata"]["name"].as_str()
    );
    assert_eq!(
        config["data"]["CLOUDMAP_SERVICE"].as_str(),
        template["Resources"]["SimulatorDiscoveryService"]["Properties"]["Name"].as_str()
    );
    assert_eq!(
        config["data"]["CLOUDMAP_NAMESPACE"].as_str(),
        template["Parameters"]["DiscoveryNamespaceName"]["Default"].as_str()
    );
    Ok(())
}

#[test]
fn the_headless_services_names_are_valid_dns_discovery_settings() -> Result<()> {
    // Arrange
    let text = std::fs::read_to_string(workspace_root().join("infra/k8s/backends/headless.yaml"))?;
    let services: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(serde_yaml_ng::Value::deserialize)
        .collect::<Result<_, _>>()?;

    // Act
    let mut names = BTreeMap::new();
    for service in &services {
        let name = service["metadata"]["name"].as_str().context("a name")?;
        let namespace = service["metadata"]["namespace"]
            .as_str()
            .context("a namespace")?;
        let port = service["spec"]["ports"][0]["port"]
            .as_u64()
            .context("a port")?;
        assert_eq!(
            service["spec"]["clusterIP"].as_str(),
            Some("None"),
            "{name}"
        );
        names.insert(
            namespace.to_owned(),
            format!("{name}.{namespace}.svc.cluster.local:{port}"),
        );
    }
    let simulator = names
        .get("simulators")
        .context("no simulators' headless Service")?;
    let auth = names.get("auth").context("no auth headless Service")?;
    let settings = settings_from(&[
        ("SESSION_DISCOVERY__MODE", "dns"),
        ("SESSION_DISCOVERY__SIMULATOR_DNS", simulator),
        ("SESSION_DISCOVERY__AUTH_DNS", auth),
    ])?;

    // Assert
    assert_eq!(settings.discovery.mode, DiscoveryMode::Dns);
    // The file's own comment gives the operator these exact lines.
    for line in [
        format!("SESSION_DISCOVERY__SIMULATOR_DNS={simulator}"),
        format!("SESSION_DISCOVERY__AUTH_DNS={auth}"),
    ] {
        assert!(text.contains(&line), "headless.yaml does not say {line}");
    }
    Ok(())
}

#[test]
fn the_elasticache_option_gives_a_rediss_url_and_admits_only_the_functions_and_the_streamer()
-> Result<()> {
    // Arrange
    let template = template()?;
    let globals = &template["Globals"]["Function"];
    let resources_of = |kind: &str| resources(&template, kind);

    // Act
    let (condition, url) =
        only_if(&globals["Environment"]["Variables"]["SESSION_CACHE__REDIS_URL"])
            .context("SESSION_CACHE__REDIS_URL is not set only with the cache")?;
    let url = url["!Sub"].as_str().context("the URL is a !Sub")?;
    let caches = resources_of("AWS::ElastiCache::ServerlessCache")?;
    let ingress = resources_of("AWS::EC2::SecurityGroupIngress")?;

    // Assert
    assert_eq!(condition, "HasElastiCache");
    // Serverless takes TLS only; the URL is valid `cache.redis_url`.
    assert_eq!(
        url,
        "rediss://${SessionCache.Endpoint.Address}:${SessionCache.Endpoint.Port}"
    );
    settings_from(&[("SESSION_CACHE__REDIS_URL", "rediss://cache.example:6379")])?;
    assert_eq!(caches.len(), 1);
    let (id, cache) = caches[0];
    assert_eq!(id, "SessionCache");
    assert_eq!(cache["Condition"], "HasElastiCache");
    assert_eq!(cache["Properties"]["Engine"], "valkey");
    assert_eq!(
        cache["Properties"]["SubnetIds"],
        serde_json::json!({ "!Ref": "SubnetIds" })
    );
    assert_eq!(
        cache["Properties"]["SecurityGroupIds"],
        serde_json::json!([{ "!Ref": "CacheSecurityGroup" }])
    );
    let group = &template["Resources"]["CacheSecurityGroup"]["Properties"];
    assert!(
        group.get("SecurityGroupIngress").is_none(),
        "the cache's group admits only through the ingress resources"
    );
    let mut sources = BTreeSet::new();
    for (id, rule) in ingress {
        let rule = &rule["Properties"];
        if rule["GroupId"] != serde_json::json!({ "!Ref": "CacheSecurityGroup" }) {
            continue;
        }
        assert_eq!(
            (&rule["IpProtocol"], &rule["FromPort"], &rule["ToPort"]),
            (&"tcp".into(), &6379.into(), &6379.into()),
            "{id}"
        );
        sources.insert(rule["SourceSecurityGroupId"]["!Ref"].as_str().unwrap_or(id));
    }
    assert_eq!(
        sources,
        BTreeSet::from(["CacheClientSecurityGroup", "StreamerSecurityGroupId"])
    );
    // Every function in the VPC carries the client group the cache admits.
    assert!(
        globals["VpcConfig"]["SecurityGroupIds"]
            .to_string()
            .contains("CacheClientSecurityGroup"),
        "the functions do not carry CacheClientSecurityGroup"
    );
    Ok(())
}
