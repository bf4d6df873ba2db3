//! The AsyncAPI 3.0 document of the event contracts (`docs/asyncapi.json`): the SSE stream and
//! the WebSocket API, generated here from the Rust types of what travels (the streamer's
//! `wire` payloads, the WebSocket functions' frames, the core's `Heartbeat`), their JSON Schemas
//! derived with `schemars`.
//!
//! One message per SSE `event:` type (named after it) and per WebSocket frame `type` or client
//! `action`; the WebSocket `events` frame carries SSE events, so its items refer to the SSE
//! messages' payloads. Schemas are JSON Schema draft 7, AsyncAPI's default schema format.
//!
//! Regenerate the file: `UPDATE_ASYNCAPI=1 cargo test -p session-tests --test asyncapi`.

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use session_core::domain::{EventId, Heartbeat};
use session_functions::websocket::{ErrorFrame, HeartbeatAckFrame};
use session_streamer::wire::{
    self, DeltaData, ReconnectData, ResetData, SnapshotData, StatusData, StreamStatusData,
    TradeData,
};

/// Where schemas live in the document (`$ref`s point there).
const SCHEMAS: &str = "/components/schemas";

/// The SSE stream's channel.
pub const SSE_CHANNEL: &str = "sseStream";
/// The WebSocket API's channel.
pub const WS_CHANNEL: &str = "webSocket";

/// Messages the server sends on the WebSocket, by frame `type`.
pub const WS_SERVER_FRAMES: [&str; 3] = ["events", "heartbeat_ack", "error"];
/// API Gateway's own frame when the integration failed (it has no `type`).
pub const WS_GATEWAY_ERROR: &str = "gateway_error";
/// Messages clients send on the WebSocket, by `action`.
pub const WS_CLIENT_ACTIONS: [&str; 1] = ["heartbeat"];

/// The document as JSON, pretty-printed, ending with a newline.
pub fn json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// Schemas of the server's payloads (as they serialise) and of clients' (as they deserialise).
struct Schemas {
    sent: SchemaGenerator,
    received: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        let settings = SchemaSettings::draft07().with(|s| s.definitions_path = SCHEMAS.into());
        Self {
            sent: settings.clone().for_serialize().into_generator(),
            received: settings.for_deserialize().into_generator(),
        }
    }

    fn sent<T: JsonSchema>(&mut self) -> Value {
        self.sent.subschema_for::<T>().to_value()
    }

    fn received<T: JsonSchema>(&mut self) -> Value {
        self.received.subschema_for::<T>().to_value()
    }

    fn definitions(mut self) -> Map<String, Value> {
        let mut all = self.sent.take_definitions(true);
        all.extend(self.received.take_definitions(true));
        all
    }
}

/// A `$ref` to `path` in this document.
fn reference(path: &str) -> Value {
    json!({ "$ref": format!("#{path}") })
}

/// The payload schema of each SSE event type, by name.
fn sse_payloads(schemas: &mut Schemas) -> Vec<(&'static str, &'static str, Value)> {
    wire::Kind::ALL
        .iter()
        .map(|kind| {
            let (summary, payload) = match kind {
                wire::Kind::Snapshot => (
                    "Every book of the stream as of the event's id (first state, after a reset, \
                     or replacing a slow client's backlog).",
                    schemas.sent::<SnapshotData>(),
                ),
                wire::Kind::Delta => (
                    "Changed levels of one symbol.",
                    schemas.sent::<DeltaData>(),
                ),
                wire::Kind::Trade => ("A trade.", schemas.sent::<TradeData>()),
                wire::Kind::Status => (
                    "A lifecycle change of the simulator (sequenced), or of the stream's \
                     upstream (out of band, `stream: true`).",
                    json!({ "oneOf": [schemas.sent::<StatusData>(), schemas.sent::<StreamStatusData>()] }),
                ),
                wire::Kind::Reset => (
                    "The client's state is void (out of band); a snapshot follows.",
                    schemas.sent::<ResetData>(),
                ),
                wire::Kind::Reconnect => (
                    "Reconnect after `retry_ms`, resuming from the last event id (out of band).",
                    schemas.sent::<ReconnectData>(),
                ),
            };
            (kind.as_str(), summary, payload)
        })
        .collect()
}

/// A message of `name` with `payload`.
fn message(name: &str, title: &str, summary: &str, payload: &Value) -> Value {
    json!({
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": payload,
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let mut messages = Map::new();

    let sse = sse_payloads(&mut schemas);
    for (name, summary, payload) in &sse {
        messages.insert(
            (*name).to_owned(),
            message(name, &format!("SSE `{name}` event"), summary, payload),
        );
    }

    // `events` items: an SSE event as an object, its `data` the SSE message's payload.
    let items: Vec<Value> = sse
        .iter()
        .map(|(name, _, _)| {
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["event", "data"],
                "properties": {
                    "id": {
                        "description": "The event's id, as SSE's `id:` (absent for out-of-band events).",
                        "type": "string",
                        "pattern": EventId::PATTERN,
                    },
                    "event": { "const": name },
                    "data": reference(&format!("/components/messages/{name}/payload")),
                },
            })
        })
        .collect();
    messages.insert(
        "events".to_owned(),
        message(
            "events",
            "WebSocket `events` frame",
            "Market events in order, several to a frame; each is an SSE event as an object. A \
             snapshot too large for one frame is split by books into consecutive `snapshot` \
             events with `part` and `parts`.",
            &json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["type", "events"],
                "properties": {
                    "type": { "const": "events" },
                    "events": { "type": "array", "minItems": 1, "items": { "oneOf": items } },
                },
            }),
        ),
    );
    messages.insert(
        "heartbeat_ack".to_owned(),
        message(
            "heartbeat_ack",
            "WebSocket `heartbeat_ack` frame",
            "The answer to a heartbeat: what the server measured, reconnect advice, and where \
             to resume from.",
            &schemas.sent::<HeartbeatAckFrame>(),
        ),
    );
    messages.insert(
        "error".to_owned(),
        message(
            "error",
            "WebSocket `error` frame",
            "An error about one message; the connection stays open. `code` is stable.",
            &schemas.sent::<ErrorFrame>(),
        ),
    );
    messages.insert(
        WS_GATEWAY_ERROR.to_owned(),
        message(
            WS_GATEWAY_ERROR,
            "API Gateway's error frame",
            "API Gateway's own answer when the integration failed or timed out (not the \
             service's: it has no `type`).",
            &json!({
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {
                        "type": "string",
                        "examples": ["Internal server error", "Endpoint request timed out"],
                    },
                    "connectionId": { "type": "string" },
                    "requestId": { "type": "string" },
                },
            }),
        ),
    );
    messages.insert(
        "heartbeat".to_owned(),
        message(
            "heartbeat",
            "WebSocket `heartbeat` action",
            "What a client sends every few seconds: its counter, clocks and position.",
            &schemas.received::<Heartbeat>(),
        ),
    );

    let mut definitions = schemas.definitions();
    // Exact: a field the types do not declare is a change of the contract, not noise.
    for schema in definitions.values_mut() {
        if let Some(object) = schema.as_object_mut()
            && object.contains_key("properties")
        {
            object
                .entry("additionalProperties")
                .or_insert(Value::Bool(false));
        }
    }
    // The route is chosen by `action`, which the handler removes before parsing the rest.
    if let Some(Value::Object(heartbeat)) = definitions.get_mut("Heartbeat") {
        if let Some(Value::Object(properties)) = heartbeat.get_mut("properties") {
            properties.insert(
                "action".to_owned(),
                json!({ "description": "The route: always `heartbeat`.", "const": "heartbeat" }),
            );
        }
        if let Some(Value::Array(required)) = heartbeat.get_mut("required") {
            required.insert(0, json!("action"));
        }
    }

    let refs = |channel: &str, names: &[&str]| -> Value {
        names
            .iter()
            .map(|name| reference(&format!("/channels/{channel}/messages/{name}")))
            .collect()
    };
    let channel_messages = |names: &[&str]| -> Value {
        names
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    reference(&format!("/components/messages/{name}")),
                )
            })
            .collect::<Map<_, _>>()
            .into()
    };
    let sse_names: Vec<&str> = sse.iter().map(|(name, _, _)| *name).collect();
    let ws_sent: Vec<&str> = WS_SERVER_FRAMES
        .iter()
        .copied()
        .chain([WS_GATEWAY_ERROR])
        .collect();
    let ws_all: Vec<&str> = ws_sent.iter().copied().chain(WS_CLIENT_ACTIONS).collect();

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Session service: market data streams",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The SSE stream the streamer serves and the WebSocket API (API Gateway, \
                the WebSocket functions and the streamer's push). Generated from the Rust types \
                (tests/src/asyncapi.rs); the end-to-end suites validate every event and frame \
                they receive, and every heartbeat they send, against it.",
        },
        "defaultContentType": "application/json",
        "channels": {
            SSE_CHANNEL: {
                "address": "/v1/sessions/{session_id}/stream",
                "title": "SSE stream of a session",
                "description": "`GET` with `Accept: text/event-stream`, authorised by `?ticket=` (a single-use \
                    `sse` ticket) or a bearer token; resumes after `Last-Event-ID` or \
                    `?last_event_id=`. Each message is one SSE event: `event:` is the message's \
                    name, `data:` its payload (one line of JSON), `id:` (`<epoch>-<sequence>`) \
                    present on sequenced events (snapshot, delta, trade, the simulator's status) \
                    and absent on out-of-band ones. `: hb` comments keep the connection alive. \
                    With `Accept-Encoding: gzip` the response is `Content-Encoding: gzip`, \
                    decodable as it arrives (`streamer.sse_compression`).",
                "parameters": {
                    "session_id": { "description": "The session (`ses_…`)." },
                },
                "messages": channel_messages(&sse_names),
            },
            WS_CHANNEL: {
                "address": "/",
                "title": "WebSocket API",
                "description": "The WebSocket API's stage URL, opened with a `ws` ticket's URL \
                    (`?ticket=`, and `last_event_id` on a reconnect). Routes are chosen by the \
                    message's `action`; answers to a message travel back on the connection. A \
                    connection whose ticket granted `\"compression\": \"deflate\"` gets every \
                    `events` message as a binary frame holding the raw deflate (RFC 1951) of the \
                    JSON described here; answers to its messages stay JSON text.",
                "messages": channel_messages(&ws_all),
                "bindings": {
                    "ws": {
                        "bindingVersion": "0.1.0",
                        "query": {
                            "type": "object",
                            "required": ["ticket"],
                            "properties": {
                                "ticket": { "type": "string", "description": "A single-use `ws` ticket." },
                                "last_event_id": { "type": "string", "pattern": EventId::PATTERN },
                            },
                        },
                    },
                },
            },
        },
        "operations": {
            "sendStreamEvents": {
                "action": "send",
                "title": "Stream a session's market data over SSE",
                "channel": reference(&format!("/channels/{SSE_CHANNEL}")),
                "messages": refs(SSE_CHANNEL, &sse_names),
            },
            "sendWebSocketFrames": {
                "action": "send",
                "title": "Push events and answers over the WebSocket",
                "channel": reference(&format!("/channels/{WS_CHANNEL}")),
                "messages": refs(WS_CHANNEL, &ws_sent),
            },
            "receiveHeartbeat": {
                "action": "receive",
                "title": "Receive a client's heartbeat",
                "channel": reference(&format!("/channels/{WS_CHANNEL}")),
                "messages": refs(WS_CHANNEL, &WS_CLIENT_ACTIONS),
                "reply": {
                    "channel": reference(&format!("/channels/{WS_CHANNEL}")),
                    "messages": refs(WS_CHANNEL, &["heartbeat_ack", "error"]),
                },
            },
        },
        "components": {
            "messages": messages,
            "schemas": definitions,
        },
    })
}
