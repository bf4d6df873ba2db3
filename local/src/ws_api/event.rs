//! The WebSocket API's events in the shapes API Gateway sends: the `$connect` REQUEST
//! authorizer's event, and the `$connect`, message and `$disconnect` events of a route, all with
//! the connection's `requestContext` (and, once authorized, the authorizer's context in it).

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE};
use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::STAGE;

/// The account, region, API id and stage the local events name (as in the HTTP emulator).
const ACCOUNT_ID: &str = "000000000000";
const REGION: &str = "local";
pub(super) const API_ID: &str = "local-ws";
const CLF_TIME: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
);

/// A fresh connection id like API Gateway's: 16 base64 characters ending in `=` (URL-safe
/// alphabet, so the id needs no escaping in an `@connections` path).
pub(super) fn connection_id() -> String {
    URL_SAFE.encode(rand::random::<[u8; 11]>())
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A message's body as API Gateway hands it on: text as is, binary in base64.
#[derive(Debug, Clone, Copy)]
pub(super) enum MessageBody<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What every event of one connection shares, taken from its handshake.
#[derive(Debug, Clone)]
pub(super) struct ConnectionFacts {
    pub(super) connection_id: String,
    pub(super) connected_at_ms: i64,
    pub(super) source: SocketAddr,
    pub(super) user_agent: Option<String>,
    pub(super) domain: String,
    /// Header names as the client spelled them are lost in `http`; API Gateway passes them on
    /// in canonical case (`Sec-WebSocket-Key`), which is what the handlers see.
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl ConnectionFacts {
    pub(super) fn new(
        connection_id: String,
        source: SocketAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Self {
        let text = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            connection_id,
            connected_at_ms: now_ms(),
            source,
            user_agent: text(http::header::USER_AGENT),
            domain: text(http::header::HOST).unwrap_or_else(|| "localhost".to_owned()),
            headers: headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        canonical_case(name.as_str()),
                        value.to_str().ok()?.to_owned(),
                    ))
                })
                .collect(),
            query: form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// The query parameter's last value, as API Gateway's single-value map has it.
    pub(super) fn query_parameter(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `headers` and `multiValueHeaders`.
    fn headers(&self) -> (Value, Value) {
        pairs(&self.headers)
    }

    /// `queryStringParameters` and `multiValueQueryStringParameters`.
    fn query(&self) -> (Value, Value) {
        pairs(&self.query)
    }

    fn request_context(&self, route_key: &str, event_type: &str, request_id: &str) -> Value {
        let now = now_ms();
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
            .ok()
            .and_then(|t| t.format(CLF_TIME).ok())
            .unwrap_or_default();
        let mut identity = json!({ "sourceIp": self.source.ip().to_string() });
        if let Some(agent) = &self.user_agent {
            identity["userAgent"] = json!(agent);
        }
        json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": time,
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": self.connected_at_ms,
            "requestTimeEpoch": now,
            "identity": identity,
            "requestId": request_id,
            "domainName": self.domain,
            "connectionId": self.connection_id,
            "apiId": API_ID,
        })
    }

    /// The `$connect` REQUEST authorizer's event (identity source
    /// `route.request.querystring.ticket`).
    pub(super) fn authorizer_event(&self, request_id: &str) -> Value {
        let (headers, multi_headers) = self.headers();
        let (query, multi_query) = self.query();
        json!({
            "type": "REQUEST",
            "methodArn": format!("arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{STAGE}/$connect"),
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "stageVariables": {},
            "requestContext": self.request_context("$connect", "CONNECT", request_id),
        })
    }

    /// The `$connect` route's event: the handshake's headers and query, and the authorizer's
    /// context.
    pub(super) fn connect_event(&self, authorizer: &Value, request_id: &str) -> Value {
        let (headers, multi_headers) = self.headers();
        let (query, multi_query) = self.query();
        let mut context = self.request_context("$connect", "CONNECT", request_id);
        context["authorizer"] = authorizer.clone();
        json!({
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "requestContext": context,
            "isBase64Encoded": false,
        })
    }

    /// A message's event on `route_key` (no headers: a message has none).
    pub(super) fn message_event(
        &self,
        route_key: &str,
        body: MessageBody<'_>,
        authorizer: &Value,
        request_id: &str,
    ) -> Value {
        let mut context = self.request_context(route_key, "MESSAGE", request_id);
        context["messageId"] = json!(ulid::Ulid::new().to_string());
        context["authorizer"] = authorizer.clone();
        let (body, is_base64) = match body {
            MessageBody::Text(text) => (text.to_owned(), false),
            MessageBody::Binary(bytes) => (BASE64.encode(bytes), true),
        };
        json!({
            "requestContext": context,
            "body": body,
            "isBase64Encoded": is_base64,
        })
    }

    /// The `$disconnect` route's event, with the close's status code and reason.
    pub(super) fn disconnect_event(
        &self,
        status: u16,
        reason: &str,
        authorizer: &Value,
        request_id: &str,
    ) -> Value {
        let mut context = self.request_context("$disconnect", "DISCONNECT", request_id);
        context["disconnectStatusCode"] = json!(status);
        context["disconnectReason"] = json!(reason);
        context["authorizer"] = authorizer.clone();
        let host = [("Host".to_owned(), self.domain.clone())];
        let (headers, multi_headers) = pairs(&host);
        json!({
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "requestContext": context,
            "isBase64Encoded": false,
        })
    }
}

/// A single-value map (the last value wins, as in API Gateway's v1 payloads) and a
/// multi-value map of `pairs`.
fn pairs(pairs: &[(String, String)]) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in pairs {
        single.insert(name.clone(), json!(value));
        match multi.get_mut(name).and_then(Value::as_array_mut) {
            Some(values) => values.push(json!(value)),
            None => {
                multi.insert(name.clone(), json!([value]));
            }
        }
    }
    (Value::Object(single), Value::Object(multi))
}

/// `sec-websocket-key` → `Sec-WebSocket-Key`.
fn canonical_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            if part == "websocket" {
                return "WebSocket".to_owned();
            }
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::apigw::{
        ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
    };

    use super::*;

    fn facts() -> ConnectionFacts {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8081".parse().unwrap());
        headers.insert("sec-websocket-key", "abc".parse().unwrap());
        ConnectionFacts::new(
            connection_id(),
            SocketAddr::from(([127, 0, 0, 1], 4000)),
            &headers,
            Some("ticket=a&ticket=b&x=1"),
        )
    }

    #[test]
    fn connection_ids_look_like_api_gateway_ones() {
        let id = connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert_ne!(id, connection_id());
    }

    #[test]
    fn every_event_decodes_into_the_lambda_event_types() {
        let facts = facts();
        let authorizer = json!({"session_id": "ses_1", "user": "alice", "principalId": "alice"});

        let auth: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(facts.authorizer_event("r1")).unwrap();
        let connect: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(facts.connect_event(&authorizer, "r2")).unwrap();
        let message: ApiGatewayWebsocketProxyRequest = serde_json::from_value(facts.message_event(
            "heartbeat",
            MessageBody::Binary(b"\x00"),
            &authorizer,
            "r3",
        ))
        .unwrap();
        let gone: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(facts.disconnect_event(1001, "Going away", &authorizer, "r4"))
                .unwrap();

        assert_eq!(auth.query_string_parameters.first("ticket"), Some("b"));
        assert_eq!(auth.headers.get("Sec-WebSocket-Key").unwrap(), "abc");
        assert_eq!(connect.request_context.authorizer.fields["user"], "alice");
        assert_eq!(
            message.request_context.route_key.as_deref(),
            Some("heartbeat")
        );
        assert_eq!(message.body.as_deref(), Some("AA=="));
        assert!(message.is_base64_encoded);
        assert_eq!(gone.request_context.disconnect_status_code, Some(1001));
        assert_eq!(facts.query_parameter("ticket"), Some("b"));
    }
}
