//! The REST control plane as an axum router. In Lambda, `lambda_http` runs it behind API
//! Gateway's HTTP API; locally, the emulator in `session-local` feeds it the same events.
//!
//! Layout: one file per resource (`sessions`, `simulators`, `connect`, `meta`), the shapes in
//! `dto`, request reading in `input`, errors in `problem`, and the OpenAPI document in `openapi`.

mod admin;
mod caller;
mod connect;
pub mod dto;
pub mod edge;
mod home;
mod idempotency;
mod input;
mod maintenance;
mod meta;
mod metrics_layer;
pub mod openapi;
pub use session_core::http::problem;
mod rate_limit;
mod request_span;
mod scopes;
mod sessions;
mod simulators;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use session_core::clock::Clock;
use session_core::service::SessionService;
use session_core::store::IdempotencyStore;
use session_core::store::ports::{Port, PortUse};

pub use caller::Caller;
pub use home::{REPLICA_LAG, SESSION_HOME};
pub use idempotency::{IDEMPOTENCY_KEY, IDEMPOTENCY_REGION, IDEMPOTENT_REPLAYED};
pub use input::MAX_BODY_BYTES;
pub use problem::{ApiError, Problem};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct App {
    /// The use cases.
    pub service: SessionService,
    /// Idempotency records (the only port the HTTP layer calls itself: [`App::PORTS`]).
    pub store: Arc<dyn IdempotencyStore>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Rate limits per user and per source address (`rate_limit.rs`).
    pub limiter: Arc<session_core::ratelimit::RateLimiter>,
    /// Feature flags from AppConfig (`maintenance_mode`, in `maintenance.rs`).
    pub flags: Arc<session_core::appconfig::Flags>,
}

impl App {
    /// The store methods the HTTP layer calls itself (idempotency keys); the use cases' are
    /// [`SessionService::PORTS`], the rate limiter's [`session_core::ratelimit::RateLimiter::PORTS`].
    pub const PORTS: &[PortUse] = &[PortUse {
        port: Port::Idempotency,
        methods: &[
            "claim_idempotency",
            "complete_idempotency",
            "abandon_idempotency",
        ],
    }];
}

/// The API's routes. Paths use API Gateway's `{name}` syntax (axum 0.8 shares it), so the
/// OpenAPI document, API Gateway's route keys and this router name routes the same way.
pub fn router(app: App) -> Router {
    router_with_metrics(app, crate::metrics::Emf::stdout())
}

/// The same, its EMF lines ([`crate::metrics`]) written to `emf` (tests read them).
pub fn router_with_metrics(app: App, emf: crate::metrics::Emf) -> Router {
    Router::new()
        .route("/v1/sessions", get(sessions::list).post(sessions::create))
        .route(
            "/v1/sessions/{session_id}",
            get(sessions::get).delete(sessions::close),
        )
        .route(
            "/v1/sessions/{session_id}/simulators",
            axum::routing::post(simulators::start),
        )
        .route(
            "/v1/sessions/{session_id}/simulators/{simulator_id}",
            get(simulators::get).delete(simulators::stop),
        )
        .route(
            "/v1/sessions/{session_id}/simulators/{simulator_id}/book",
            get(simulators::book),
        )
        .route(
            "/v1/sessions/{session_id}/tickets",
            axum::routing::post(connect::ticket),
        )
        .route(
            "/v1/sessions/{session_id}/reconnect",
            axum::routing::post(connect::reconnect),
        )
        .route("/v1/admin/revocations", axum::routing::post(admin::revoke))
        .route("/v1/health", get(meta::health))
        .route("/v1/openapi.json", get(meta::openapi))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the rate limiter: a paused write still counts against the caller's limits.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            maintenance::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            rate_limit::limit,
        ))
        // Outside the rate limiter, so that its lines carry the request's ids too.
        .layer(axum::middleware::from_fn(request_span::in_span))
        // Around everything, rate limiting included: a `429` is an outcome too.
        .layer(axum::middleware::from_fn_with_state(
            emf,
            metrics_layer::record,
        ))
        .with_state(app)
}
