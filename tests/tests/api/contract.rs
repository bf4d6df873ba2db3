//! The REST contract is exact: what docs/openapi.json allows, the server accepts, and what it
//! forbids, the server refuses (what `scripts/api-fuzz.sh` checks at random, here case by case);
//! a deleted resource reads `404` `deleted`; an undeclared method on a documented path is `405`
//! with `Allow`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_core::domain::{EventId, SessionId, SessionName, SimulatorId, Symbol};
use session_tests::test_api::TestApi;

fn document() -> Value {
    serde_json::from_str(session_functions::http::openapi::json()).expect("the document is JSON")
}

/// Whether `value` is valid against `schema` of the document (its `$ref`s resolved in it).
fn allows(document: &Value, schema: &Value, value: &Value) -> bool {
    let mut root = document.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!("#/$defs/subject");
    root["$defs"] = json!({ "subject": schema });
    jsonschema::options()
        .should_validate_formats(false)
        .build(&root)
        .expect("the document's schemas compile")
        .is_valid(value)
}

/// Texts at the edges of every documented pattern.
const SAMPLES: &[&str] = &[
    "",
    " ",
    "a",
    "A",
    "0",
    "BTC-USD",
    "BTC-",
    "-USD",
    "BTC--USD",
    "BTC-USD-EUR",
    "ABCDEFGHIJKL",
    "ABCDEFGHIJKLM",
    "ABCDEFGHIJKL-ABCDEFGHIJKL",
    "btc-usd",
    "BTC.USD",
    "name",
    " name",
    "name ",
    "na me",
    "n\u{0}me",
    "n\u{1f}me",
    "n\u{7f}me",
    "n\u{85}me",
    "n\u{9f}me",
    "\u{a0}name",
    "name\u{3000}",
    "\u{feff}name",
    "na\u{a0}me",
    "日本語の名前",
    "17-4031",
    "0-0",
    "9999999999999999999-1",
    "99999999999999999999-1",
    "1-2-3",
    "ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA",
    "ses_81JG7Q3ZKXW4T9M2R8V6C5N1HA",
    "ses_01jg7q3zkxw4t9m2r8v6c5n1ha",
    "ses_01JG7Q3ZKXW4T9M2R8V6C5N1HI",
    "ses_01JG7Q3ZKXW4T9M2R8V6C5N1H",
    "sim_01JG7Q4B6P9D2F8H3K5M7N9Q1R",
    "sim_01JG7Q4B6P9D2F8H3K5M7N9Q1R0",
];

/// Whether a parser of the domain accepts a text.
type Parser = fn(&str) -> bool;

#[test]
fn every_documented_pattern_allows_exactly_what_its_parser_accepts() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let parameter = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map_or_else(
                || panic!("{method} {path} documents {name}"),
                |p| p["schema"].clone(),
            )
    };
    let cases: [(&str, Value, Parser); 7] = [
        (
            "CreateSession.name",
            schemas["CreateSession"]["properties"]["name"].clone(),
            |t| SessionName::parse("name", t).is_ok(),
        ),
        (
            "StartSimulator.symbols[]",
            schemas["StartSimulator"]["properties"]["symbols"]["items"].clone(),
            |t| Symbol::parse("symbols[0]", t).is_ok(),
        ),
        (
            "ReconnectRequest.last_event_id",
            schemas["ReconnectRequest"]["properties"]["last_event_id"].clone(),
            |t| EventId::parse("last_event_id", t).is_ok(),
        ),
        (
            "CreateTicket.simulator_id",
            schemas["CreateTicket"]["properties"]["simulator_id"].clone(),
            |t| SimulatorId::parse("simulator_id", t).is_ok(),
        ),
        (
            "GET /v1/sessions cursor",
            parameter("/v1/sessions", "get", "cursor"),
            |t| session_core::domain::Cursor::decode("cursor", t).is_ok(),
        ),
        (
            "GET /v1/sessions/{session_id} session_id",
            parameter("/v1/sessions/{session_id}", "get", "session_id"),
            |t| SessionId::parse("session_id", t).is_ok(),
        ),
        (
            "GET .../book symbol",
            parameter(
                "/v1/sessions/{session_id}/simulators/{simulator_id}/book",
                "get",
                "symbol",
            ),
            |t| Symbol::parse("symbol", t).is_ok(),
        ),
    ];

    for (input, schema, parses) in cases {
        assert!(
            schema.get("pattern").is_some(),
            "{input} has no pattern: {schema}"
        );
        for &sample in SAMPLES {
            assert_eq!(
                allows(&doc, &schema, &json!(sample)),
                parses(sample),
                "{input}: the document and the server disagree on {sample:?}"
            );
        }
    }
}

#[test]
fn the_documented_bodies_are_absent_or_objects_and_symbols_distinct() {
    let doc = document();
    let create = &doc["paths"]["/v1/sessions"]["post"]["requestBody"];
    let start = &doc["components"]["schemas"]["StartSimulator"];

    assert_ne!(create["required"], json!(true), "{create}");
    let schema = &create["content"]["application/json"]["schema"];
    assert!(!allows(&doc, schema, &Value::Null), "a null body: {schema}");
    assert!(allows(&doc, schema, &json!({})));
    let metadata = &doc["components"]["schemas"]["CreateSession"]["properties"]["metadata"];
    assert!(!allows(&doc, metadata, &json!([])), "{metadata}");
    assert!(!allows(
        &doc,
        start,
        &json!({"symbols": ["BTC-USD", "BTC-USD"]})
    ));
    assert!(!allows(&doc, start, &json!({"symbols": [""]})));
    assert!(!allows(
        &doc,
        start,
        &json!({"symbols": ["BTC-USD"], "events_per_second": 0})
    ));
}

#[tokio::test]
async fn a_create_without_a_body_makes_a_bare_session_and_an_array_body_is_refused() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let created = alice.send(Method::POST, "/v1/sessions", None, &[]).await;

    let array = alice.post("/v1/sessions", &json!([null, null])).await;

    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["status"], "active");
    assert!(created.body.get("name").is_none(), "{created:?}");
    assert_eq!(array.status, StatusCode::BAD_REQUEST, "{array:?}");
    assert_eq!(array.body["field"], "body", "{array:?}");
}

#[tokio::test]
async fn whole_numbers_written_with_a_zero_fraction_are_integers_as_the_document_says() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let start = format!("/v1/sessions/{session}/simulators");

    let whole = alice
        .post(
            &start,
            &json!({"symbols": ["BTC-USD"], "events_per_second": 50.0, "seed": 7.0}),
        )
        .await;
    let fraction = alice
        .post(
            &start,
            &json!({"symbols": ["ETH-USD"], "events_per_second": 50.5}),
        )
        .await;
    let limit = alice.get("/v1/sessions?limit=2.0").await;

    assert_eq!(whole.status, StatusCode::ACCEPTED, "{whole:?}");
    assert_eq!(whole.body["events_per_second"], 50);
    assert_eq!(whole.body["seed"], 7);
    assert_eq!(fraction.status, StatusCode::BAD_REQUEST, "{fraction:?}");
    assert_eq!(fraction.body["field"], "events_per_second");
    assert_eq!(limit.status, StatusCode::OK, "{limit:?}");
}

#[tokio::test]
async fn any_session_id_is_a_cursor_and_anything_else_is_refused_naming_it() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let first = alice.create_session().await;
    let second = alice.create_session().await;

    let after_second = alice.get(&format!("/v1/sessions?cursor={second}")).await;
    let never_minted = alice
        .get("/v1/sessions?cursor=ses_7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
        .await;
    let empty = alice.get("/v1/sessions?cursor=").await;
    let lower = alice
        .get(&format!("/v1/sessions?cursor={}", first.to_lowercase()))
        .await;

    assert_eq!(after_second.status, StatusCode::OK, "{after_second:?}");
    assert_eq!(after_second.body["items"][0]["session_id"], first.as_str());
    assert_eq!(never_minted.status, StatusCode::OK, "{never_minted:?}");
    assert_eq!(never_minted.body["items"].as_array().unwrap().len(), 2);
    for refused in [empty, lower] {
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
        assert_eq!(refused.body["field"], "cursor", "{refused:?}");
    }
}

#[tokio::test]
async fn an_id_in_another_spelling_is_refused_not_looked_up() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    let lower = alice
        .get(&format!("/v1/sessions/{}", session.to_lowercase()))
        .await;
    let overflowing = alice
        .get("/v1/sessions/ses_81JG7Q3ZKXW4T9M2R8V6C5N1HA")
        .await;

    for refused in [lower, overflowing] {
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
        assert_eq!(refused.body["field"], "session_id", "{refused:?}");
    }
}

#[tokio::test]
async fn the_book_of_a_symbol_the_simulator_lacks_is_404() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let book = format!("/v1/sessions/{session}/simulators/{simulator}/book");

    let lacking = alice.get(&format!("{book}?symbol=ETH-USD")).await;
    let malformed = alice.get(&format!("{book}?symbol=eth")).await;

    assert_eq!(lacking.status, StatusCode::NOT_FOUND, "{lacking:?}");
    assert_eq!(lacking.problem(), "not-found");
    assert!(
        lacking.body["detail"].as_str().unwrap().contains("ETH-USD"),
        "{lacking:?}"
    );
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{malformed:?}");
    assert_eq!(malformed.body["field"], "symbol");
}

#[tokio::test]
async fn a_closed_session_and_its_simulators_read_404_deleted_and_it_stays_listed_closed() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let before = alice.get(&format!("/v1/sessions/{session}")).await;

    let closed = alice.delete(&format!("/v1/sessions/{session}")).await;
    let read = alice.get(&format!("/v1/sessions/{session}")).await;
    let simulator_read = alice
        .get(&format!("/v1/sessions/{session}/simulators/{simulator}"))
        .await;
    let again = alice.delete(&format!("/v1/sessions/{session}")).await;
    let listed = alice.get("/v1/sessions").await;

    assert_eq!(before.status, StatusCode::OK, "{before:?}");
    assert_eq!(closed.status, StatusCode::OK, "{closed:?}");
    for gone in [&read, &simulator_read] {
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{gone:?}");
        assert_eq!(gone.problem(), "deleted");
    }
    assert!(
        read.body["detail"].as_str().unwrap().contains("closed"),
        "{read:?}"
    );
    assert_eq!(
        again.status,
        StatusCode::OK,
        "DELETE stays idempotent: {again:?}"
    );
    assert_eq!(again.body["status"], "closed");
    assert_eq!(listed.body["items"][0]["status"], "closed", "{listed:?}");
}

#[tokio::test]
async fn a_stopped_simulator_reads_404_deleted_and_its_session_still_lists_it() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    let path = format!("/v1/sessions/{session}/simulators/{simulator}");

    let stopped = alice.delete(&path).await;
    let read = alice.get(&path).await;
    let session_read = alice.get(&format!("/v1/sessions/{session}")).await;

    assert!(stopped.status.is_success(), "{stopped:?}");
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{read:?}");
    assert_eq!(read.problem(), "deleted");
    assert_eq!(session_read.status, StatusCode::OK, "{session_read:?}");
    let listed = session_read.body["simulators"][0]["status"]
        .as_str()
        .unwrap();
    assert!(
        ["stopping", "stopped"].contains(&listed),
        "{session_read:?}"
    );
}

#[tokio::test]
async fn an_undeclared_method_on_a_documented_path_is_405_with_allow() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    let trace = alice.send(Method::TRACE, "/v1/health", None, &[]).await;
    let put = alice
        .send(Method::PUT, &format!("/v1/sessions/{session}"), None, &[])
        .await;
    let patch = alice.send(Method::PATCH, "/v1/sessions", None, &[]).await;
    let unknown = alice.get("/v1/nothing-here").await;
    let anonymous = api
        .anonymous()
        .send(Method::PATCH, "/v1/sessions", None, &[])
        .await;

    for (answer, allow) in [
        (&trace, "GET,HEAD"),
        (&put, "GET,HEAD,DELETE"),
        (&patch, "GET,HEAD,POST"),
    ] {
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{answer:?}");
        assert_eq!(answer.problem(), "method-not-allowed");
        assert_eq!(answer.header("allow"), Some(allow), "{answer:?}");
    }
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    assert_eq!(unknown.problem(), "not-found");
    // The `$default` route is behind the authorizer: anonymous callers never reach the function.
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
}
