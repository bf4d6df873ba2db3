//! The span every REST request runs in: `request_id` (API Gateway's `requestContext.requestId`,
//! which it also returns as `apigw-requestid`) and `session_id` (from the path, when the route
//! names one), so each line a handler logs carries both (`docs/architecture.md`, "Configuration
//! and telemetry").

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use tracing::Instrument as _;
use tracing::field::Empty;

/// Runs the rest of the request in its span.
pub(super) async fn in_span(
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    };
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_deref().unwrap_or(""),
        session_id = Empty,
        method = %request.method(),
        component = "rest-api",
        trace_id = Empty,
        span_id = Empty,
    );
    // The caller's trace (the web page sends a `traceparent`), else a new one.
    session_core::telemetry::continue_trace(&span, request.headers());
    // As the client sent it (a handler refuses a malformed one): a field value, nothing more.
    if let Some((_, session)) = params
        .iter()
        .flat_map(|p| p.iter())
        .find(|(name, _)| *name == "session_id")
    {
        span.record("session_id", session);
    }
    next.run(request).instrument(span).await
}
