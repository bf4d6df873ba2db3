//! Builds the functions' dependencies from settings, once per process (a Lambda's cold start):
//! only what every request needs, and no I/O — gRPC channels connect on first use.

use std::sync::Arc;

use session_core::auth::GrpcTokenValidator;
use session_core::backend::{GrpcSimulatorBackend, SimulatorBackend};
use session_core::clock::{Clock, SystemClock};
use session_core::component::Component;
use session_core::config::Settings;
use session_core::ratelimit::RateLimiter;
use session_core::service::SessionService;
use session_core::store::{self, SharedStore};

use crate::http::App;

/// Why the functions could not be wired.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// A backend URL is not a valid endpoint.
    #[error("{setting}: {source}")]
    Endpoint {
        /// The setting holding the URL.
        setting: &'static str,
        /// What is wrong.
        source: tonic::transport::Error,
    },
}

/// Why a Lambda could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The settings are invalid (the error names the setting).
    #[error("configuration: {0}")]
    Config(#[from] session_core::config::ConfigError),
    /// Logs could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(#[from] session_core::telemetry::TelemetryError),
}

/// What every Lambda does first, once per cold start, as `component`: read the settings
/// (defaults, then `SESSION_*` variables), set up telemetry, and read the secrets the settings
/// name from Secrets Manager (the backends' client key, the ticket keys).
///
/// # Errors
/// A setting is invalid (the key's secret unreadable among them), or telemetry was already set
/// up.
pub async fn init(component: Component) -> Result<Settings, InitError> {
    let mut settings = Settings::load(None)?;
    session_core::telemetry::init(&settings.telemetry, component.name())?;
    session_core::secrets::load_secrets(&mut settings, || {
        session_core::secrets::client_from_env(component)
    })
    .await?;
    Ok(settings)
}

/// The REST API's state from `settings`, over `store` and `backend` (tests and the local stack
/// pass their own; [`rest_api`] builds them from settings).
pub fn app(
    settings: &Settings,
    store: SharedStore,
    backend: Arc<dyn SimulatorBackend>,
    clock: Arc<dyn Clock>,
) -> App {
    let service = SessionService::from_settings(settings, store.clone(), backend, clock.clone());
    App {
        service,
        limiter: Arc::new(RateLimiter::new(
            &settings.rate_limits,
            store.clone(),
            clock.clone(),
        )),
        store,
        clock,
    }
}

/// The REST API's state, everything built from `settings`.
///
/// # Errors
/// A backend URL is invalid.
pub async fn rest_api(settings: &Settings) -> Result<App, WiringError> {
    rest_api_as(settings, Component::RestApi).await
}

/// The REST API's state as `component` builds it (its AWS calls name it).
async fn rest_api_as(settings: &Settings, component: Component) -> Result<App, WiringError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = store::from_settings(&settings.store, clock.clone(), component).await;
    Ok(app(settings, store, simulator_backend(settings)?, clock))
}

/// The session service alone, everything built from `settings`: what the WebSocket functions
/// need (they answer on their connection; the simulator client stays lazy and unused).
///
/// # Errors
/// A backend URL is invalid.
pub async fn service(
    settings: &Settings,
    component: Component,
) -> Result<SessionService, WiringError> {
    Ok(rest_api_as(settings, component).await?.service)
}

/// The WebSocket routes' handler from `settings`, over `store`: the rate limits decide in the
/// same store the service uses.
pub fn ws_handler(
    settings: &Settings,
    service: SessionService,
    store: SharedStore,
    clock: Arc<dyn Clock>,
) -> crate::websocket::Handler {
    crate::websocket::Handler {
        service,
        limiter: Arc::new(RateLimiter::new(&settings.rate_limits, store, clock)),
    }
}

/// The WebSocket routes' handler, everything built from `settings`.
///
/// # Errors
/// A backend URL is invalid.
pub async fn ws_handler_from_settings(
    settings: &Settings,
) -> Result<crate::websocket::Handler, WiringError> {
    let app = rest_api_as(settings, Component::WsHandler).await?;
    Ok(crate::websocket::Handler {
        service: app.service,
        limiter: app.limiter,
    })
}

/// The simulator service client of `settings`.
///
/// # Errors
/// `backends.simulator_url` is invalid.
pub fn simulator_backend(settings: &Settings) -> Result<Arc<dyn SimulatorBackend>, WiringError> {
    let backend =
        GrpcSimulatorBackend::from_settings(settings).map_err(|source| WiringError::Endpoint {
            setting: "backends.simulator_url",
            source,
        })?;
    Ok(Arc::new(backend))
}

/// The auth service client of `settings`.
///
/// # Errors
/// `backends.auth_url` is invalid.
pub fn token_validator(settings: &Settings) -> Result<GrpcTokenValidator, WiringError> {
    GrpcTokenValidator::from_settings(settings).map_err(|source| WiringError::Endpoint {
        setting: "backends.auth_url",
        source,
    })
}
