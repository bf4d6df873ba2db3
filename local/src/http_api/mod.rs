//! An API Gateway HTTP API on loopback. Each request goes the way it goes in AWS: route
//! selection on the routes of the OpenAPI document (and `$default`, when the table has it:
//! everything else, to the same integration); for secured routes the REQUEST authorizer,
//! invoked with its real payload 2.0 event (identity source `Authorization`: missing → 401,
//! refused → 403); then the integration, invoked with the real payload 2.0 event through the
//! same `lambda_http` adapter Lambda uses; then the payload 2.0 response back to HTTP. API
//! Gateway's own answers keep its shape: `{"message": "Not Found"}` and friends. With a CORS
//! configuration (`cors`), preflights are the gateway's to answer and every response to an
//! allowed origin carries the configured headers, as in AWS.
//!
//! Not emulated: authorizer result caching (the token validator has its own cache), custom
//! domains and stage variables.

mod cors;
mod event;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use session_core::auth::TokenValidator;
use tokio::net::TcpListener;
use tracing::{Instrument as _, error, info, warn};

pub use cors::CorsConfiguration;
use event::RequestFacts;
pub use routes::{DEFAULT_ROUTE, Matched, Route, RouteError, RouteTable};

/// API Gateway's limits that the emulator enforces.
#[derive(Debug, Clone)]
pub struct HttpApiSettings {
    /// The integration timeout (API Gateway's maximum is 30 s): 503 past it.
    pub integration_timeout: Duration,
    /// The largest request body (API Gateway's is 10 MB): 413 past it.
    pub max_body_bytes: usize,
    /// The API's CORS configuration (off unless an origin is allowed); the local stack allows
    /// the web page's origin.
    pub cors: CorsConfiguration,
}

impl Default for HttpApiSettings {
    fn default() -> Self {
        Self {
            integration_timeout: Duration::from_secs(30),
            max_body_bytes: 10 * 1024 * 1024,
            cors: CorsConfiguration::default(),
        }
    }
}

/// The emulated API: its routes, integration, authorizer and local-only extras.
#[derive(Clone)]
pub struct HttpApi {
    routes: Arc<RouteTable>,
    integration: Router,
    authorizer: Arc<dyn TokenValidator>,
    settings: HttpApiSettings,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("routes", &self.routes)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HttpApi {
    /// An API with `routes`, whose integration is `integration` (the REST Lambda's router) and
    /// whose authorizer asks `authorizer`.
    pub fn new(
        routes: RouteTable,
        integration: Router,
        authorizer: Arc<dyn TokenValidator>,
        settings: HttpApiSettings,
    ) -> Self {
        Self {
            routes: Arc::new(routes),
            integration,
            authorizer,
            settings,
        }
    }

    /// The front door as a router: `extra` routes (the local stack's `/_local/...`) first,
    /// everything else through the emulated gateway; CORS, if configured, in front of both (so
    /// a page may mint a dev token too).
    pub fn into_router(self, extra: Router) -> Router {
        let cors = cors::Cors {
            config: Arc::new(self.settings.cors.clone()),
            routes: Arc::clone(&self.routes),
        };
        extra
            .fallback_service(Router::new().fallback(gateway).with_state(self))
            .layer(axum::middleware::from_fn_with_state(cors, cors::apply))
    }

    /// Serves the API (with `extra` routes) on `listener` until `shutdown` resolves.
    ///
    /// # Errors
    /// The listener failed.
    pub async fn serve(
        self,
        listener: TcpListener,
        extra: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .into_router(extra)
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }

    async fn authorize(
        &self,
        facts: &RequestFacts<'_>,
    ) -> Result<serde_json::Value, Response<Body>> {
        let Some(authorization) = facts
            .parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        else {
            // The identity source is missing: API Gateway refuses without calling the authorizer.
            return Err(gateway_answer(StatusCode::UNAUTHORIZED, "Unauthorized"));
        };
        let event: ApiGatewayV2CustomAuthorizerV2Request =
            serde_json::from_value(facts.authorizer_event(authorization)).map_err(|e| {
                error!(error = %e, "authorizer event does not decode");
                internal_error()
            })?;
        let verdict =
            session_functions::http_authorizer::authorize(self.authorizer.as_ref(), &event)
                .await
                .map_err(|e| {
                    error!(error = %e, "authorizer failed");
                    internal_error()
                })?;
        let verdict = serde_json::to_value(verdict).map_err(|_| internal_error())?;
        if verdict["isAuthorized"] != serde_json::Value::Bool(true) {
            return Err(gateway_answer(StatusCode::FORBIDDEN, "Forbidden"));
        }
        Ok(verdict
            .get("context")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})))
    }
}

/// Every request that no extra route took: route, authorize, integrate.
async fn gateway(
    State(api): State<HttpApi>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response<Body> {
    let request_id = ulid::Ulid::new().to_string();
    // The same id as the integration's span: one request's lines, gateway and handler, match.
    let span = tracing::info_span!("gateway", request_id = %request_id);
    let mut response = handle(&api, source, &request_id, request)
        .instrument(span)
        .await;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", id);
    }
    response
}

async fn handle(
    api: &HttpApi,
    source: SocketAddr,
    request_id: &str,
    request: Request,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, api.settings.max_body_bytes).await else {
        return gateway_answer(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let Some(matched) = api.routes.select(&parts.method, parts.uri.path()) else {
        return gateway_answer(StatusCode::NOT_FOUND, "Not Found");
    };
    let facts = RequestFacts::new(
        &parts,
        &body,
        &matched,
        source,
        request_id,
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
    );
    let context = if matched.route.secured {
        match api.authorize(&facts).await {
            Ok(context) => Some(context),
            Err(refusal) => return refusal,
        }
    } else {
        None
    };
    let event = facts.request_event(context.as_ref());
    let invocation = session_functions::invoke::invoke(api.integration.clone(), event);
    let payload = match tokio::time::timeout(api.settings.integration_timeout, invocation).await {
        Ok(Ok(payload)) => payload,
        Ok(Err(e)) => {
            error!(error = %e, "integration failed");
            return internal_error();
        }
        Err(_) => {
            warn!(route = %matched.route.key(), "integration timed out");
            return gateway_answer(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
    };
    match event::http_response(&payload) {
        Ok(response) => {
            info!(route = %matched.route.key(), status = response.status().as_u16(), "request");
            response
        }
        Err(e) => {
            error!(error = %e, "integration response");
            internal_error()
        }
    }
}

/// An answer of API Gateway itself: `{"message": "..."}` (both emulated APIs answer so).
pub(crate) fn gateway_answer(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(
        serde_json::json!({ "message": message }).to_string(),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// API Gateway's 500.
pub(crate) fn internal_error() -> Response<Body> {
    gateway_answer(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}
