//! One API Gateway HTTP API (payload 2.0) event through the REST router, exactly as
//! `lambda_http::run` handles it in Lambda: the same event decoding, request building and
//! response encoding.
//!
//! The local HTTP API emulator and the `events/` tests call this, so locally the event path is
//! exercised rather than bypassed. It uses `lambda_http::Adapter`, the public (though
//! doc-hidden) service that `lambda_http::run` wraps a router in; nothing else in `lambda_http`
//! turns one event into one response without a Lambda Runtime API to poll.

use axum::Router;
use lambda_http::Service as _;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The payload is not an API Gateway HTTP API (payload 2.0) event.
    #[error("not an API Gateway HTTP API (payload 2.0) event: {0}")]
    Event(#[source] serde_json::Error),
    /// The response could not be encoded (never expected).
    #[error("the response could not be encoded: {0}")]
    Response(#[source] serde_json::Error),
}

/// Handles one event with `router`, returning the response payload API Gateway would receive.
///
/// # Errors
/// The event is not an HTTP API payload 2.0 event.
pub async fn invoke(
    router: Router,
    event: serde_json::Value,
) -> Result<serde_json::Value, InvokeError> {
    let request: LambdaRequest = serde_json::from_value(event).map_err(InvokeError::Event)?;
    // The adapter is not `Send` (it names the response type through a reference), so only its
    // future may live across the await. An axum router is always ready: no `poll_ready` needed.
    let future = {
        let mut adapter = Adapter::from(router);
        adapter.call(LambdaEvent::new(request, Context::default()))
    };
    let response = match future.await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    serde_json::to_value(response).map_err(InvokeError::Response)
}
