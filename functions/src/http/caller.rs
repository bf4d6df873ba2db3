//! The `Caller` extractor: the principal the authorizer let through, from the API Gateway
//! request context (in Lambda and in the local emulator alike), checked here for every route
//! at once: its token not revoked (API Gateway may cache the authorizer's verdict, so the
//! authorizer alone cannot refuse a token revoked since; `401` `token-revoked`) and carrying
//! the scope the route's operation names in the OpenAPI document (`403`
//! `insufficient-scope`).

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use lambda_http::RequestExt as _;
use lambda_http::request::RequestContext;
use session_core::auth::Principal;
use session_core::service::ServiceError;

use super::App;
use super::problem::ApiError;
use super::scopes;
use crate::caller_context::{CallerContext, from_authorizer};

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
        let principal = caller
            .principal(app.clock.now())
            .ok_or(ApiError::Unauthorized)?;
        app.service
            .ensure_not_revoked(&principal.token_id, &principal.user)
            .await?;
        // Fails closed: a route the document does not secure has no business extracting a caller.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let needed = route
            .and_then(|route| scopes::required(&parts.method, route))
            .ok_or_else(|| {
                ApiError::Service(ServiceError::bug(format!(
                    "{} {route:?} names no scope in the OpenAPI document",
                    parts.method
                )))
            })?;
        principal.require(needed.iter().map(String::as_str))?;
        Ok(Caller(principal))
    }
}
