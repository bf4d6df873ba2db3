//! The API Gateway HTTP API REQUEST authorizer (payload 2.0, simple responses): validates the
//! bearer token with the auth service and hands the caller to the handlers as its context.
//!
//! A rejected or missing token is `isAuthorized: false` (API Gateway answers 403; with no
//! `Authorization` header at all it answers 401 without calling us). An auth service that cannot
//! be asked is an error, so API Gateway answers 500 and does not cache a verdict.

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use session_core::auth::{AuthError, TokenValidator};
use tracing::{Instrument as _, info};

use crate::caller_context::CallerContext;

/// The authorizer's answer.
pub type AuthorizerResponse = ApiGatewayV2CustomAuthorizerSimpleResponse<Option<CallerContext>>;

/// The auth service could not decide; API Gateway answers 500 and caches nothing.
#[derive(Debug, thiserror::Error)]
#[error("the auth service could not decide: {0}")]
pub struct AuthorizerError(#[from] AuthError);

impl From<AuthorizerError> for lambda_runtime::Diagnostic {
    fn from(e: AuthorizerError) -> Self {
        Self {
            error_type: "AuthServiceUnavailable".to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Decides one request.
///
/// # Errors
/// The auth service could not be asked.
pub async fn authorize(
    validator: &dyn TokenValidator,
    event: &ApiGatewayV2CustomAuthorizerV2Request,
) -> Result<AuthorizerResponse, AuthorizerError> {
    authorize_with_metrics(validator, event, &crate::metrics::Emf::stdout()).await
}

/// The same, its EMF line (operation `Authorize`, outcome `allow`, `deny` or `error`) written
/// to `emf`.
///
/// # Errors
/// The auth service could not be asked.
pub async fn authorize_with_metrics(
    validator: &dyn TokenValidator,
    event: &ApiGatewayV2CustomAuthorizerV2Request,
    emf: &crate::metrics::Emf,
) -> Result<AuthorizerResponse, AuthorizerError> {
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "authorize",
        request_id = event.request_context.request_id.as_deref().unwrap_or(""),
        route = event.route_key.as_deref().unwrap_or(""),
        component = "authorizer",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    // The request's `traceparent` (API Gateway passes the headers on), else a new trace. Set
    // before the span is entered: a started span keeps its parent.
    session_core::telemetry::continue_trace(&span, &event.headers);
    let verdict = decide(validator, event).instrument(span).await;
    let outcome = match &verdict {
        Ok(response) if response.is_authorized => "allow",
        Ok(_) => "deny",
        Err(_) => "error",
    };
    emf.record("authorizer", "Authorize", outcome, started.elapsed());
    verdict
}

async fn decide(
    validator: &dyn TokenValidator,
    event: &ApiGatewayV2CustomAuthorizerV2Request,
) -> Result<AuthorizerResponse, AuthorizerError> {
    let token = event
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        info!(reason = "no_bearer_token", "request refused");
        return Ok(refuse());
    };
    match validator.validate(token).await {
        Ok(principal) => Ok(verdict(true, Some(CallerContext::from(&principal)))),
        Err(AuthError::Rejected { reason }) => {
            info!(reason, "request refused");
            Ok(refuse())
        }
        Err(e) => Err(e.into()),
    }
}

fn refuse() -> AuthorizerResponse {
    verdict(false, None)
}

// The response type is `#[non_exhaustive]`: it can only be built from its default.
fn verdict(is_authorized: bool, context: Option<CallerContext>) -> AuthorizerResponse {
    let mut response = AuthorizerResponse::default();
    response.is_authorized = is_authorized;
    response.context = context;
    response
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
