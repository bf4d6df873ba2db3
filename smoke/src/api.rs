//! The REST calls of a run, as `docs/openapi.json` documents them: each checks the status it
//! expects and reads only the fields the smoke test uses.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use session_core::domain::{SessionStatus, SimulatorStatus, Transport};
use url::Url;

use crate::client::HttpClient;
use crate::error::{StepError, shown};

/// The largest answer read: API answers are a few KiB.
const MAX_BODY_BYTES: usize = 1 << 20;

/// A session, as read back.
#[derive(Debug, Deserialize)]
pub struct SessionBody {
    pub session_id: String,
    pub status: SessionStatus,
}

/// A problem document (`application/problem+json`).
#[derive(Debug, Deserialize)]
pub struct ProblemBody {
    /// `urn:session-service:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// A simulator.
#[derive(Debug, Deserialize)]
pub struct SimulatorBody {
    pub simulator_id: String,
    pub status: SimulatorStatus,
    pub reason: Option<String>,
}

/// A connect ticket.
#[derive(Debug, Deserialize)]
pub struct TicketBody {
    pub url: String,
}

/// The local stack's dev-only token route's answer.
#[derive(Debug, Deserialize)]
struct TokenBody {
    token: String,
}

/// Mints a token at `token_url` for `subject`.
pub async fn mint_token(
    http: &HttpClient,
    token_url: &Url,
    subject: &str,
) -> Result<SecretString, StepError> {
    let body = json!({ "sub": subject });
    let response = send(http, &Method::POST, token_url, &[], Some(&body)).await?;
    let token: TokenBody = read(
        response,
        &Method::POST,
        token_url,
        &[StatusCode::OK, StatusCode::CREATED],
    )
    .await?;
    Ok(SecretString::from(token.token))
}

/// The HTTP API, called as one user.
#[derive(Debug, Clone)]
pub struct Api {
    http: HttpClient,
    /// `http_api` without a trailing slash: a stage path (`/prod`) is kept.
    base: String,
    token: SecretString,
}

impl Api {
    /// The API at `http_api`, called with `token`.
    pub fn new(http: HttpClient, http_api: &Url, token: SecretString) -> Self {
        Self {
            http,
            base: http_api.as_str().trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// `POST /v1/sessions` with an Idempotency-Key: 201.
    pub async fn create_session(&self, key: &str) -> Result<SessionBody, StepError> {
        let body = json!({ "name": "smoke test" });
        let key = (HeaderName::from_static("idempotency-key"), key.to_owned());
        let created = [StatusCode::CREATED];
        self.call(Method::POST, "/v1/sessions", &[key], Some(&body), &created)
            .await
    }

    /// `GET /v1/sessions/{id}` of a closed session: 404, its problem type `deleted`.
    pub async fn closed_session(&self, session: &str) -> Result<ProblemBody, StepError> {
        let path = format!("/v1/sessions/{session}");
        self.call(Method::GET, &path, &[], None, &[StatusCode::NOT_FOUND])
            .await
    }

    /// `DELETE /v1/sessions/{id}`: 200.
    pub async fn close_session(&self, session: &str) -> Result<SessionBody, StepError> {
        let path = format!("/v1/sessions/{session}");
        self.call(Method::DELETE, &path, &[], None, &[StatusCode::OK])
            .await
    }

    /// `POST /v1/sessions/{id}/simulators`: 202.
    pub async fn start_simulator(
        &self,
        session: &str,
        symbols: &[String],
        events_per_second: u32,
    ) -> Result<SimulatorBody, StepError> {
        let path = format!("/v1/sessions/{session}/simulators");
        let body = json!({ "symbols": symbols, "events_per_second": events_per_second });
        self.call(
            Method::POST,
            &path,
            &[],
            Some(&body),
            &[StatusCode::ACCEPTED],
        )
        .await
    }

    /// `GET /v1/sessions/{id}/simulators/{id}`: 200.
    pub async fn simulator(
        &self,
        session: &str,
        simulator: &str,
    ) -> Result<SimulatorBody, StepError> {
        let path = format!("/v1/sessions/{session}/simulators/{simulator}");
        self.call(Method::GET, &path, &[], None, &[StatusCode::OK])
            .await
    }

    /// `DELETE /v1/sessions/{id}/simulators/{id}`: 200 (stopped) or 202 (stopping).
    pub async fn stop_simulator(
        &self,
        session: &str,
        simulator: &str,
    ) -> Result<SimulatorBody, StepError> {
        let path = format!("/v1/sessions/{session}/simulators/{simulator}");
        let accepted = [StatusCode::OK, StatusCode::ACCEPTED];
        self.call(Method::DELETE, &path, &[], None, &accepted).await
    }

    /// `POST /v1/sessions/{id}/tickets`: 201; the URL to open.
    pub async fn ticket(&self, session: &str, transport: Transport) -> Result<Url, StepError> {
        let path = format!("/v1/sessions/{session}/tickets");
        let body = json!({ "transport": transport });
        let ticket: TicketBody = self
            .call(
                Method::POST,
                &path,
                &[],
                Some(&body),
                &[StatusCode::CREATED],
            )
            .await?;
        Url::parse(&ticket.url).map_err(|e| StepError::Answer {
            method: "POST",
            url: format!("{}{path}", self.base),
            reason: format!("the ticket's url {:?} is not a URL: {e}", ticket.url),
        })
    }

    /// `POST /v1/sessions/{id}/reconnect`: 200; the fresh ticket's URL, which resumes after
    /// `last_event_id` (or starts from a snapshot without one).
    pub async fn reconnect(
        &self,
        session: &str,
        transport: Transport,
        last_event_id: Option<&str>,
    ) -> Result<Url, StepError> {
        let path = format!("/v1/sessions/{session}/reconnect");
        let body = json!({ "transport": transport, "last_event_id": last_event_id });
        let ticket: TicketBody = self
            .call(Method::POST, &path, &[], Some(&body), &[StatusCode::OK])
            .await?;
        Url::parse(&ticket.url).map_err(|e| StepError::Answer {
            method: "POST",
            url: format!("{}{path}", self.base),
            reason: format!("the ticket's url {:?} is not a URL: {e}", ticket.url),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, String)],
        body: Option<&Value>,
        expected: &[StatusCode],
    ) -> Result<T, StepError> {
        let url = Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| StepError::Check(format!("{}{path} is not a URL: {e}", self.base)))?;
        let mut headers = headers.to_vec();
        headers.push((
            AUTHORIZATION,
            format!("Bearer {}", self.token.expose_secret()),
        ));
        let response = send(&self.http, &method, &url, &headers, body).await?;
        read(response, &method, &url, expected).await
    }
}

/// Sends a request with `headers` and `body` as JSON; the answer's head, its body unread.
pub async fn send(
    http: &HttpClient,
    method: &Method,
    url: &Url,
    headers: &[(HeaderName, String)],
    body: Option<&Value>,
) -> Result<Response<Incoming>, StepError> {
    let name = method_name(method);
    let mut request = Request::builder()
        .method(method.clone())
        .uri(url.as_str())
        .header(
            USER_AGENT,
            concat!("session-smoke/", env!("CARGO_PKG_VERSION")),
        );
    if !headers.iter().any(|(header, _)| header == ACCEPT) {
        request = request.header(ACCEPT, "application/json");
    }
    for (header, value) in headers {
        request = request.header(header, value);
    }
    let bytes = match body {
        Some(body) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(bytes))
        .map_err(|e| StepError::unreachable(name, url, &e))?;
    http.request(request)
        .await
        .map_err(|e| StepError::unreachable(name, url, &e))
}

/// Reads an answer's body (at most [`MAX_BODY_BYTES`]).
pub async fn body(
    response: Response<Incoming>,
    method: &Method,
    url: &Url,
) -> Result<Bytes, StepError> {
    Limited::new(response.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| StepError::unreachable(method_name(method), url, e.as_ref()))
}

/// The answer's body as `T`; an answer with another status than `expected` is an error with
/// the problem document's type and detail (or the body's start), a body that does not parse
/// too.
async fn read<T: DeserializeOwned>(
    response: Response<Incoming>,
    method: &Method,
    url: &Url,
    expected: &[StatusCode],
) -> Result<T, StepError> {
    let status = response.status();
    let bytes = body(response, method, url).await?;
    let method = method_name(method);
    if !expected.contains(&status) {
        return Err(StepError::Status {
            method,
            url: shown(url),
            status: status.as_u16(),
            detail: problem(&bytes),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| StepError::Answer {
        method,
        url: shown(url),
        reason: format!("{e} in {}", excerpt(&bytes)),
    })
}

/// The method as printed.
pub fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

/// What an error answer says: a problem document's type and detail, API Gateway's `message`,
/// or the body's start.
pub fn problem(bytes: &[u8]) -> String {
    let document: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    match (document["type"].as_str(), document["detail"].as_str()) {
        (Some(kind), Some(detail)) => format!(
            "{}: {detail}",
            kind.strip_prefix("urn:session-service:problem:")
                .unwrap_or(kind)
        ),
        _ => document["message"]
            .as_str()
            .map_or_else(|| excerpt(bytes), str::to_owned),
    }
}

/// At most 200 characters of `bytes`, as text.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "an empty body".to_owned();
    }
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_is_summed_up_by_its_problem_type_and_detail_or_its_message() {
        let document = br#"{"type":"urn:session-service:problem:dependency-unavailable","title":"x","status":503,"detail":"the simulator backend is unavailable"}"#;
        assert_eq!(
            problem(document),
            "dependency-unavailable: the simulator backend is unavailable"
        );
        assert_eq!(problem(br#"{"message":"Unauthorized"}"#), "Unauthorized");
        assert_eq!(
            problem(b"<html>Bad gateway</html>"),
            "\"<html>Bad gateway</html>\""
        );
        assert_eq!(problem(b""), "an empty body");
        assert!(problem("é".repeat(300).as_bytes()).ends_with("…"));
    }
}
