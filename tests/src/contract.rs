//! Live traffic held against the checked-in `docs/asyncapi.json`: the SSE and WebSocket clients
//! of the suites ([`crate::sse`], [`crate::ws`]) check every event and frame they receive, and
//! every heartbeat they send, so a payload that drifts from the document fails the test that saw
//! it, naming the message and the schema error.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::asyncapi::{WS_CLIENT_ACTIONS, WS_GATEWAY_ERROR, WS_SERVER_FRAMES};

/// The document's messages, each a compiled validator of its payload.
#[derive(Debug)]
pub struct Contract {
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl Contract {
    /// The validators of every message of `document` (an AsyncAPI 3.0 document whose payloads
    /// are draft-7 schemas referring to its `components`).
    ///
    /// # Panics
    /// A payload schema does not compile.
    pub fn new(document: &Value) -> Self {
        let messages = document["components"]["messages"]
            .as_object()
            .expect("the document has components.messages");
        let validators = messages
            .keys()
            .map(|name| {
                // The whole document is the schema's root, so its `$ref`s resolve; the root's
                // `$ref` (draft 7 ignores its siblings) selects the message's payload.
                let mut root = document.clone();
                root["$ref"] = Value::from(format!("#/components/messages/{name}/payload"));
                let validator = jsonschema::draft7::new(&root)
                    .unwrap_or_else(|e| panic!("message {name}: the payload schema: {e}"));
                (name.clone(), validator)
            })
            .collect();
        Self { validators }
    }

    /// Checks `payload` against message `name`.
    ///
    /// # Errors
    /// No such message, or the payload does not match: the message's name, where in the payload
    /// and what was wrong.
    pub fn check(&self, name: &str, payload: &Value) -> Result<(), String> {
        let validator = self
            .validators
            .get(name)
            .ok_or_else(|| format!("docs/asyncapi.json has no message {name:?}"))?;
        let problems: Vec<String> = validator
            .iter_errors(payload)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "message {name:?} does not match docs/asyncapi.json: {}; payload: {payload:.500}",
                problems.join("; ")
            ))
        }
    }

    /// Checks an SSE event: `data` against the message named by its `event:` type.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn check_sse(&self, event: &str, data: &Value) -> Result<(), String> {
        self.check(event, data)
    }

    /// Checks a WebSocket frame the server sent (JSON text): by its `type`, or API Gateway's
    /// error frame; each event of an `events` frame against its SSE message first, so the error
    /// names the event rather than the envelope's `oneOf`.
    ///
    /// # Errors
    /// Not JSON, no message of the document for it, or as [`Self::check`].
    pub fn check_ws_received(&self, text: &str) -> Result<(), String> {
        let frame: Value = serde_json::from_str(text)
            .map_err(|e| format!("a WebSocket frame is not JSON ({e}): {text:.500}"))?;
        let name = match frame.get("type").and_then(Value::as_str) {
            Some(kind) if WS_SERVER_FRAMES.contains(&kind) => kind,
            Some(kind) => {
                return Err(format!(
                    "no WebSocket message has type {kind:?}: {text:.500}"
                ));
            }
            None if frame.get("message").is_some() => WS_GATEWAY_ERROR,
            None => return Err(format!("a WebSocket frame without a type: {text:.500}")),
        };
        if name == "events" {
            for (i, event) in frame["events"].as_array().into_iter().flatten().enumerate() {
                let kind = event["event"].as_str().unwrap_or_default();
                self.check(kind, &event["data"])
                    .map_err(|e| format!("events[{i}]: {e}"))?;
            }
        }
        self.check(name, &frame)
    }

    /// Checks a WebSocket frame a client sends (JSON), by its `action`.
    ///
    /// # Errors
    /// No known `action`, or as [`Self::check`].
    pub fn check_ws_sent(&self, frame: &Value) -> Result<(), String> {
        match frame.get("action").and_then(Value::as_str) {
            Some(action) if WS_CLIENT_ACTIONS.contains(&action) => self.check(action, frame),
            _ => Err(format!(
                "no WebSocket action matches the frame {frame:.500}"
            )),
        }
    }
}

/// The contract of the checked-in `docs/asyncapi.json`, loaded once per process.
///
/// # Panics
/// The file is missing or not JSON.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = crate::moto::repo_root().join("docs/asyncapi.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Contract::new(&serde_json::from_str(&text).expect("docs/asyncapi.json is JSON"))
    })
}

/// Panics unless the SSE event matches the document.
pub fn assert_sse(event: &str, data: &Value) {
    if let Err(e) = contract().check_sse(event, data) {
        panic!("SSE event {event:?}: {e}");
    }
}

/// Panics unless the WebSocket frame received matches the document.
pub fn assert_ws_received(text: &str) {
    if let Err(e) = contract().check_ws_received(text) {
        panic!("WebSocket frame received: {e}");
    }
}

/// Panics unless the WebSocket frame to send matches the document.
pub fn assert_ws_sent(frame: &Value) {
    if let Err(e) = contract().check_ws_sent(frame) {
        panic!("WebSocket frame to send: {e}");
    }
}
