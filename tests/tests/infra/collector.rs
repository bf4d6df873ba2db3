//! The cluster's OpenTelemetry collector against its IRSA role and the streamer's endpoint.

#[allow(clippy::wildcard_imports)]
use super::*;

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
