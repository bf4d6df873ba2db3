//! The service's logs as its own telemetry set-up writes them (`session_core::telemetry`, JSON,
//! every target at TRACE), captured for this test binary alone: the ids each handler's lines
//! carry (`request_id`, `session_id`, `connection_id`), and no secret a flow used in any line.
//!
//! A binary of its own because the subscriber is process-wide: the local stack's parts log from
//! tokio's worker threads, which a thread-local default would not reach.

// Helpers outside `#[test]` functions unwrap too (clippy's allow-unwrap-in-tests misses them).
#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::clock::SystemClock;
use session_core::component::Component;
use session_core::config::{EdgeSettings, LogFormat, Settings, StoreBackend, TelemetrySettings};
use session_core::secrets::local_client;
use session_core::store::InMemoryStore;
use session_functions::http::edge;
use session_local::stack::{Stack, StackSettings};
use session_tests::moto::Moto;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// Every byte the subscriber wrote.
type Captured = Arc<Mutex<Vec<u8>>>;

/// One event's write: the subscriber formats a whole line, then writes it at once.
struct Appender(Captured);

impl io::Write for Appender {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the subscriber (once for the binary) and returns what it captured so far.
fn captured() -> Vec<Value> {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    let buffer = CAPTURED.get_or_init(|| {
        let buffer = Captured::default();
        let settings = TelemetrySettings {
            log_format: LogFormat::Json,
            log_filter: "trace".to_owned(),
        };
        let sink = buffer.clone();
        let subscriber =
            session_core::telemetry::subscriber(&settings, move || Appender(sink.clone()))
                .expect("the filter parses");
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        buffer
    });
    let bytes = buffer.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| json!({ "raw": line })))
        .collect()
}

/// The raw text of every captured line (what a log store would hold).
fn captured_text() -> String {
    captured()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A field of a line: the event's own, else the innermost enclosing span's.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line.get(name).and_then(Value::as_str).or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .rev()
            .find_map(|span| span.get(name).and_then(Value::as_str))
            .filter(|v| !v.is_empty())
    })
}

/// The captured lines whose message is `message`.
fn lines_saying(message: &str) -> Vec<Value> {
    captured()
        .into_iter()
        .filter(|line| line["message"] == message)
        .collect()
}

/// The local stack on a fresh moto table (so that the AWS SDK's own logging is in the capture),
/// signing tickets with `ticket_key`.
async fn stack(ticket_key: &SigningKey) -> Stack {
    let mut service = Settings::default();
    service.backends.retry_base_ms = Duration::from_millis(5);
    service.store.backend = StoreBackend::Dynamodb;
    service.store.endpoint = Some(Moto::shared().endpoint().to_owned());
    service.store.table_name = format!("logs-{}", ulid::Ulid::new().to_string().to_lowercase());
    let verify = VerifyKeys::of(&[ticket_key]).unwrap();
    service
        .auth
        .set_ticket_keys(Some(ticket_key.clone()), Some(verify))
        .unwrap();
    Box::pin(Stack::start(StackSettings::ephemeral(service)))
        .await
        .expect("the local stack starts")
}

/// Requests to the HTTP API as one bearer.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(stack: &Stack, token: String) -> Self {
        Self {
            http: reqwest::Client::builder().timeout(WAIT).build().unwrap(),
            base: stack.endpoints().http_api.clone(),
            token,
        }
    }

    /// Sends a request; the status, the gateway's request id and the JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the HTTP API answers");
        let status = response.status();
        let id = response.headers()["apigw-requestid"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, id, body)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, _, body) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// A session with a running simulator: their ids.
    async fn session_with_simulator(&self) -> (String, String) {
        let session = self.post("/v1/sessions", json!({})).await["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let simulator = self
            .post(
                &format!("/v1/sessions/{session}/simulators"),
                json!({"symbols": ["AAPL"], "seed": 7, "events_per_second": 200}),
            )
            .await["simulator_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/v1/sessions/{session}/simulators/{simulator}");
        for _ in 0..100 {
            let (_, _, body) = self.send(reqwest::Method::GET, &path, None).await;
            if body["status"] == "running" {
                return (session, simulator);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the simulator never ran");
    }

    /// A ticket for `transport`: the ticket and its URL.
    async fn ticket(&self, session: &str, transport: &str) -> (String, String) {
        let body = self
            .post(
                &format!("/v1/sessions/{session}/tickets"),
                json!({ "transport": transport }),
            )
            .await;
        let text = |name: &str| body[name].as_str().unwrap().to_owned();
        (text("ticket"), text("url"))
    }
}

/// Opens the WebSocket at `url`, sends one heartbeat and reads its answer, then closes.
async fn websocket_heartbeat(url: &str) {
    let (mut socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .expect("the handshake is accepted");
    // Sent and received through the suites' helpers, which check both against docs/asyncapi.json.
    let beat = json!({"action": "heartbeat", "seq": 1, "client_time": 1_000});
    session_tests::ws::send(&mut socket, &beat).await;
    loop {
        match session_tests::ws::next_message(&mut socket, WAIT).await {
            Some(Message::Text(text)) if text.contains("heartbeat_ack") => break,
            Some(Message::Text(_)) => {}
            other => panic!("no heartbeat answer: {other:?}"),
        }
    }
    socket.close(None).await.unwrap();
}

/// Opens the SSE stream at `url` and reads its first chunk.
async fn sse_first_chunk(url: &str) {
    let mut response = reqwest::Client::new()
        .get(url)
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let chunk = response.chunk().await.unwrap();
    assert!(chunk.is_some_and(|c| !c.is_empty()));
}

/// Polls until a line saying `message` exists (the streamer and the emulator log after they
/// answered); returns them.
async fn eventually_saying(message: &str) -> Vec<Value> {
    for _ in 0..100 {
        let lines = lines_saying(message);
        if !lines.is_empty() {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing logged {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handler_line_carries_the_request_session_and_connection_ids() {
    captured();
    let key = SigningKey::generate("log-fields").unwrap();
    let stack = stack(&key).await;
    let alice = Client::new(&stack, stack.token("alice"));
    let (session, simulator) = alice.session_with_simulator().await;

    let (_, stop_request, _) = alice
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{session}/simulators/{simulator}"),
            None,
        )
        .await;
    let (_, url) = alice.ticket(&session, "ws").await;
    websocket_heartbeat(&url).await;
    let (_, _, started) = alice
        .send(
            reqwest::Method::POST,
            &format!("/v1/sessions/{session}/simulators"),
            Some(json!({"symbols": ["MSFT"], "seed": 1, "events_per_second": 50})),
        )
        .await;
    let restarted = started["simulator_id"].as_str().unwrap().to_owned();
    alice
        .send(
            reqwest::Method::GET,
            &format!("/v1/sessions/{session}/simulators/{restarted}"),
            None,
        )
        .await;
    let (_, sse_url) = alice.ticket(&session, "sse").await;
    sse_first_chunk(&sse_url).await;

    // REST: the line the stop handler logs, under the gateway's request id.
    let stopped = eventually_saying("simulator stopped").await;
    let stopped = stopped
        .iter()
        .find(|l| field(l, "request_id") == Some(stop_request.as_str()))
        .unwrap_or_else(|| panic!("no stop line with request_id {stop_request}: {stopped:?}"));
    assert_eq!(field(stopped, "session_id"), Some(session.as_str()));
    // The emulator's own line for that request carries the same id.
    assert!(
        lines_saying("request")
            .iter()
            .any(|l| field(l, "request_id") == Some(stop_request.as_str())),
        "the gateway's line lacks request_id {stop_request}"
    );
    // WebSocket: the `$connect` authorizer's line, then the handler's `$connect` and
    // `$disconnect` lines, all of one connection.
    let allowed = eventually_saying("connect allowed").await;
    let allowed = allowed
        .iter()
        .find(|l| field(l, "session_id") == Some(session.as_str()))
        .unwrap_or_else(|| panic!("no authorizer line for {session}: {allowed:?}"));
    assert!(field(allowed, "request_id").is_some(), "{allowed}");
    let connection = field(allowed, "connection_id")
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("the authorizer's line has no connection_id: {allowed}"))
        .to_owned();
    for message in ["connection opened", "connection closed"] {
        let lines = eventually_saying(message).await;
        let line = lines
            .iter()
            .find(|l| field(l, "session_id") == Some(session.as_str()))
            .unwrap_or_else(|| panic!("no {message:?} line for {session}: {lines:?}"));
        assert!(field(line, "request_id").is_some(), "{line}");
        assert_eq!(
            field(line, "connection_id"),
            Some(connection.as_str()),
            "{line}"
        );
    }
    // SSE: the streamer's line, under the id it generated for the request.
    let opened = eventually_saying("stream opened").await;
    let opened = opened
        .iter()
        .find(|l| field(l, "session_id") == Some(session.as_str()))
        .unwrap_or_else(|| panic!("no stream line for {session}: {opened:?}"));
    assert!(field(opened, "request_id").is_some(), "{opened}");
    stack.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_ticket_ticket_key_or_edge_secret_is_logged_at_any_level() {
    captured();
    let key = SigningKey::generate("no-secrets").unwrap();
    let stack = stack(&key).await;
    let token = stack.token("bob");
    let bob = Client::new(&stack, token.clone());
    let admin = Client::new(
        &stack,
        stack
            .auth()
            .issue("ops", &["sessions:admin"], Duration::from_secs(3600))
            .unwrap(),
    );

    // Act: the flows, each with its credential.
    let (session, _) = bob.session_with_simulator().await;
    let (ws_ticket, ws_url) = bob.ticket(&session, "ws").await;
    websocket_heartbeat(&ws_url).await;
    let (sse_ticket, sse_url) = bob.ticket(&session, "sse").await;
    sse_first_chunk(&sse_url).await;
    let jti = token_id(&token);
    admin
        .post("/v1/admin/revocations", json!({ "token_id": jti }))
        .await;
    let edge_secret = format!("edge-{}", ulid::Ulid::new());
    edge_request(&edge_secret).await;
    // What the streamer and the emulators log after they answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.shutdown().await.unwrap();

    // Assert
    let logs = captured_text();
    assert!(
        logs.lines().count() > 100,
        "too little captured to prove anything"
    );
    let key_json = key.to_json();
    let key_doc: Value = serde_json::from_str(key_json.expose_secret()).unwrap();
    let pem = key_doc["private_key_pem"].as_str().unwrap();
    let mut secrets = vec![
        ("the bearer token", token.clone()),
        ("the bearer token's signature", signature(&token)),
        ("the WebSocket ticket", ws_ticket.clone()),
        ("the WebSocket ticket's signature", signature(&ws_ticket)),
        ("the SSE ticket", sse_ticket.clone()),
        ("the SSE ticket's signature", signature(&sse_ticket)),
        ("the edge origin secret", edge_secret),
    ];
    secrets.extend(
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(|line| ("a line of the ticket key", line.to_owned())),
    );
    for (what, secret) in secrets {
        let leak = logs.lines().find(|line| line.contains(&secret));
        assert!(leak.is_none(), "{what} is logged: {}", leak.unwrap_or(""));
    }
}

/// A JWT's id claim (`jti`).
fn token_id(token: &str) -> String {
    session_tests::jwt::claim(token, "jti")
}

/// A JWS's signature part: a log line holding it holds the credential.
fn signature(jws: &str) -> String {
    jws.rsplit('.').next().unwrap().to_owned()
}

/// One request through the REST function behind the edge guard, the secret read from moto's
/// Secrets Manager as in Lambda and sent in the origin header as CloudFront sends it.
async fn edge_request(secret: &str) {
    let arn = Moto::shared().create_secret("edge-origin", secret).await;
    let settings = EdgeSettings {
        origin_secret_arn: Some(arn),
        ..EdgeSettings::default()
    };
    let client = local_client(Moto::shared().endpoint(), Component::RestApi);
    let guard = edge::guard(&settings, client).await.unwrap().unwrap();
    let clock = Arc::new(SystemClock);
    let service = Settings::default();
    let app = session_functions::wiring::app(
        &service,
        Arc::new(InMemoryStore::new(clock.clone())),
        session_functions::wiring::simulator_backend(&service).unwrap(),
        clock,
    );
    let router = edge::behind_edge(session_functions::http::router(app), guard);
    let file = session_tests::moto::repo_root().join("events/openapi-get.json");
    let mut event: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    event["headers"][settings.origin_header.as_str()] = json!(secret);
    let response = session_functions::invoke::invoke(router, event)
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
}
