//! The record of AWS API calls that the stand-ins for AWS serve, for the permission check.
//!
//! With `AWS_CALL_LOG` set to a file, each call is appended to it as one JSON line naming the
//! calling component (the `app/session-<component>` of its user agent), the service, the
//! operation and what it acts on; moto's wrapper (`scripts/moto_server.py`) writes the same
//! lines for DynamoDB. `scripts/permissions-check.sh` holds them against each component's IAM
//! role in the SAM template.

use std::io::Write as _;

use http::HeaderMap;
use serde_json::{Value, json};

/// The file calls are appended to, if any.
const ENV: &str = "AWS_CALL_LOG";

/// Records a call to `service`'s `operation` with `params`, made with `headers`.
pub(crate) fn record(headers: &HeaderMap, service: &str, operation: &str, params: &Value) {
    let Some(path) = std::env::var_os(ENV) else {
        return;
    };
    let line = json!({
        "component": component(headers),
        "service": service,
        "operation": operation,
        "params": params,
    });
    // One write of one whole line: appends from several processes do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not record an AWS call in {ENV}");
    }
}

/// The component named by `app/session-<component>` in the SDK's user agent headers.
fn component(headers: &HeaderMap) -> Option<String> {
    ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .flat_map(str::split_whitespace)
        .find_map(|part| part.strip_prefix("app/session-"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_read_from_the_sdk_user_agent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-user-agent",
            "aws-sdk-rust/1.3 ua/2.1 api/apigatewaymanagement/1.0 os/linux lang/rust/1.95 app/session-streamer"
                .parse()
                .unwrap(),
        );
        assert_eq!(component(&headers).as_deref(), Some("streamer"));
        assert_eq!(component(&HeaderMap::new()), None);
    }
}
