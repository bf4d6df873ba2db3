//! Reading requests: JSON bodies, path ids and query parameters, each failure a problem that
//! names what was wrong. Written over axum's raw extractors because their rejections are plain
//! text without the field at fault.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use session_core::domain::ValidationError;

use super::problem::ApiError;

/// The largest body accepted: session metadata is at most 4 KiB, everything else is smaller.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The body bytes, or the problem with them.
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::MalformedJson("the body could not be read".to_owned())
        }
    })
}

/// Parses a JSON body; an empty body reads as `{}` where `T` allows it.
pub(super) fn json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
        });
    if !is_json && body != b"{}" {
        return Err(ApiError::UnsupportedMediaType);
    }
    // serde reads a struct from an array too (`[null, null]` as its fields in order); every
    // request body of the API is an object, as the document says.
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(ValidationError::new("body", "must be a JSON object, not an array").into());
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." {
            ApiError::from(ValidationError::new(
                path,
                strip_position(&inner.to_string()),
            ))
        } else if inner.is_data() {
            // Unknown fields surface at the root; serde names them only in the message.
            let message = strip_position(&inner.to_string());
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map_or("body", |(name, _)| name)
                .to_owned();
            ApiError::from(ValidationError::new(field, message))
        } else {
            ApiError::MalformedJson(inner.to_string())
        }
    })
}

/// serde_json appends " at line 1 column 17"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters, refusing any not in `allowed` and any given twice.
pub(super) fn query(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&key.as_ref()) {
            return Err(ValidationError::new(
                key,
                format!(
                    "unknown query parameter; expected one of: {}",
                    allowed.join(", ")
                ),
            )
            .into());
        }
        if params.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(ValidationError::new(key, "given more than once").into());
        }
    }
    Ok(params)
}

/// An optional unsigned query parameter: `5`, or `5.0` (JSON Schema counts a number whose
/// fraction is zero as an integer, so the document allows it).
pub(super) fn query_u32(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<u32>, ApiError> {
    let whole = |v: &str| {
        v.parse::<u32>().ok().or_else(|| {
            let (integer, fraction) = v.split_once('.')?;
            if fraction.is_empty() || !fraction.bytes().all(|b| b == b'0') {
                return None;
            }
            integer.parse::<u32>().ok()
        })
    };
    params
        .get(name)
        .map(|v| {
            whole(v).ok_or_else(|| {
                ApiError::from(ValidationError::new(
                    name,
                    format!("{v:?} is not a whole number"),
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        symbols: Vec<String>,
        rate: Option<u32>,
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    fn field_of(result: Result<Body, ApiError>) -> String {
        result.unwrap_err().problem().field.unwrap_or_default()
    }

    #[test]
    fn body_errors_name_the_field() {
        let h = json_headers();
        assert_eq!(field_of(json(&h, br#"{"symbols":["A",3]}"#)), "symbols[1]");
        assert_eq!(field_of(json(&h, br#"{"symbols":[],"rate":-1}"#)), "rate");
        let unknown = json::<Body>(&h, br#"{"symbols":[],"colour":1}"#).unwrap_err();
        assert!(unknown.problem().detail.contains("colour"), "{unknown}");
    }

    #[test]
    fn a_body_that_is_an_array_is_refused_though_serde_would_read_it() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Optional {
            name: Option<String>,
        }
        let problem = json::<Optional>(&json_headers(), b" [null]")
            .unwrap_err()
            .problem();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.field.as_deref(), Some("body"));
    }

    #[test]
    fn malformed_and_non_json_bodies_are_refused() {
        let problem = json::<Body>(&json_headers(), b"{\"symbols\":")
            .unwrap_err()
            .problem();
        assert_eq!(problem.status, 400);
        assert!(problem.type_.ends_with("malformed-json"));
        let problem = json::<Body>(&HeaderMap::new(), b"symbols=A")
            .unwrap_err()
            .problem();
        assert_eq!(problem.status, 415);
    }

    #[test]
    fn query_parameters_are_decoded_and_checked() {
        let params = query(Some("limit=5&cursor=a%2Bb+c"), &["limit", "cursor"]).unwrap();
        assert_eq!(params["cursor"], "a+b c");
        assert_eq!(query_u32(&params, "limit").unwrap(), Some(5));
        for (text, whole) in [
            ("5.0", Some(5)),
            ("5.00", Some(5)),
            ("5.5", None),
            ("5.", None),
        ] {
            let params = query(Some(&format!("limit={text}")), &["limit"]).unwrap();
            assert_eq!(query_u32(&params, "limit").ok().flatten(), whole, "{text}");
        }
        let err = query(Some("limt=5"), &["limit"]).unwrap_err().problem();
        assert_eq!(err.field.as_deref(), Some("limt"));
        assert!(query(Some("limit=1&limit=2"), &["limit"]).is_err());
    }
}
