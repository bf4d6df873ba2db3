//! `edge`: the CloudFront and AWS WAF edge in front of the HTTP API.

use serde::Deserialize;

use super::{ConfigError, invalid, validate_secret_arn};

/// The edge (CloudFront and AWS WAF) in front of the HTTP API, when there is one: the REST API
/// then answers only requests that carry the edge's secret origin header, so the direct
/// `execute-api` endpoint cannot be used to go around the WAF.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// The Secrets Manager secret whose `SecretString` CloudFront sends as `origin_header`;
    /// unset, no edge (every request is served).
    pub origin_secret_arn: Option<String>,
    /// The header CloudFront adds to every request it forwards to the API.
    pub origin_header: String,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            origin_secret_arn: None,
            origin_header: "x-origin-verify".to_owned(),
        }
    }
}

impl EdgeSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        validate_secret_arn("edge.origin_secret_arn", self.origin_secret_arn.as_deref())?;
        let header = &self.origin_header;
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return invalid(
                "edge.origin_header",
                "must be a lower-case HTTP header name like x-origin-verify",
            );
        }
        Ok(())
    }
}
