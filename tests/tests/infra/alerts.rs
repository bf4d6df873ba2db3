//! Alarms and Prometheus alerts: each notifies one severity and links a runbook section that
//! exists.

#[allow(clippy::wildcard_imports)]
use super::*;

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
