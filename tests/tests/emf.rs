//! The Lambdas' Embedded Metric Format lines, read from what the real handlers write: the
//! `events/` samples through the REST router on the `lambda_http` event path, and the
//! authorizer's sample with a real auth service.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use serde_json::{Value, json};
use session_core::appconfig::{FlagSet, Flags};
use session_core::clock::{Clock, SystemClock};
use session_core::config::{RateQuota, Settings};
use session_core::store::{InMemoryStore, SharedStore};
use session_functions::metrics::Emf;
use session_local::auth::{AuthServer, AuthSettings};
use session_local::simulator::{SimulatorServer, SimulatorSettings};

/// A sink the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line written, each one JSON object.
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn sample(file: &str) -> Value {
    let path = session_tests::moto::repo_root().join("events").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks the EMF directive every line carries, and returns (operation, outcome).
fn checked(line: &Value, service: &str) -> (String, String) {
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "SessionService", "{line}");
    assert_eq!(
        directive["Dimensions"],
        json!([["Service", "Operation", "Outcome"], ["Service", "Outcome"]]),
        "{line}"
    );
    assert_eq!(
        directive["Metrics"],
        json!([
            { "Name": "Requests", "Unit": "Count" },
            { "Name": "Latency", "Unit": "Seconds" },
        ]),
        "{line}"
    );
    assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(line["Service"], service);
    assert_eq!(line["Requests"], 1);
    let latency = line["Latency"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&latency), "{line}");
    (
        line["Operation"].as_str().unwrap().to_owned(),
        line["Outcome"].as_str().unwrap().to_owned(),
    )
}

/// The REST router over an in-memory store, `adjust`ed, writing its lines where the test reads.
fn rest_router(
    settings: &Settings,
    adjust: impl FnOnce(&mut session_functions::http::App),
) -> (axum::Router, Captured) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(settings).unwrap();
    let mut app = session_functions::wiring::app(settings, store, backend, clock);
    adjust(&mut app);
    let captured = Captured::default();
    let router = session_functions::http::router_with_metrics(app, Emf::to(captured.clone()));
    (router, captured)
}

#[tokio::test]
async fn every_rest_request_writes_one_emf_line_with_its_operation_outcome_and_latency() {
    // Arrange: the REST router over an in-memory store, one session create a second.
    let simulator = SimulatorServer::spawn(SimulatorSettings::default())
        .await
        .unwrap();
    let mut settings = Settings::default();
    settings.backends.simulator_url = simulator.endpoint();
    settings.rate_limits.writes = RateQuota {
        per_second: 1,
        burst: 1,
    };
    let (router, captured) = rest_router(&settings, |_| {});

    // Act: a create, a second one over the write limit, a start in a session that is not there.
    let invoke = |file: &'static str| {
        let router = router.clone();
        async move {
            session_functions::invoke::invoke(router, sample(file))
                .await
                .unwrap()
        }
    };
    assert_eq!(invoke("sessions-create.json").await["statusCode"], 201);
    let mut second = sample("sessions-create.json");
    second["headers"]["idempotency-key"] = json!("another-create");
    let limited = session_functions::invoke::invoke(router.clone(), second)
        .await
        .unwrap();
    assert_eq!(limited["statusCode"], 429);
    assert_eq!(invoke("simulators-start.json").await["statusCode"], 404);

    // Assert: one line each, in order.
    let seen: Vec<(String, String)> = captured
        .lines()
        .iter()
        .map(|l| checked(l, "rest-api"))
        .collect();
    let expected = [
        ("CreateSession", "ok"),
        ("CreateSession", "rate_limited"),
        ("StartSimulator", "client_error"),
    ];
    assert_eq!(
        seen,
        expected.map(|(o, r)| (o.to_owned(), r.to_owned())).to_vec()
    );
}

#[tokio::test]
async fn a_write_maintenance_mode_pauses_is_a_maintenance_outcome_not_an_error() {
    let (router, captured) = rest_router(&Settings::default(), |app| {
        let on = FlagSet::parse(br#"{"maintenance_mode": {"enabled": true}}"#).unwrap();
        app.flags = Flags::fixed(on, Duration::from_secs(15));
    });

    let paused = session_functions::invoke::invoke(router, sample("sessions-create.json"))
        .await
        .unwrap();

    assert_eq!(paused["statusCode"], 503, "{paused}");
    let seen: Vec<(String, String)> = captured
        .lines()
        .iter()
        .map(|l| checked(l, "rest-api"))
        .collect();
    assert_eq!(
        seen,
        vec![("CreateSession".to_owned(), "maintenance".to_owned())],
        "a paused write must not count as an error (the 5xx alarm leaves these out)"
    );
}

#[tokio::test]
async fn the_authorizer_writes_a_deny_line_for_a_refused_token() {
    // Arrange: a real auth service, and the sample with its placeholder token.
    let auth = AuthServer::spawn(AuthSettings::default()).await.unwrap();
    let mut settings = Settings::default();
    settings.backends.auth_url = auth.endpoint();
    let validator = session_functions::wiring::token_validator(&settings).unwrap();
    let event: ApiGatewayV2CustomAuthorizerV2Request =
        serde_json::from_value(sample("authorizer.json")).unwrap();
    let captured = Captured::default();

    // Act
    let verdict = session_functions::http_authorizer::authorize_with_metrics(
        &validator,
        &event,
        &Emf::to(captured.clone()),
    )
    .await
    .unwrap();

    // Assert
    assert!(!verdict.is_authorized);
    let lines = captured.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        checked(&lines[0], "authorizer"),
        ("Authorize".to_owned(), "deny".to_owned())
    );
}

#[tokio::test]
async fn the_ws_authorizer_writes_a_deny_line_for_a_refused_handshake() {
    // Arrange: the sample's page origin is not among the allowed ones (none are).
    let settings = Settings::default();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(&settings).unwrap();
    let service = session_core::service::ConnectAuthorizer::new(
        &session_core::service::ServiceParts::from_settings(&settings, store, backend, clock),
    );
    let event: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(sample("ws-authorizer.json")).unwrap();
    let captured = Captured::default();

    // Act
    let verdict = session_functions::websocket::authorize_connect_with_metrics(
        &service,
        &event,
        &Emf::to(captured.clone()),
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(
        verdict.policy_document.statement[0].effect,
        aws_lambda_events::iam::IamPolicyEffect::Deny
    );
    let lines = captured.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        checked(&lines[0], "ws-authorizer"),
        ("AuthorizeConnect".to_owned(), "deny".to_owned())
    );
}
