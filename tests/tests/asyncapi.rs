//! `docs/asyncapi.json` is the document the code generates (`session_tests::asyncapi`), it is
//! AsyncAPI 3.0 whose references all resolve, it has a message per SSE event type and WebSocket
//! frame, and the contract the suites hold live traffic to catches a wrong frame.
//!
//! Regenerate the file after changing a payload type:
//! `UPDATE_ASYNCAPI=1 cargo test -p session-tests --test asyncapi`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use session_functions::websocket::{ErrorCode, ErrorFrame};
use session_streamer::wire;
use session_tests::asyncapi::{
    self, SSE_CHANNEL, WS_CHANNEL, WS_CLIENT_ACTIONS, WS_GATEWAY_ERROR, WS_SERVER_FRAMES,
};
use session_tests::contract::Contract;

const REGENERATE: &str = "UPDATE_ASYNCAPI=1 cargo test -p session-tests --test asyncapi";

/// The value `reference` (`#/a/b`) points to in `document`.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` of `value`, depth first.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn docs_asyncapi_json_is_the_document_the_code_generates() {
    session_tests::golden::assert_generated(
        "docs/asyncapi.json",
        &asyncapi::json(),
        "UPDATE_ASYNCAPI",
        REGENERATE,
    );
}

#[test]
fn the_document_is_asyncapi_3_and_every_reference_resolves() {
    let doc = asyncapi::document();
    let mut found = Vec::new();
    references(&doc, &mut found);

    assert_eq!(doc["asyncapi"], "3.0.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(found.len() > 20, "{} references", found.len());
    for target in &found {
        assert!(resolve(&doc, target).is_some(), "{target} does not resolve");
    }
    for (name, operation) in doc["operations"].as_object().unwrap() {
        let channel = operation["channel"]["$ref"].as_str().unwrap();
        assert!(
            channel.starts_with("#/channels/"),
            "{name}: channel {channel}"
        );
        let replies = operation["reply"]["messages"]
            .as_array()
            .into_iter()
            .flatten();
        for message in operation["messages"]
            .as_array()
            .unwrap()
            .iter()
            .chain(replies)
        {
            let message = message["$ref"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{channel}/messages/")),
                "{name}: {message} is not a message of its channel {channel}"
            );
        }
    }
    for (name, channel) in doc["channels"].as_object().unwrap() {
        for (key, message) in channel["messages"].as_object().unwrap() {
            assert_eq!(
                message["$ref"],
                format!("#/components/messages/{key}"),
                "{name}: {key}"
            );
        }
    }
}

#[test]
fn every_sse_event_type_and_websocket_frame_has_a_message_named_after_it() {
    let doc = asyncapi::document();
    let sse: BTreeSet<String> = wire::Kind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    let ws: BTreeSet<String> = WS_SERVER_FRAMES
        .iter()
        .chain(&WS_CLIENT_ACTIONS)
        .chain(&[WS_GATEWAY_ERROR])
        .map(|&name| name.to_owned())
        .collect();

    assert_eq!(keys(&doc["channels"][SSE_CHANNEL]["messages"]), sse);
    assert_eq!(keys(&doc["channels"][WS_CHANNEL]["messages"]), ws);
    for (key, message) in doc["components"]["messages"].as_object().unwrap() {
        assert_eq!(message["name"], key.as_str());
        assert!(message["payload"].is_object(), "{key} has no payload");
    }
}

#[test]
fn the_error_message_lists_every_code_of_the_websocket_outcome_table() {
    let doc = asyncapi::document();
    let code = resolve(&doc, "#/components/schemas/ErrorCode").unwrap();
    let listed: BTreeSet<String> = code["oneOf"]
        .as_array()
        .map(|variants| variants.iter().map(|v| v["const"].clone()).collect())
        .or_else(|| code["enum"].as_array().cloned())
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let table: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();

    let mut used = Vec::new();
    references(
        &doc["components"]["schemas"]["ErrorFrame"]["properties"]["code"],
        &mut used,
    );

    assert_eq!(listed, table);
    assert_eq!(used, ["#/components/schemas/ErrorCode"]);
}

#[test]
fn what_the_streamer_and_the_handler_encode_matches_the_document() {
    let contract = Contract::new(&asyncapi::document());
    let sse = [
        wire::reset("epoch_changed", None),
        wire::reconnect("draining", 500),
        wire::stream_status("degraded", "simulator unreachable"),
    ];

    for frame in sse {
        let data: Value = serde_json::from_slice(&frame.data).unwrap();
        contract.check_sse(frame.kind.as_str(), &data).unwrap();
    }
    for code in ErrorCode::ALL {
        let frame = serde_json::to_string(&ErrorFrame::new(code, "why")).unwrap();
        contract.check_ws_received(&frame).unwrap();
    }
    contract
        .check_ws_received(
            r#"{"message":"Internal server error","connectionId":"c","requestId":"r"}"#,
        )
        .unwrap();
    contract
        .check_ws_sent(
            &json!({"action": "heartbeat", "seq": 1, "client_time": 5, "last_event_id": "3-7"}),
        )
        .unwrap();
}

#[test]
fn a_wrong_frame_is_caught_naming_the_message_and_the_schema_error() {
    let contract = Contract::new(&asyncapi::document());
    let delta = json!({"epoch": 1, "seq": 2, "emit_ns": 3, "symbol": "BTC-USD", "bids": [["1.00"]], "asks": []});
    let events = json!({"type": "events", "events": [
        {"id": "1-2", "event": "trade", "data": {"epoch": 1, "seq": 2, "emit_ns": 3}}
    ]});
    let cases = [
        (
            "a delta level without its quantity",
            contract.check_sse("delta", &delta),
            ["\"delta\"", "/bids/0"],
        ),
        (
            "an SSE event type the document does not know",
            contract.check_sse("quote", &json!({})),
            ["\"quote\"", "no message"],
        ),
        (
            "a trade without its fields in an events frame",
            contract.check_ws_received(&events.to_string()),
            ["events[0]", "\"symbol\" is a required property"],
        ),
        (
            "an error frame with a code outside the table",
            contract.check_ws_received(r#"{"type":"error","code":"oops","message":"m"}"#),
            ["\"error\"", "/code"],
        ),
        (
            "a frame type the document does not know",
            contract.check_ws_received(r#"{"type":"welcome"}"#),
            ["\"welcome\"", "no WebSocket message"],
        ),
        (
            "a reset with a field the types do not declare",
            contract.check_sse("reset", &json!({"reason": "initial", "hint": 1})),
            ["\"reset\"", "hint"],
        ),
        (
            "a heartbeat with a counter of zero",
            contract.check_ws_sent(&json!({"action": "heartbeat", "seq": 0, "client_time": 5})),
            ["\"heartbeat\"", "/seq"],
        ),
        (
            "a heartbeat with a field the server refuses",
            contract.check_ws_sent(
                &json!({"action": "heartbeat", "seq": 1, "client_time": 5, "rtt": 3}),
            ),
            ["\"heartbeat\"", "rtt"],
        ),
    ];

    for (case, result, expected) in cases {
        let error = result.expect_err(case);
        for part in expected {
            assert!(error.contains(part), "{case}: {part:?} not in {error}");
        }
    }
}

#[test]
#[should_panic(expected = "SSE event \"delta\": message \"delta\" does not match")]
fn the_suites_sse_check_fails_the_test_on_a_wrong_event() {
    session_tests::contract::assert_sse("delta", &json!({"symbol": 7}));
}
