//! `maintenance_mode`: while the flag is on for the caller, REST writes (creating and closing
//! sessions, starting and stopping simulators) answer `503` `maintenance` with `Retry-After`
//! (the flags' poll interval: the soonest a flip back is seen). Reads, tickets and reconnects
//! (so streams go on), revocations (a security action) and the anonymous routes are never
//! refused; nor are streams and WebSockets, which this router does not serve.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use session_core::appconfig::MAINTENANCE_MODE;

use super::App;
use super::problem::ApiError;
use super::rate_limit::user_of;

/// Whether `maintenance_mode` pauses `method` on `route`.
pub(super) fn paused(method: &Method, route: &str) -> bool {
    (method == Method::POST || method == Method::DELETE)
        && !matches!(
            route,
            "/v1/sessions/{session_id}/tickets"
                | "/v1/sessions/{session_id}/reconnect"
                | "/v1/admin/revocations"
        )
}

/// Refuses a paused write of a user the flag is on for; lets everything else through.
pub(super) async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if route.is_some_and(|route| paused(&parts.method, route))
        && let Some(user) = user_of(&parts, &app)
        && app.flags.is_on(MAINTENANCE_MODE, user.as_str())
    {
        return ApiError::Maintenance {
            retry_after_secs: app.flags.poll_interval().as_secs().max(1),
        }
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
