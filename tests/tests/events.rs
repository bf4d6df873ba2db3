//! Every file in `events/` through its handler, as `cargo lambda invoke --data-file` would send
//! it: REST events through the router on the `lambda_http` event path
//! (`session_functions::invoke`) over the in-memory store and a real simulator service, and the
//! authorizer event through the authorizer with a real auth service.
//!
//! Each REST file runs twice: on an empty store (what a fresh `cargo lambda watch` answers) and
//! once the sample session and simulator the files name exist. A file with no case here fails
//! the test, so a new sample cannot be skipped silently. `events/README.md` lists the same
//! expectations for people.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use base64::Engine as _;
use serde_json::Value;
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::backend::{SimulatorBackend, StartSpec};
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_core::domain::{
    NewSession, NewSimulator, Session, SessionId, SessionName, Simulator, SimulatorId,
    SimulatorStatus, UserId,
};
use session_core::store::{InMemoryStore, SharedStore};
use session_local::auth::{AuthHandle, AuthServer, AuthSettings};
use session_local::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings};

/// The session the samples name (`pathParameters.session_id`).
const SESSION_ID: &str = "ses_01JG7Q3ZKXW4T9M2R8V6C5N1HA";
/// The simulator the samples name (`pathParameters.simulator_id`).
const SIMULATOR_ID: &str = "sim_01JG7Q4B6P9D2F8H3K5M7N9Q1R";
/// The caller in the samples' `requestContext.authorizer.lambda`.
const USER: &str = "alice";
/// Stands for a bearer token in the samples; the authorizer refuses it as it is.
const TOKEN_PLACEHOLDER: &str = "REPLACE_WITH_A_TOKEN";
/// Scopes of the token the authorizer test mints (the samples' context has the same).
const SCOPES: [&str; 2] = ["sessions:read", "sessions:write"];

/// What one REST sample must answer.
struct RestCase {
    file: &'static str,
    /// Status on an empty store: what a fresh `cargo lambda watch` process answers.
    empty: u16,
    /// Status once the sample session and simulator exist.
    seeded: u16,
    /// Checks the key fields of the seeded answer.
    check: fn(&Reply) -> anyhow::Result<()>,
}

const REST_CASES: &[RestCase] = &[
    RestCase {
        file: "sessions-create.json",
        empty: 201,
        seeded: 201,
        check: created_session,
    },
    RestCase {
        file: "sessions-list.json",
        empty: 200,
        seeded: 200,
        check: listed_sessions,
    },
    RestCase {
        file: "sessions-get.json",
        empty: 404,
        seeded: 200,
        check: session_detail,
    },
    RestCase {
        file: "sessions-close.json",
        empty: 404,
        seeded: 200,
        check: closed_session,
    },
    RestCase {
        file: "simulators-start.json",
        empty: 404,
        seeded: 202,
        check: started_simulator,
    },
    RestCase {
        file: "simulators-get.json",
        empty: 404,
        seeded: 200,
        check: running_simulator,
    },
    RestCase {
        file: "simulators-book.json",
        empty: 404,
        seeded: 200,
        check: book,
    },
    RestCase {
        file: "simulators-stop.json",
        empty: 404,
        seeded: 200,
        check: stopped_simulator,
    },
    RestCase {
        file: "tickets-create.json",
        empty: 404,
        seeded: 201,
        check: ticket,
    },
    RestCase {
        file: "sessions-reconnect.json",
        empty: 404,
        seeded: 200,
        check: reconnect,
    },
    RestCase {
        file: "admin-revocations-create.json",
        empty: 201,
        seeded: 201,
        check: revocation,
    },
    RestCase {
        file: "health-get.json",
        empty: 200,
        seeded: 200,
        check: healthy,
    },
    RestCase {
        file: "openapi-get.json",
        empty: 200,
        seeded: 200,
        check: openapi_document,
    },
];

/// Samples of the REQUEST authorizer (payload 2.0).
const AUTHORIZER_FILES: &[&str] = &["authorizer.json"];

/// Samples of the WebSocket API's `$connect` REQUEST authorizer (`ws-authorizer`).
const WS_AUTHORIZER_FILES: &[&str] = &["ws-authorizer.json"];

/// Samples of the WebSocket routes (`ws-handler`).
const WS_ROUTE_FILES: &[&str] = &[
    "ws-connect.json",
    "ws-heartbeat.json",
    "ws-default.json",
    "ws-disconnect.json",
];

/// Files in `events/` that are not events.
const NOT_EVENTS: &[&str] = &["README.md"];

enum Handler {
    RestApi(&'static RestCase),
    Authorizer,
    WsAuthorizer,
    WsRoute,
}

fn handler_of(file: &str) -> Option<Handler> {
    if let Some(case) = REST_CASES.iter().find(|c| c.file == file) {
        return Some(Handler::RestApi(case));
    }
    if WS_AUTHORIZER_FILES.contains(&file) {
        return Some(Handler::WsAuthorizer);
    }
    if WS_ROUTE_FILES.contains(&file) {
        return Some(Handler::WsRoute);
    }
    AUTHORIZER_FILES
        .contains(&file)
        .then_some(Handler::Authorizer)
}

fn events_dir() -> PathBuf {
    session_tests::moto::repo_root().join("events")
}

fn event_files() -> Vec<String> {
    let dir = events_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("a readable directory entry");
            assert!(
                entry.file_type().is_ok_and(|t| t.is_file()),
                "events/{} is not a file: keep events/ flat",
                entry.file_name().to_string_lossy()
            );
            entry.file_name().to_string_lossy().into_owned()
        })
        .filter(|name| !NOT_EVENTS.contains(&name.as_str()))
        .collect();
    files.sort();
    files
}

fn load(file: &str) -> anyhow::Result<Value> {
    let path = events_dir().join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))
}

#[tokio::test]
async fn every_file_in_events_runs_through_its_handler_and_answers_as_documented() {
    let files = event_files();
    assert!(!files.is_empty(), "events/ has no samples");
    let mut failures = Vec::new();
    for file in &files {
        let outcome = match handler_of(file) {
            None => Err(anyhow::anyhow!(
                "no handler is known for it: add a case to REST_CASES, AUTHORIZER_FILES, \
                 WS_AUTHORIZER_FILES or WS_ROUTE_FILES in tests/tests/events.rs (and a line to \
                 events/README.md)"
            )),
            Some(Handler::RestApi(case)) => run_rest(case).await,
            Some(Handler::Authorizer) => run_authorizer(file).await,
            Some(Handler::WsAuthorizer) => run_ws_authorizer(file).await,
            Some(Handler::WsRoute) => run_ws_route(file).await,
        };
        if let Err(e) = outcome {
            failures.push(format!("events/{file}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_case_has_its_file_in_events() {
    let files = event_files();
    let missing: Vec<&str> = REST_CASES
        .iter()
        .map(|c| c.file)
        .chain(AUTHORIZER_FILES.iter().copied())
        .filter(|f| !files.iter().any(|file| file == f))
        .collect();
    assert!(
        missing.is_empty(),
        "cases without a file in events/: {missing:?}"
    );
}

/// API Gateway states some facts twice (the path, the query, the route); handlers read one copy,
/// so a sample edited in one place only would still pass above while being an event API
/// Gateway never sends.
#[test]
fn every_sample_states_its_request_consistently() {
    let mut failures = Vec::new();
    // Files with no case are reported by the test above; the WebSocket API's payloads have
    // another shape (payload 1.0 style), checked by deserialising them in their cases.
    for file in event_files().into_iter().filter(|f| {
        matches!(
            handler_of(f),
            Some(Handler::RestApi(_) | Handler::Authorizer)
        )
    }) {
        if let Err(e) = load(&file).and_then(|event| consistent(&event)) {
            failures.push(format!("events/{file}: {e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn consistent(event: &Value) -> anyhow::Result<()> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    ensure!(event["version"] == "2.0", "version must be \"2.0\"");
    let context = &event["requestContext"];
    let route_key = text(&event["routeKey"]);
    let raw_path = text(&event["rawPath"]);
    let method = text(&context["http"]["method"]);
    ensure!(
        context["routeKey"] == route_key,
        "requestContext.routeKey differs from routeKey"
    );
    ensure!(
        context["http"]["path"] == raw_path,
        "requestContext.http.path differs from rawPath"
    );
    let (route_method, template) = route_key
        .split_once(' ')
        .context("routeKey is METHOD PATH")?;
    ensure!(
        route_method == method,
        "routeKey's method differs from requestContext.http.method"
    );
    let mut path = template.to_owned();
    if let Some(parameters) = event["pathParameters"].as_object() {
        for (name, value) in parameters {
            path = path.replace(&format!("{{{name}}}"), value.as_str().unwrap_or_default());
        }
    }
    ensure!(
        path == raw_path,
        "routeKey with pathParameters is {path}, rawPath is {raw_path}"
    );
    let raw_query = text(&event["rawQueryString"]);
    let parsed: serde_json::Map<String, Value> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    let parameters = event["queryStringParameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    ensure!(
        parsed == parameters,
        "queryStringParameters differ from rawQueryString"
    );
    let headers = &event["headers"];
    if let Some(body) = event["body"].as_str() {
        ensure!(
            text(&headers["content-length"]).parse::<usize>().ok() == Some(body.len()),
            "content-length is not the body's length ({})",
            body.len()
        );
    }
    if event["type"] == "REQUEST" {
        ensure!(
            event["identitySource"] == serde_json::json!([headers["authorization"]]),
            "identitySource must be the authorization header (the route's identity source)"
        );
        ensure!(
            text(&event["routeArn"]).ends_with(&format!("/$default/{method}{raw_path}")),
            "routeArn must end with /$default/{method}{raw_path}"
        );
    }
    Ok(())
}

// ---- REST samples -------------------------------------------------------------------------

/// One router over a fresh in-memory store, with a simulator service of its own (so a sample
/// that stops the simulator cannot change what the next sample sees).
struct World {
    router: axum::Router,
    /// Serves the router's backend; dropping it stops the server.
    _simulator: SimulatorHandle,
}

fn settings(simulator_url: String) -> Settings {
    let mut settings = Settings::default();
    settings.backends.simulator_url = simulator_url;
    let key = SigningKey::generate("events-test").expect("a ticket key");
    let keys = VerifyKeys::of(&[&key]).expect("its public half");
    settings
        .auth
        .set_ticket_keys(Some(key), Some(keys))
        .expect("a key pair that goes together");
    settings
}

async fn world(seeded: bool) -> anyhow::Result<World> {
    let simulator = SimulatorServer::spawn(SimulatorSettings::default())
        .await
        .context("spawning the simulator service")?;
    let settings = settings(simulator.endpoint());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(&settings)?;
    if seeded {
        seed(&settings, &store, backend.as_ref(), clock.as_ref()).await?;
    }
    let app = session_functions::wiring::app(&settings, store, backend, clock);
    Ok(World {
        router: session_functions::http::router(app),
        _simulator: simulator,
    })
}

/// The session and the running simulator the samples name, owned by the samples' caller.
async fn seed(
    settings: &Settings,
    store: &SharedStore,
    backend: &dyn SimulatorBackend,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let now = clock.now();
    let session = Session {
        id: SessionId::parse("session_id", SESSION_ID)?,
        ..Session::open(
            UserId::parse("user", USER)?,
            NewSession {
                name: Some(SessionName::parse("name", "sample")?),
                metadata: None,
            },
            now,
            settings.limits.session_lifetime(),
        )
    };
    store
        .create_session(&session, settings.limits.sessions_per_user)
        .await?;
    let request =
        NewSimulator::parse(&["BTC-USD".to_owned(), "ETH-USD".to_owned()], Some(7), None)?;
    let id = SimulatorId::parse("simulator_id", SIMULATOR_ID)?;
    let started = backend
        .start(&StartSpec {
            client_token: id.clone(),
            symbols: request.symbols.clone(),
            seed: request.seed,
            events_per_second: request.events_per_second,
        })
        .await
        .context("starting the sample simulator on the simulator service")?;
    ensure!(
        started.status == SimulatorStatus::Running,
        "the simulator service answered {} to a start",
        started.status
    );
    let simulator = Simulator {
        id,
        status: SimulatorStatus::Running,
        backend_id: Some(started.backend_id),
        ..Simulator::starting(&session, request, now)
    };
    store
        .create_simulator(
            &simulator,
            &session.owner,
            session_core::store::SimulatorQuotas::of(&settings.limits),
        )
        .await?;
    Ok(())
}

/// A handler's answer as API Gateway receives it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: serde_json::Map<String, Value>,
    /// The body parsed as JSON (`Null` when empty).
    body: Value,
}

impl Reply {
    fn parse(response: &Value) -> anyhow::Result<Self> {
        let status = response["statusCode"]
            .as_u64()
            .context("the response has no statusCode")? as u16;
        let headers = response["headers"].as_object().cloned().unwrap_or_default();
        let text = response["body"].as_str().unwrap_or_default();
        let text = if response["isBase64Encoded"].as_bool() == Some(true) {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text)?)?
        } else {
            text.to_owned()
        };
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("the body is not JSON: {text}"))?
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn str(&self, pointer: &str) -> &str {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

async fn invoke(world: &World, event: Value) -> anyhow::Result<Reply> {
    let response = session_functions::invoke::invoke(world.router.clone(), event).await?;
    Reply::parse(&response)
}

async fn run_rest(case: &RestCase) -> anyhow::Result<()> {
    let event = load(case.file)?;
    let route = event["routeKey"].as_str().unwrap_or_default().to_owned();

    let empty = invoke(&world(false).await?, event.clone()).await?;
    ensure!(
        empty.status == case.empty,
        "{route} on an empty store answered {} (expected {}): {}",
        empty.status,
        case.empty,
        empty.body
    );
    if empty.status == 404 {
        ensure!(
            empty.header("content-type") == "application/problem+json"
                && empty.str("/type") == "urn:session-service:problem:not-found",
            "{route} on an empty store: a 404 must be a not-found problem, got {:?} {}",
            empty.header("content-type"),
            empty.body
        );
    }

    let seeded = invoke(&world(true).await?, event).await?;
    ensure!(
        seeded.status == case.seeded,
        "{route} with the sample session answered {} (expected {}): {}",
        seeded.status,
        case.seeded,
        seeded.body
    );
    (case.check)(&seeded).with_context(|| format!("{route}: {}", seeded.body))
}

fn created_session(reply: &Reply) -> anyhow::Result<()> {
    let id = reply.str("/session_id");
    ensure!(
        id.starts_with("ses_") && id != SESSION_ID,
        "a new session id"
    );
    ensure!(
        reply.header("location") == format!("/v1/sessions/{id}"),
        "Location names it"
    );
    ensure!(reply.str("/status") == "active", "status active");
    ensure!(reply.str("/name") == "demo", "the name of the request");
    ensure!(
        reply.str("/metadata/desk") == "fx",
        "the metadata of the request"
    );
    Ok(())
}

fn listed_sessions(reply: &Reply) -> anyhow::Result<()> {
    let items = reply.body["items"].as_array().context("items")?;
    ensure!(
        items.iter().any(|s| s["session_id"] == SESSION_ID),
        "the sample session is listed"
    );
    Ok(())
}

fn session_detail(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/session_id") == SESSION_ID, "the sample session");
    ensure!(reply.str("/status") == "active", "status active");
    ensure!(
        reply.str("/simulators/0/simulator_id") == SIMULATOR_ID
            && reply.str("/simulators/0/status") == "running",
        "its running simulator"
    );
    ensure!(reply.body["connections"] == 0, "no connections");
    Ok(())
}

fn closed_session(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/session_id") == SESSION_ID, "the sample session");
    ensure!(reply.str("/status") == "closed", "status closed");
    ensure!(!reply.str("/closed_at").is_empty(), "closed_at set");
    Ok(())
}

fn started_simulator(reply: &Reply) -> anyhow::Result<()> {
    let id = reply.str("/simulator_id");
    ensure!(
        id.starts_with("sim_") && id != SIMULATOR_ID,
        "a new simulator id"
    );
    ensure!(
        reply.header("location") == format!("/v1/sessions/{SESSION_ID}/simulators/{id}"),
        "Location names it"
    );
    ensure!(reply.str("/status") == "running", "status running");
    ensure!(
        reply.body["symbols"] == serde_json::json!(["BTC-USD", "ETH-USD"]),
        "the symbols of the request"
    );
    ensure!(reply.body["seed"] == 7, "the seed of the request");
    Ok(())
}

fn running_simulator(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.str("/simulator_id") == SIMULATOR_ID,
        "the sample simulator"
    );
    ensure!(reply.str("/status") == "running", "status running");
    Ok(())
}

fn book(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/symbol") == "BTC-USD", "the symbol asked for");
    let event_id = reply.str("/event_id");
    let is_event_id = event_id.split_once('-').is_some_and(|(epoch, seq)| {
        !epoch.is_empty()
            && !seq.is_empty()
            && (epoch.bytes().chain(seq.bytes())).all(|b| b.is_ascii_digit())
    });
    ensure!(
        is_event_id,
        "event_id is <epoch>-<sequence>, got {event_id:?}"
    );
    ensure!(
        reply.body["bids"].is_array() && reply.body["asks"].is_array(),
        "bids and asks"
    );
    Ok(())
}

fn stopped_simulator(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.str("/simulator_id") == SIMULATOR_ID,
        "the sample simulator"
    );
    ensure!(reply.str("/status") == "stopped", "status stopped");
    Ok(())
}

fn ticket(reply: &Reply) -> anyhow::Result<()> {
    let ticket = reply.str("/ticket");
    ensure!(!ticket.is_empty(), "a ticket");
    ensure!(reply.str("/transport") == "sse", "for sse");
    let url = reply.str("/url");
    ensure!(
        url.contains(&format!("/v1/sessions/{SESSION_ID}/stream?ticket={ticket}")),
        "the session's stream URL with the ticket, got {url}"
    );
    ensure!(
        reply.str("/simulator_id") == SIMULATOR_ID,
        "following the session's live simulator"
    );
    ensure!(!reply.str("/expires_at").is_empty(), "an expiry");
    Ok(())
}

fn reconnect(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/transport") == "ws", "for ws");
    ensure!(!reply.str("/ticket").is_empty(), "a fresh ticket");
    ensure!(
        reply.str("/url").contains("last_event_id=1-0"),
        "the URL carries the last event id"
    );
    // The simulator's epoch is random, never the sample's `1`: the stream restarts from a
    // snapshot and says why.
    ensure!(
        reply.str("/resume/mode") == "snapshot" && reply.str("/resume/reason") == "epoch_changed",
        "resume from a snapshot because the epoch changed"
    );
    Ok(())
}

fn revocation(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.str("/subject") == "mallory",
        "mallory's tokens revoked"
    );
    ensure!(!reply.str("/until").is_empty(), "until when");
    Ok(())
}

fn healthy(reply: &Reply) -> anyhow::Result<()> {
    ensure!(reply.str("/status") == "ok", "status ok");
    let dependencies = reply.body["dependencies"]
        .as_array()
        .context("dependencies")?;
    for name in ["store", "simulator_service"] {
        ensure!(
            dependencies
                .iter()
                .any(|d| d["name"] == name && d["state"] == "ok"),
            "{name} ok"
        );
    }
    Ok(())
}

fn openapi_document(reply: &Reply) -> anyhow::Result<()> {
    ensure!(
        reply.header("content-type") == "application/json",
        "served as JSON"
    );
    ensure!(reply.str("/openapi").starts_with("3.1."), "OpenAPI 3.1");
    Ok(())
}

// ---- The authorizer sample ----------------------------------------------------------------

async fn run_authorizer(file: &str) -> anyhow::Result<()> {
    let auth = AuthServer::spawn(AuthSettings::default())
        .await
        .context("spawning the auth service")?;
    let mut settings = Settings::default();
    settings.backends.auth_url = auth.endpoint();
    let validator = session_functions::wiring::token_validator(&settings)?;
    let text = std::fs::read_to_string(events_dir().join(file))?;
    ensure!(
        text.contains(TOKEN_PLACEHOLDER),
        "the sample must carry the placeholder {TOKEN_PLACEHOLDER} where the token goes"
    );

    let as_is = authorize(&validator, &text).await?;
    ensure!(
        as_is["isAuthorized"] == false && as_is.get("context").is_none_or(Value::is_null),
        "the file as it is must be refused, got {as_is}"
    );

    let allowed = authorize(&validator, &with_fresh_token(&auth, &text)?).await?;
    ensure!(
        allowed["isAuthorized"] == true,
        "a fresh token must be allowed, got {allowed}"
    );
    let context = &allowed["context"];
    ensure!(
        context["user"] == USER && context["scopes"] == SCOPES.join(" "),
        "the context names the token's subject and scopes, got {context}"
    );
    ensure!(
        context["expires_at"]
            .as_i64()
            .is_some_and(|t| t > SystemClock.now().unix_millis() / 1000),
        "the context carries the token's expiry, got {context}"
    );
    caller_context_reaches_the_handlers(context).await
}

/// The sample with a token minted now for the samples' caller in place of the placeholder.
fn with_fresh_token(auth: &AuthHandle, text: &str) -> anyhow::Result<String> {
    let token = auth.auth().issue(USER, &SCOPES, Duration::from_secs(300))?;
    Ok(text.replace(TOKEN_PLACEHOLDER, &token))
}

async fn authorize(
    validator: &session_core::auth::GrpcTokenValidator,
    text: &str,
) -> anyhow::Result<Value> {
    let event: ApiGatewayV2CustomAuthorizerV2Request = serde_json::from_str(text)
        .context("not an API Gateway HTTP API REQUEST authorizer (payload 2.0) event")?;
    let response = session_functions::authorizer::authorize(validator, &event).await?;
    Ok(serde_json::to_value(response)?)
}

/// The authorizer's context, put where API Gateway puts it, is what the REST samples carry and
/// what the handlers accept.
async fn caller_context_reaches_the_handlers(context: &Value) -> anyhow::Result<()> {
    let mut event = load("sessions-list.json")?;
    let sample = &event["requestContext"]["authorizer"]["lambda"];
    let keys = |v: &Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    ensure!(
        keys(sample) == keys(context),
        "the REST samples' requestContext.authorizer.lambda has keys {:?}, the authorizer \
         returns {:?}",
        keys(sample),
        keys(context)
    );
    event["requestContext"]["authorizer"]["lambda"] = context.clone();
    let reply = invoke(&world(true).await?, event).await?;
    if reply.status != 200 {
        bail!(
            "GET /v1/sessions with the authorizer's context answered {}: {}",
            reply.status,
            reply.body
        );
    }
    listed_sessions(&reply)
}

// ---- WebSocket samples --------------------------------------------------------------------

/// Stands for a connect ticket in the WebSocket samples; the authorizer refuses it as it is.
const TICKET_PLACEHOLDER: &str = "REPLACE_WITH_A_TICKET";

/// The session service the WebSocket functions run, with the sample session in place.
async fn ws_world() -> anyhow::Result<(
    session_core::service::SessionService,
    Settings,
    SharedStore,
    SimulatorHandle,
)> {
    let simulator = SimulatorServer::spawn(SimulatorSettings::default())
        .await
        .context("spawning the simulator service")?;
    let mut settings = settings(simulator.endpoint());
    // The samples' handshakes come from the frontend's page.
    settings.websocket.allowed_origins = vec!["https://app.example.com".to_owned()];
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(&settings)?;
    seed(&settings, &store, backend.as_ref(), clock.as_ref()).await?;
    let service = session_functions::wiring::app(&settings, store.clone(), backend, clock).service;
    Ok((service, settings, store, simulator))
}

async fn run_ws_authorizer(file: &str) -> anyhow::Result<()> {
    let (service, settings, _store, _simulator) = ws_world().await?;
    let text = std::fs::read_to_string(events_dir().join(file))?;
    ensure!(
        text.contains(TICKET_PLACEHOLDER),
        "the sample must carry the placeholder {TICKET_PLACEHOLDER} where the ticket goes"
    );
    let decide = |text: String| {
        let service = service.clone();
        async move {
            let event: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest =
                serde_json::from_str(&text)
                    .context("not an API Gateway WebSocket REQUEST authorizer event")?;
            let verdict = session_functions::websocket::authorize_connect(&service, &event).await?;
            anyhow::Ok(serde_json::to_value(verdict)?)
        }
    };
    let effect = |v: &Value| v["policyDocument"]["Statement"][0]["Effect"].clone();

    let as_is = decide(text.clone()).await?;
    ensure!(
        effect(&as_is) == "Deny",
        "the file as it is must be refused, got {as_is}"
    );

    let key = settings
        .auth
        .ticket_signing_key()
        .cloned()
        .context("a ticket signing key")?;
    let signer = session_core::auth::TicketSigner::new(key, Duration::from_secs(60));
    let (ticket, _) = signer.issue(
        &SessionId::parse("session_id", SESSION_ID)?,
        &session_core::auth::Principal {
            user: UserId::parse("user", USER)?,
            scopes: vec![],
            expires_at: SystemClock.now().plus(Duration::from_secs(3600)),
            token_id: "fixture-token".to_owned(),
        },
        session_core::domain::Transport::Ws,
        SystemClock.now(),
    )?;
    let fresh = text.replace(TICKET_PLACEHOLDER, &ticket);
    let allowed = decide(fresh.clone()).await?;
    ensure!(
        effect(&allowed) == "Allow",
        "a fresh ticket must be allowed, got {allowed}"
    );
    ensure!(
        allowed["context"]["session_id"] == SESSION_ID && allowed["context"]["user"] == USER,
        "the context names the session and the user, got {}",
        allowed["context"]
    );
    let replayed = decide(fresh).await?;
    ensure!(
        effect(&replayed) == "Deny",
        "a ticket admits one connection only, got {replayed}"
    );
    Ok(())
}

async fn run_ws_route(file: &str) -> anyhow::Result<()> {
    let (service, _settings, store, _simulator) = ws_world().await?;
    let handle = |name: &'static str| {
        let service = service.clone();
        async move {
            let event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest =
                serde_json::from_value(load(name)?)
                    .with_context(|| format!("{name} is not an API Gateway WebSocket event"))?;
            let response = session_functions::websocket::handle(&service, &event).await;
            let frame = match &response.body {
                Some(aws_lambda_events::encodings::Body::Text(text)) => serde_json::from_str(text)?,
                _ => Value::Null,
            };
            anyhow::Ok((response.status_code, frame))
        }
    };
    let connections = || async {
        anyhow::Ok(
            store
                .list_connections(&SessionId::parse("session_id", SESSION_ID)?)
                .await?
                .len(),
        )
    };
    match file {
        "ws-connect.json" => {
            let (status, _) = handle("ws-connect.json").await?;
            ensure!(status == 200, "$connect answers 200, got {status}");
            ensure!(connections().await? == 1, "$connect records the connection");
        }
        "ws-heartbeat.json" => {
            let (_, gone) = handle("ws-heartbeat.json").await?;
            ensure!(
                gone["code"] == "connection_gone",
                "without a connection: {gone}"
            );
            handle("ws-connect.json").await?;
            let (status, ack) = handle("ws-heartbeat.json").await?;
            ensure!(
                status == 200 && ack["type"] == "heartbeat_ack" && ack["seq"] == 1,
                "{ack}"
            );
            ensure!(ack["resume"]["session_id"] == SESSION_ID, "{ack}");
        }
        "ws-default.json" => {
            let (status, error) = handle("ws-default.json").await?;
            ensure!(
                status == 200 && error["code"] == "unknown_action",
                "{error}"
            );
            ensure!(
                error["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("subscribe"),
                "{error}"
            );
        }
        "ws-disconnect.json" => {
            handle("ws-connect.json").await?;
            let (first, _) = handle("ws-disconnect.json").await?;
            let (again, _) = handle("ws-disconnect.json").await?;
            ensure!(
                first == 200 && again == 200,
                "$disconnect answers 200 twice, got {first}, {again}"
            );
            ensure!(
                connections().await? == 0,
                "$disconnect removes the connection"
            );
        }
        other => bail!("no WebSocket case for {other}"),
    }
    Ok(())
}
