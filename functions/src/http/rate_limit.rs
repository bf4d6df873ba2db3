//! Rate limits at the REST door: an authenticated request is counted against its user in the
//! class of the route it matched (reads, writes, ticket issuing, simulator start/stop), and
//! every request it lets through against its source address (`requestContext.http.sourceIp`,
//! the anonymous routes included). Over a limit: `429` `rate-limited` with `Retry-After`,
//! `RateLimit-Policy` and `RateLimit` (see `session_core::ratelimit`).

use std::net::IpAddr;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use session_core::domain::UserId;
use session_core::ratelimit::{LimitClass, RateLimited, Subject};

use super::App;
use super::problem::ApiError;
use crate::caller_context::{CallerContext, from_authorizer};

/// The per-user class of a route, `None` for the anonymous ones and unmatched paths.
fn class_of(method: &Method, route: &str) -> Option<LimitClass> {
    match (method, route) {
        (_, "/v1/health" | "/v1/openapi.json") => None,
        (&Method::GET, _) => Some(LimitClass::Reads),
        (
            &Method::POST,
            "/v1/sessions/{session_id}/tickets" | "/v1/sessions/{session_id}/reconnect",
        ) => Some(LimitClass::Tickets),
        (&Method::POST, "/v1/sessions/{session_id}/simulators")
        | (&Method::DELETE, "/v1/sessions/{session_id}/simulators/{simulator_id}") => {
            Some(LimitClass::SimulatorControl)
        }
        _ => Some(LimitClass::Writes),
    }
}

/// The client's address: the one the edge saw, behind CloudFront (`edge::ViewerAddress`, set
/// only on requests the edge guard let through), else the source address API Gateway saw (the
/// emulator passes the socket's).
fn source_address(parts: &Parts) -> Option<IpAddr> {
    if let Some(super::edge::ViewerAddress(address)) = parts.extensions.get() {
        return Some(*address);
    }
    match parts.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

/// The user the authorizer let through, read without the caller's other checks (revocation,
/// scopes): those are the handler's, and a refused caller is counted all the same.
pub(super) fn user_of(parts: &Parts, app: &App) -> Option<UserId> {
    let RequestContext::ApiGatewayV2(context) = parts.request_context_ref()? else {
        return None;
    };
    let caller: CallerContext = from_authorizer(&context.authorizer.as_ref()?.fields)?;
    Some(caller.principal(app.clock.now())?.user)
}

/// The user's limit first: a flooding user is then refused by this process's pre-filter without
/// a store call for its address either.
async fn check(app: &App, parts: &Parts) -> Result<(), RateLimited> {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let class = route.and_then(|route| class_of(&parts.method, route));
    if let (Some(class), Some(user)) = (class, user_of(parts, app)) {
        app.limiter.check(class, Subject::User(&user)).await?;
    }
    if let Some(address) = source_address(parts) {
        app.limiter
            .check(LimitClass::Address, Subject::Address(address))
            .await?;
    }
    Ok(())
}

/// The middleware: refuses a request over a limit before any handler runs.
pub(super) async fn limit(State(app): State<App>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(refusal) = check(&app, &parts).await {
        return ApiError::RateLimited(refusal).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_into_their_classes() {
        let cases = [
            (Method::GET, "/v1/sessions", Some(LimitClass::Reads)),
            (Method::POST, "/v1/sessions", Some(LimitClass::Writes)),
            (
                Method::DELETE,
                "/v1/sessions/{session_id}",
                Some(LimitClass::Writes),
            ),
            (
                Method::POST,
                "/v1/sessions/{session_id}/tickets",
                Some(LimitClass::Tickets),
            ),
            (
                Method::POST,
                "/v1/sessions/{session_id}/reconnect",
                Some(LimitClass::Tickets),
            ),
            (
                Method::POST,
                "/v1/sessions/{session_id}/simulators",
                Some(LimitClass::SimulatorControl),
            ),
            (
                Method::DELETE,
                "/v1/sessions/{session_id}/simulators/{simulator_id}",
                Some(LimitClass::SimulatorControl),
            ),
            (
                Method::GET,
                "/v1/sessions/{session_id}/simulators/{simulator_id}/book",
                Some(LimitClass::Reads),
            ),
            (Method::GET, "/v1/health", None),
            (Method::GET, "/v1/openapi.json", None),
        ];
        for (method, route, class) in cases {
            assert_eq!(class_of(&method, route), class, "{method} {route}");
        }
    }
}
