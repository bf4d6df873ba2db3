//! Requests to API Gateway HTTP API payload 2.0 events, and Lambda responses back to HTTP, in
//! the shapes API Gateway documents: lower-case header names with repeated values joined by
//! commas, cookies apart, repeated query parameters joined by commas, binary bodies in base64.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::request::Parts;
use serde_json::{Value, json};

use super::routes::Matched;

/// What every event of one request shares.
#[derive(Debug)]
pub(super) struct RequestFacts<'a> {
    pub(super) parts: &'a Parts,
    pub(super) body: &'a [u8],
    pub(super) matched: &'a Matched<'a>,
    pub(super) source: SocketAddr,
    pub(super) request_id: &'a str,
    pub(super) now_ms: i64,
    /// Derived once, shared by the authorizer's and the integration's events.
    derived: Derived,
}

/// The parts of a request both events carry, in API Gateway's shapes.
#[derive(Debug)]
struct Derived {
    headers: serde_json::Map<String, Value>,
    cookies: Vec<String>,
    raw_query: String,
    query: Option<serde_json::Map<String, Value>>,
}

impl<'a> RequestFacts<'a> {
    /// The facts of one request, its headers, cookies and query read once.
    pub(super) fn new(
        parts: &'a Parts,
        body: &'a [u8],
        matched: &'a Matched<'a>,
        source: SocketAddr,
        request_id: &'a str,
        now_ms: i64,
    ) -> Self {
        let (raw_query, query) = query(parts);
        let derived = Derived {
            headers: headers(parts),
            cookies: cookies(parts),
            raw_query,
            query,
        };
        Self {
            parts,
            body,
            matched,
            source,
            request_id,
            now_ms,
            derived,
        }
    }
}

fn headers(parts: &Parts) -> serde_json::Map<String, Value> {
    let mut joined: HashMap<&str, Vec<String>> = HashMap::new();
    for (name, value) in &parts.headers {
        if name == http::header::COOKIE {
            continue;
        }
        // Bytes outside visible ASCII (obs-text) pass on as ISO-8859-1 rather than vanish, so
        // the function sees, and refuses, a header it would not accept (an `Idempotency-Key`
        // with a non-ASCII character), instead of serving the request as if it were absent.
        let value: String = value.as_bytes().iter().map(|&b| char::from(b)).collect();
        joined.entry(name.as_str()).or_default().push(value);
    }
    joined
        .into_iter()
        .map(|(name, values)| (name.to_owned(), Value::String(values.join(","))))
        .collect()
}

fn cookies(parts: &Parts) -> Vec<String> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

fn query(parts: &Parts) -> (String, Option<serde_json::Map<String, Value>>) {
    let raw = parts.uri.query().unwrap_or_default().to_owned();
    let mut joined: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match joined.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => joined.push((name.into_owned(), value.into_owned())),
        }
    }
    let params = (!joined.is_empty()).then(|| {
        joined
            .into_iter()
            .map(|(n, v)| (n, Value::String(v)))
            .collect()
    });
    (raw, params)
}

impl RequestFacts<'_> {
    fn request_context(&self) -> Value {
        let host = self
            .parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let user_agent = self
            .parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let time =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.now_ms) * 1_000_000)
                .ok()
                .and_then(|t| t.format(CLF_TIME).ok())
                .unwrap_or_default();
        json!({
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": self.parts.method.as_str(),
                "path": self.parts.uri.path(),
                "protocol": format!("{:?}", self.parts.version),
                "sourceIp": self.source.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": self.request_id,
            "routeKey": self.matched.route.key(),
            "stage": "$default",
            "time": time,
            "timeEpoch": self.now_ms,
        })
    }

    /// The REQUEST authorizer's event (payload 2.0), identity source `Authorization`.
    pub(super) fn authorizer_event(&self, authorization: &str) -> Value {
        let Derived {
            headers,
            cookies,
            raw_query,
            query,
        } = &self.derived;
        let route_arn = format!(
            "arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/$default/{}{}",
            self.parts.method,
            self.parts.uri.path()
        );
        json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": route_arn,
            "identitySource": [authorization],
            "routeKey": self.matched.route.key(),
            "rawPath": self.parts.uri.path(),
            "rawQueryString": raw_query,
            "cookies": cookies,
            "headers": headers,
            "queryStringParameters": query,
            "requestContext": self.request_context(),
            "pathParameters": self.matched.path_parameters,
        })
    }

    /// The integration's event, with the authorizer's context when the route is secured.
    pub(super) fn request_event(&self, authorizer_context: Option<&Value>) -> Value {
        let Derived {
            headers,
            cookies,
            raw_query,
            query,
        } = &self.derived;
        let mut context = self.request_context();
        if let Some(lambda) = authorizer_context {
            context["authorizer"] = json!({ "lambda": lambda });
        }
        let (body, is_base64) = match std::str::from_utf8(self.body) {
            _ if self.body.is_empty() => (Value::Null, false),
            Ok(text) => (Value::String(text.to_owned()), false),
            Err(_) => (Value::String(BASE64.encode(self.body)), true),
        };
        let mut event = json!({
            "version": "2.0",
            "routeKey": self.matched.route.key(),
            "rawPath": self.parts.uri.path(),
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": is_base64,
        });
        if !cookies.is_empty() {
            event["cookies"] = json!(cookies);
        }
        if let Some(query) = query {
            event["queryStringParameters"] = Value::Object(query.clone());
        }
        if !self.matched.path_parameters.is_empty() {
            event["pathParameters"] = json!(self.matched.path_parameters);
        }
        if !body.is_null() {
            event["body"] = body;
        }
        event
    }
}

/// The account, region and API id the local events name.
const ACCOUNT_ID: &str = "000000000000";
const REGION: &str = "local";
const API_ID: &str = "local";
const CLF_TIME: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
);

/// Why a Lambda response could not be turned back into HTTP (API Gateway answers 500).
#[derive(Debug, thiserror::Error)]
#[error("malformed Lambda response: {0}")]
pub(super) struct MalformedResponse(String);

/// An HTTP response from the Lambda's payload 2.0 response.
pub(super) fn http_response(payload: &Value) -> Result<Response<Body>, MalformedResponse> {
    let bad = |what: &str| MalformedResponse(what.to_owned());
    let status = payload
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| bad("statusCode"))?;
    let mut headers = HeaderMap::new();
    let single = payload.get("headers").and_then(Value::as_object);
    let multi = payload.get("multiValueHeaders").and_then(Value::as_object);
    for (name, value) in single.into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("header name"))?;
        let value = value.as_str().ok_or_else(|| bad("header value"))?;
        headers.insert(
            name,
            HeaderValue::from_str(value).map_err(|_| bad("header value"))?,
        );
    }
    for (name, values) in multi.into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("header name"))?;
        headers.remove(&name);
        for value in values.as_array().into_iter().flatten() {
            let value = value.as_str().ok_or_else(|| bad("header value"))?;
            headers.append(
                name.clone(),
                HeaderValue::from_str(value).map_err(|_| bad("header value"))?,
            );
        }
    }
    for cookie in payload
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cookie = cookie.as_str().ok_or_else(|| bad("cookie"))?;
        headers.append(
            http::header::SET_COOKIE,
            HeaderValue::from_str(cookie).map_err(|_| bad("cookie"))?,
        );
    }
    let body = match payload.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(body)) if payload["isBase64Encoded"] == Value::Bool(true) => {
            BASE64.decode(body).map_err(|_| bad("base64 body"))?
        }
        Some(Value::String(body)) => body.clone().into_bytes(),
        Some(_) => return Err(bad("body")),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}
