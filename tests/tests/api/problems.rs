//! Every problem type the API answers with, each from the request that causes it: bad input
//! names the field and is a 4xx, never a 5xx; internals never reach the client; an unavailable
//! dependency is a 503 in bounded time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_core::store::InMemoryStore;
use session_functions::http::router;
use session_functions::wiring;
use session_tests::test_api::TestApi;

use crate::stall::stack_behind_relay;

#[tokio::test]
async fn invalid_fields_are_400_validation_errors_that_name_the_field() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let start = format!("/v1/sessions/{session}/simulators");
    let cases = [
        (
            "/v1/sessions".to_owned(),
            json!({"name": "x".repeat(200)}),
            "name",
        ),
        (
            "/v1/sessions".to_owned(),
            json!({"metadata": {"k": "v".repeat(5000)}}),
            "metadata",
        ),
        (start.clone(), json!({"symbols": []}), "symbols"),
        (
            start.clone(),
            json!({"symbols": ["BTC-USD", "bad symbol"]}),
            "symbols[1]",
        ),
        (
            start.clone(),
            json!({"symbols": ["BTC-USD"], "events_per_second": 0}),
            "events_per_second",
        ),
        (start.clone(), json!({"symbols": "BTC-USD"}), "symbols"),
        (
            format!("/v1/sessions/{session}/tickets"),
            json!({"transport": "smoke"}),
            "transport",
        ),
    ];

    for (path, body, field) in cases {
        let answer = alice.post(&path, &body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {answer:?}");
        assert_eq!(answer.problem(), "validation-error", "{body}");
        assert_eq!(answer.body["field"], field, "{body}: {answer:?}");
    }
    let limit = alice.get("/v1/sessions?limit=1000").await;
    assert_eq!(limit.status, StatusCode::BAD_REQUEST, "{limit:?}");
    assert_eq!(limit.body["field"], "limit");
    let unknown_param = alice.get("/v1/sessions?colour=red").await;
    assert_eq!(
        unknown_param.status,
        StatusCode::BAD_REQUEST,
        "{unknown_param:?}"
    );
    assert_eq!(unknown_param.body["field"], "colour");
    let cursor = alice.get("/v1/sessions?cursor=not-a-cursor").await;
    assert_eq!(cursor.status, StatusCode::BAD_REQUEST, "{cursor:?}");
    assert_eq!(cursor.body["field"], "cursor");
}

#[tokio::test]
async fn unknown_fields_and_malformed_json_are_400s_not_5xx() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let unknown = alice
        .post("/v1/sessions", &json!({"name": "a", "colour": "red"}))
        .await;
    let malformed = alice
        .send(
            Method::POST,
            "/v1/sessions",
            Some(("application/json", b"{\"name\":".to_vec())),
            &[],
        )
        .await;

    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{unknown:?}");
    assert_eq!(unknown.problem(), "validation-error");
    assert_eq!(unknown.body["field"], "colour", "{unknown:?}");
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{malformed:?}");
    assert_eq!(malformed.problem(), "malformed-json");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_and_an_oversized_one_413() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");

    let text = alice
        .send(
            Method::POST,
            "/v1/sessions",
            Some(("text/plain", br#"{"name":"a"}"#.to_vec())),
            &[],
        )
        .await;
    let huge = json!({"name": "a", "metadata": {"blob": "x".repeat(64 * 1024)}});
    let oversized = alice.post("/v1/sessions", &huge).await;

    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text:?}");
    assert_eq!(text.problem(), "unsupported-media-type");
    assert_eq!(
        oversized.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{oversized:?}"
    );
    assert_eq!(oversized.problem(), "payload-too-large");
}

#[tokio::test]
async fn malformed_ids_are_400s_naming_the_id_and_unknown_ones_404s() {
    let api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;

    for (path, field) in [
        ("/v1/sessions/not-an-id".to_owned(), "session_id"),
        (
            format!("/v1/sessions/{session}/simulators/sim_nope"),
            "simulator_id",
        ),
    ] {
        let answer = alice.get(&path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}: {answer:?}");
        assert_eq!(answer.problem(), "validation-error");
        assert_eq!(answer.body["field"], field);
    }
    for path in [
        "/v1/sessions/ses_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        format!("/v1/sessions/{session}/simulators/sim_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    ] {
        let answer = alice.get(&path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}: {answer:?}");
        assert_eq!(answer.problem(), "not-found");
    }
}

#[tokio::test]
async fn an_unreachable_simulator_service_is_a_503_reads_fall_back_to_the_record_and_health_degrades()
 {
    let mut api = TestApi::spawn().await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let simulator = alice.start_simulator(&session, &["BTC-USD"]).await;
    api.stack.stop_exchange_simulator().await.unwrap();
    let path = format!("/v1/sessions/{session}/simulators/{simulator}");

    let book = alice.get(&format!("{path}/book?symbol=BTC-USD")).await;
    let status = alice.get(&path).await;
    let health = api.anonymous().get("/v1/health").await;

    assert_eq!(book.status, StatusCode::SERVICE_UNAVAILABLE, "{book:?}");
    assert_eq!(book.problem(), "simulator-unavailable");
    let detail = book.body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("127.0.0.1") && !detail.contains("transport"),
        "{detail}"
    );
    assert_eq!(status.status, StatusCode::OK, "{status:?}");
    assert_eq!(status.body["status"], "running");
    // Degraded still serves (sessions, tickets), so it stays a 200; only `down` is a 503.
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(health.body["dependencies"][1]["state"], "failing");
}

#[tokio::test]
async fn a_store_that_stops_answering_is_a_503_within_the_call_timeout_not_a_hang() {
    // Short, yet far above moto's answers on a busy machine (setting up must not time out).
    let (api, relay) = stack_behind_relay(Duration::from_secs(1), Duration::from_secs(2)).await;
    let alice = api.user("alice");
    let session = alice.create_session().await;
    let path = format!("/v1/sessions/{session}");

    relay.hold();
    let started = Instant::now();
    let held = alice.get(&path).await;
    let waited = started.elapsed();
    relay.release();
    let after = alice.get(&path).await;

    assert_eq!(held.status, StatusCode::SERVICE_UNAVAILABLE, "{held:?}");
    assert_eq!(held.problem(), "service-unavailable");
    assert_eq!(held.header("retry-after"), Some("1"), "{held:?}");
    // The call timeout (2 s) and the gateway's overhead; without it, the HTTP client's 30 s.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(after.status, StatusCode::OK, "{after:?}");
    assert_eq!(after.body["status"], "active", "{after:?}");
}

/// The router on its own, fed API Gateway events directly: the answers that the gateway in front
/// of it normally makes unreachable (no authorizer context, a method the route lacks) and a
/// deployment without a ticket signing key.
#[tokio::test]
async fn the_router_alone_answers_unauthorized_method_not_allowed_and_not_configured() {
    let mut settings = Settings::default();
    settings.backends.simulator_url = "http://127.0.0.1:9".to_owned();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = wiring::simulator_backend(&settings).unwrap();
    let app = router(wiring::app(&settings, store, backend, clock));
    let caller = json!({"user": "alice", "scopes": "sessions:read sessions:write", "expires_at": 4_102_444_800_u64, "token_id": "t1"});

    let no_caller = invoke(&app, "GET", "/v1/sessions", None, None).await;
    let patch = invoke(&app, "PATCH", "/v1/sessions", Some(&caller), None).await;
    let created = invoke(&app, "POST", "/v1/sessions", Some(&caller), Some("{}")).await;
    let id =
        serde_json::from_str::<Value>(created["body"].as_str().unwrap()).unwrap()["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let ticket = invoke(
        &app,
        "POST",
        &format!("/v1/sessions/{id}/tickets"),
        Some(&caller),
        Some(r#"{"transport":"sse"}"#),
    )
    .await;

    assert_eq!(no_caller["statusCode"], 401, "{no_caller}");
    assert_eq!(problem_type(&no_caller), "unauthorized");
    assert_eq!(patch["statusCode"], 405, "{patch}");
    assert_eq!(problem_type(&patch), "method-not-allowed");
    assert_eq!(created["statusCode"], 201, "{created}");
    assert_eq!(ticket["statusCode"], 503, "{ticket}");
    assert_eq!(problem_type(&ticket), "not-configured");
}

async fn invoke(
    app: &axum::Router,
    method: &str,
    path: &str,
    caller: Option<&Value>,
    body: Option<&str>,
) -> Value {
    let mut context = json!({
        "accountId": "000000000000", "apiId": "test", "domainName": "localhost",
        "domainPrefix": "localhost", "requestId": "r1", "routeKey": "$default", "stage": "$default",
        "time": "27/Nov/2026:08:00:00 +0000", "timeEpoch": 1_795_766_400_000_u64,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
    });
    if let Some(caller) = caller {
        context["authorizer"] = json!({ "lambda": caller });
    }
    let mut event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"}, "requestContext": context,
        "isBase64Encoded": false,
    });
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    session_functions::invoke::invoke(app.clone(), event)
        .await
        .unwrap()
}

fn problem_type(response: &Value) -> String {
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    body["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:session-service:problem:")
        .to_owned()
}
