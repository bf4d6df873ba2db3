//! One EMF line per REST request ([`crate::metrics`]): the operation its route names, its
//! outcome from the status, its latency.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};

use session_core::http::problem::MaintenancePause;

use crate::metrics::Emf;

/// Times the request and writes its line.
pub(super) async fn record(State(emf): State<Emf>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let operation = operation(request.method(), path.as_deref());
    let response = next.run(request).await;
    emf.record("rest-api", operation, outcome(&response), started.elapsed());
    response
}

/// The operation of a route: a fixed set, never a path with ids in it.
fn operation(method: &Method, path: Option<&str>) -> &'static str {
    let Some(path) = path else {
        return "NoRoute";
    };
    match (method.as_str(), path) {
        ("POST", "/v1/sessions") => "CreateSession",
        ("GET", "/v1/sessions") => "ListSessions",
        ("GET", "/v1/sessions/{session_id}") => "GetSession",
        ("DELETE", "/v1/sessions/{session_id}") => "CloseSession",
        ("POST", "/v1/sessions/{session_id}/simulators") => "StartSimulator",
        ("GET", "/v1/sessions/{session_id}/simulators/{simulator_id}") => "GetSimulator",
        ("DELETE", "/v1/sessions/{session_id}/simulators/{simulator_id}") => "StopSimulator",
        ("GET", "/v1/sessions/{session_id}/simulators/{simulator_id}/book") => "GetBook",
        ("POST", "/v1/sessions/{session_id}/tickets") => "IssueTicket",
        ("POST", "/v1/sessions/{session_id}/reconnect") => "Reconnect",
        ("POST", "/v1/admin/revocations") => "Revoke",
        _ => "Other",
    }
}

/// The outcome of a response: `ok`, `rate_limited`, `revoked` (a revoked token refused),
/// `denied` (other 401/403), `client_error`, `maintenance` (a write `maintenance_mode` paused:
/// the 5xx alarm leaves these out) or `error`.
fn outcome(response: &Response) -> &'static str {
    let status = response.status();
    let revoked = response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("revoked"));
    match status {
        s if s.is_success() => "ok",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ if revoked => "revoked",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "denied",
        s if s.is_client_error() => "client_error",
        _ if response.extensions().get::<MaintenancePause>().is_some() => "maintenance",
        _ => "error",
    }
}
