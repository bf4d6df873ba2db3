//! Each function's role against the DynamoDB actions of the port methods its entry point calls.

#[allow(clippy::wildcard_imports)]
use super::*;

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
