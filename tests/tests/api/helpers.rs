//! A local stack on free ports per test, and a small HTTP client that speaks as one user.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use session_core::config::Settings;
use session_local::stack::{Stack, StackSettings};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket client's socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next data or close message of `socket` (pings and pongs skipped), `None` once it ended;
/// panics after `wait`.
pub async fn next_ws_message(socket: &mut Socket, wait: Duration) -> Option<Message> {
    use futures_util::StreamExt as _;
    loop {
        let message = tokio::time::timeout(wait, socket.next())
            .await
            .expect("a message or the end in time");
        match message {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(message)) => return Some(message),
            Some(Err(_)) | None => return None,
        }
    }
}

/// The close code `socket` ends with (data skipped); panics without a close frame or after
/// `wait` for any message.
pub async fn ws_closed_with(
    socket: &mut Socket,
    wait: Duration,
) -> tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode {
    loop {
        match next_ws_message(socket, wait).await {
            Some(Message::Close(Some(frame))) => return frame.code,
            Some(Message::Close(None)) | None => panic!("closed without a close frame"),
            Some(_) => {}
        }
    }
}

/// A running stack and an HTTP client for it.
pub struct TestApi {
    pub stack: Stack,
    pub base: String,
    http: reqwest::Client,
}

/// One answer, with its body as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
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
        service.backends.retry_base_ms = 5;
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

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_with(path, body, &[]).await
    }

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

    /// Polls a simulator until its status is `wanted` or a terminal one; returns the last.
    pub async fn wait_for_simulator(&self, session: &str, id: &str, wanted: &str) -> String {
        let path = format!("/v1/sessions/{session}/simulators/{id}");
        let mut status = String::new();
        // At most 20 a second: within the production limit of reads (`rate_limits.reads`).
        for _ in 0..100 {
            let answer = self.get(&path).await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            status = answer.body["status"].as_str().expect("a status").to_owned();
            if status == wanted || status == "failed" || status == "stopped" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        status
    }
}
