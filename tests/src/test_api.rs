//! A local stack on free ports per test, a small HTTP client that speaks as one user, and a
//! session with a WebSocket connection open on it: what the API and streamer suites set up.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use session_core::config::Settings;
use session_local::stack::{Stack, StackSettings};

use crate::ws::Socket;

/// A running stack and an HTTP client for it.
#[derive(Debug)]
pub struct TestApi {
    /// The running stack (its endpoints, emulators and shutdown).
    pub stack: Stack,
    /// The HTTP API's base URL.
    pub base: String,
    http: reqwest::Client,
}

/// One answer, with its body as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The response's status.
    pub status: StatusCode,
    /// The response's headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

impl Answer {
    /// The header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem type's code (`urn:session-service:problem:<code>`), asserting the media type.
    pub fn problem(&self) -> &str {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "not a problem document: {self:?}"
        );
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:session-service:problem:"))
            .unwrap_or_else(|| panic!("no problem type in {self:?}"))
    }
}

impl TestApi {
    /// A stack with the default settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A stack whose service settings `configure` adjusts first.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_stack(|stack| configure(&mut stack.service)).await
    }

    /// A stack whose settings (ports aside: free ones) `configure` adjusts first.
    pub async fn spawn_stack(configure: impl FnOnce(&mut StackSettings)) -> Self {
        let mut service = Settings::default();
        // Retries quick enough for tests; the policy is the same.
        service.backends.retry_base_ms = Duration::from_millis(5);
        let mut settings = StackSettings::ephemeral(service);
        configure(&mut settings);
        let stack = Stack::start(settings)
            .await
            .expect("the local stack starts");
        let base = stack.endpoints().http_api.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self { stack, base, http }
    }

    /// A client that speaks as `user` with a fresh token.
    pub fn user(&self, user: &str) -> User {
        self.client(Some(format!("Bearer {}", self.stack.token(user))))
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> User {
        self.client(None)
    }

    /// A client that sends `authorization` as is.
    pub fn with_authorization(&self, authorization: &str) -> User {
        self.client(Some(authorization.to_owned()))
    }

    fn client(&self, authorization: Option<String>) -> User {
        User {
            http: self.http.clone(),
            base: self.base.clone(),
            authorization,
        }
    }
}

/// Requests as one caller.
#[derive(Debug)]
pub struct User {
    http: reqwest::Client,
    base: String,
    authorization: Option<String>,
}

impl User {
    /// Any request: `body` is sent as is with `content_type`, `headers` added.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the HTTP API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// `POST path` with `body` as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_with(path, body, &[]).await
    }

    /// `POST path` with `body` as JSON and `headers` added.
    pub async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let body = serde_json::to_vec(body).expect("JSON");
        self.send(
            Method::POST,
            path,
            Some(("application/json", body)),
            headers,
        )
        .await
    }

    /// Creates a session and returns its id.
    pub async fn create_session(&self) -> String {
        let answer = self.post("/v1/sessions", &serde_json::json!({})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["session_id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    /// A fresh WebSocket ticket for `session`: the ticket and the URL to open.
    pub async fn ws_ticket(&self, session: &str) -> (String, String) {
        let answer = self
            .post(
                &format!("/v1/sessions/{session}/tickets"),
                &serde_json::json!({"transport": "ws"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let text = |field: &str| answer.body[field].as_str().expect(field).to_owned();
        (text("ticket"), text("url"))
    }

    /// Starts a simulator on `symbols` and returns its id once the service reports it running.
    pub async fn start_simulator(&self, session: &str, symbols: &[&str]) -> String {
        let answer = self
            .post(
                &format!("/v1/sessions/{session}/simulators"),
                &serde_json::json!({ "symbols": symbols, "seed": 7, "events_per_second": 200 }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
        let id = answer.body["simulator_id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let status = self.wait_for_simulator(session, &id, "running").await;
        assert_eq!(status, "running");
        id
    }

    /// Polls a simulator until its status is `wanted` or a terminal one; returns the last. A
    /// simulator asked to stop reads `404` `deleted`, its state named in the detail
    /// (`simulator <id> is <state>: deleted`).
    pub async fn wait_for_simulator(&self, session: &str, id: &str, wanted: &str) -> String {
        let path = format!("/v1/sessions/{session}/simulators/{id}");
        let mut status = String::new();
        // At most 20 a second: within the production limit of reads (`rate_limits.reads`).
        for _ in 0..100 {
            let answer = self.get(&path).await;
            status = if answer.status == StatusCode::NOT_FOUND && answer.problem() == "deleted" {
                let detail = answer.body["detail"].as_str().expect("a detail");
                let state = detail
                    .split(" is ")
                    .nth(1)
                    .and_then(|s| s.split(':').next());
                state.expect("the state in the detail").to_owned()
            } else {
                assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
                answer.body["status"].as_str().expect("a status").to_owned()
            };
            if status == wanted || status == "failed" || status == "stopped" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        status
    }
}

/// A user's session with one WebSocket connection open on it through the emulator: the set-up
/// most WebSocket tests start from.
#[derive(Debug)]
pub struct ConnectedSocket {
    /// The session's owner.
    pub user: User,
    /// The session the socket is connected to.
    pub session: String,
    /// The open socket.
    pub socket: Socket,
    /// The connection's id, as the `@connections` API names it.
    pub connection_id: String,
}

impl ConnectedSocket {
    /// Creates a session for `user` and connects to it with a fresh ticket; panics if the
    /// handshake is refused or not answered within 20 s.
    pub async fn open(api: &TestApi, user: &str) -> Self {
        let user = api.user(user);
        let session = user.create_session().await;
        let url = user.ws_ticket(&session).await.1;
        let before = api.stack.ws_api().connection_ids();
        let handshake = tokio_tungstenite::connect_async(url);
        let (socket, _) = tokio::time::timeout(Duration::from_secs(20), handshake)
            .await
            .expect("the handshake is answered")
            .expect("the handshake is accepted");
        // `$connect` ran before the handshake was answered, so the record is there.
        let connection_id = api
            .stack
            .ws_api()
            .connection_ids()
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("the new connection's id");
        Self {
            user,
            session,
            socket,
            connection_id,
        }
    }
}
