//! The endpoints file: the JSON object `session-local --endpoints-file` writes, or one built from
//! a deployment's stack outputs. Only the keys the smoke test uses are read; others are ignored.
//!
//! ```json
//! {"http_api": "https://abc.execute-api.eu-west-1.amazonaws.com",
//!  "sse": "https://stream.example.com",
//!  "ws_api": "wss://def.execute-api.eu-west-1.amazonaws.com/prod",
//!  "token_url": "http://127.0.0.1:8080/_local/tokens"}
//! ```

use std::path::Path;

use serde_json::{Map, Value};
use url::Url;

/// Where the deployment's parts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Base URL of the HTTP API (`{http_api}/v1/sessions`); required.
    pub http_api: Url,
    /// Where to mint a token (`POST {"sub": ...}`, the local stack's dev-only route); needed only
    /// without `SMOKE_TOKEN`.
    pub token_url: Option<Url>,
    /// The streamer's base URL: SSE ticket URLs must be under it.
    pub sse: Option<Url>,
    /// The WebSocket API's URL: WebSocket ticket URLs must be under it.
    pub ws_api: Option<Url>,
}

/// Why the endpoints file cannot be used; each names the file, and the key when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// The file cannot be read.
    #[error("cannot read {origin}: {source}")]
    Read {
        /// The file.
        origin: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a JSON object.
    #[error("{origin} is not a JSON object: {reason}")]
    NotAnObject {
        /// The file.
        origin: String,
        /// What the JSON parser said, or what the document is instead.
        reason: String,
    },
    /// A required key is absent (or `null`).
    #[error("missing key \"{key}\" in {origin}")]
    Missing {
        /// The key.
        key: &'static str,
        /// The file.
        origin: String,
    },
    /// A key's value is not a URL of the kind it must be.
    #[error("key \"{key}\" in {origin}: {value} is not a {schemes} URL")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The file.
        origin: String,
        /// The value, as JSON.
        value: String,
        /// What it must be (`http:// or https://`).
        schemes: &'static str,
    },
}

const HTTP: (&[&str], &str) = (&["http", "https"], "http:// or https://");
const WS: (&[&str], &str) = (&["ws", "wss"], "ws:// or wss://");

impl Endpoints {
    /// Reads the endpoints file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not a JSON object, lacks `http_api`, or has a key whose value
    /// is not a URL of its kind.
    pub fn load(path: &Path) -> Result<Self, EndpointsError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EndpointsError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses an endpoints document; errors name it as `origin`.
    ///
    /// # Errors
    /// As [`Endpoints::load`].
    pub fn parse(text: &str, origin: &str) -> Result<Self, EndpointsError> {
        let not_an_object = |reason: String| EndpointsError::NotAnObject {
            origin: origin.to_owned(),
            reason,
        };
        let document: Value =
            serde_json::from_str(text).map_err(|e| not_an_object(e.to_string()))?;
        let Value::Object(keys) = document else {
            return Err(not_an_object(format!("it is {document}")));
        };
        let http_api =
            url(&keys, "http_api", HTTP, origin)?.ok_or_else(|| EndpointsError::Missing {
                key: "http_api",
                origin: origin.to_owned(),
            })?;
        Ok(Self {
            http_api,
            token_url: url(&keys, "token_url", HTTP, origin)?,
            sse: url(&keys, "sse", HTTP, origin)?,
            ws_api: url(&keys, "ws_api", WS, origin)?,
        })
    }
}

/// The URL under `key`, `None` when absent or `null`.
fn url(
    keys: &Map<String, Value>,
    key: &'static str,
    (allowed, schemes): (&[&str], &'static str),
    origin: &str,
) -> Result<Option<Url>, EndpointsError> {
    let value = match keys.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let invalid = || EndpointsError::Invalid {
        key,
        origin: origin.to_owned(),
        value: value.to_string(),
        schemes,
    };
    let parsed = value
        .as_str()
        .and_then(|text| Url::parse(text).ok())
        .ok_or_else(invalid)?;
    if !allowed.contains(&parsed.scheme()) || !parsed.has_host() {
        return Err(invalid());
    }
    Ok(Some(parsed))
}

/// Whether `url` is under `base`: the same scheme, host and port (default ports spelt or not),
/// and a path that is `base`'s or below it.
pub fn is_under(url: &Url, base: &Url) -> bool {
    let prefix = base.path().trim_end_matches('/');
    let path = url.path();
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_stacks_file_is_read_and_its_other_keys_are_ignored() {
        let text = r#"{"http_api": "http://127.0.0.1:8080", "token_url": "http://127.0.0.1:8080/_local/tokens",
            "auth_grpc": "http://127.0.0.1:50052", "simulator_grpc": "http://127.0.0.1:50051",
            "ws_api": "ws://127.0.0.1:8081/local", "connections_url": "http://127.0.0.1:8081/local",
            "sse": "http://127.0.0.1:8090", "web": "http://127.0.0.1:8070", "extra": 1}"#;

        let endpoints = Endpoints::parse(text, "e.json").unwrap();

        assert_eq!(endpoints.http_api.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            endpoints.ws_api.unwrap().as_str(),
            "ws://127.0.0.1:8081/local"
        );
        assert_eq!(endpoints.sse.unwrap().as_str(), "http://127.0.0.1:8090/");
        assert!(endpoints.token_url.is_some());
    }

    #[test]
    fn only_http_api_is_required_and_null_counts_as_absent() {
        let endpoints = Endpoints::parse(
            r#"{"http_api": "https://api.example.com/prod", "sse": null}"#,
            "e",
        )
        .unwrap();
        assert_eq!(endpoints.sse, None);
        assert_eq!(endpoints.ws_api, None);
        assert_eq!(endpoints.token_url, None);
    }

    #[test]
    fn a_missing_or_invalid_key_is_named_with_the_file() {
        let missing = Endpoints::parse(r#"{"sse": "http://x"}"#, "/tmp/e.json").unwrap_err();
        assert_eq!(
            missing.to_string(),
            r#"missing key "http_api" in /tmp/e.json"#
        );
        let wrong_scheme = Endpoints::parse(
            r#"{"http_api": "http://x", "ws_api": "http://y/local"}"#,
            "e.json",
        )
        .unwrap_err();
        assert_eq!(
            wrong_scheme.to_string(),
            r#"key "ws_api" in e.json: "http://y/local" is not a ws:// or wss:// URL"#
        );
        let not_text = Endpoints::parse(r#"{"http_api": 8080}"#, "e.json").unwrap_err();
        assert!(not_text.to_string().contains(r#""http_api""#), "{not_text}");
        let not_an_object = Endpoints::parse("[1]", "e.json").unwrap_err();
        assert_eq!(
            not_an_object.to_string(),
            "e.json is not a JSON object: it is [1]"
        );
        let not_json = Endpoints::parse("{", "e.json").unwrap_err();
        assert!(
            not_json
                .to_string()
                .starts_with("e.json is not a JSON object: ")
        );
    }

    #[test]
    fn a_url_is_under_a_base_of_the_same_origin_and_a_path_prefix() {
        let url = |text| Url::parse(text).unwrap();
        let ticket = url("wss://ws.example.com/prod?ticket=t");
        assert!(is_under(&ticket, &url("wss://ws.example.com/prod")));
        assert!(is_under(&ticket, &url("wss://ws.example.com:443/prod/")));
        assert!(is_under(
            &url("http://h:1/v1/sessions/s/stream"),
            &url("http://h:1")
        ));
        assert!(!is_under(&ticket, &url("wss://ws.example.com/production")));
        assert!(!is_under(&ticket, &url("ws://ws.example.com/prod")));
        assert!(!is_under(&ticket, &url("wss://ws.example.com:8443/prod")));
        assert!(!is_under(&ticket, &url("wss://other.example.com/prod")));
    }
}
