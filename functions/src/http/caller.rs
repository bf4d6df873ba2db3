//! The `Caller` extractor: the principal the authorizer let through, from the API Gateway
//! request context (in Lambda and in the local emulator alike).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use session_core::auth::Principal;

use super::App;
use super::problem::ApiError;
use crate::caller::{CallerContext, from_authorizer};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(RequestContext::ApiGatewayV2(context)) = parts.request_context_ref() else {
            return Err(ApiError::Unauthorized);
        };
        let fields = context
            .authorizer
            .as_ref()
            .map(|a| &a.fields)
            .ok_or(ApiError::Unauthorized)?;
        let caller: CallerContext = from_authorizer(fields).ok_or(ApiError::Unauthorized)?;
        caller
            .principal(app.clock.now())
            .map(Caller)
            .ok_or(ApiError::Unauthorized)
    }
}
