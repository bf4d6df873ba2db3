//! API Gateway states some facts twice; a sample must state them once over.

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::{Handler, event_files, handler_of, load};

/// API Gateway states some facts twice (the path, the query, the route); handlers read one copy,
/// so a sample edited in one place only would still pass above while being an event API
/// Gateway never sends.
#[test]
fn every_sample_states_its_request_consistently() {
    let mut failures = Vec::new();
    // Files with no case are reported by the test above; the WebSocket API's payloads have
    // another shape (payload 1.0 style), checked by deserialising them in their cases.
    for file in event_files().into_iter().filter(|f| {
        matches!(
            handler_of(f),
            Some(Handler::RestApi(_) | Handler::Authorizer)
        )
    }) {
        if let Err(e) = load(&file).and_then(|event| consistent(&event)) {
            failures.push(format!("events/{file}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn consistent(event: &Value) -> anyhow::Result<()> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    ensure!(event["version"] == "2.0", "version must be \"2.0\"");
    let context = &event["requestContext"];
    let route_key = text(&event["routeKey"]);
    let raw_path = text(&event["rawPath"]);
    let method = text(&context["http"]["method"]);
    ensure!(
        context["routeKey"] == route_key,
        "requestContext.routeKey differs from routeKey"
    );
    ensure!(
        context["http"]["path"] == raw_path,
        "requestContext.http.path differs from rawPath"
    );
    let (route_method, template) = route_key
        .split_once(' ')
        .context("routeKey is METHOD PATH")?;
    ensure!(
        route_method == method,
        "routeKey's method differs from requestContext.http.method"
    );
    let mut path = template.to_owned();
    if let Some(parameters) = event["pathParameters"].as_object() {
        for (name, value) in parameters {
            path = path.replace(&format!("{{{name}}}"), value.as_str().unwrap_or_default());
        }
    }
    ensure!(
        path == raw_path,
        "routeKey with pathParameters is {path}, rawPath is {raw_path}"
    );
    let raw_query = text(&event["rawQueryString"]);
    let parsed: serde_json::Map<String, Value> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    let parameters = event["queryStringParameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    ensure!(
        parsed == parameters,
        "queryStringParameters differ from rawQueryString"
    );
    let headers = &event["headers"];
    if let Some(body) = event["body"].as_str() {
        ensure!(
            text(&headers["content-length"]).parse::<usize>().ok() == Some(body.len()),
            "content-length is not the body's length ({})",
            body.len()
        );
    }
    if event["type"] == "REQUEST" {
        ensure!(
            event["identitySource"] == serde_json::json!([headers["authorization"]]),
            "identitySource must be the authorization header (the route's identity source)"
        );
        ensure!(
            text(&event["routeArn"]).ends_with(&format!("/$default/{method}{raw_path}")),
            "routeArn must end with /$default/{method}{raw_path}"
        );
    }
    Ok(())
}
