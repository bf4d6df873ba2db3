//! Builds the functions' dependencies from settings, once per process (a Lambda's cold start):
//! only what every request needs, and no I/O — gRPC channels connect on first use.

use std::sync::Arc;

use session_core::auth::GrpcTokenValidator;
use session_core::backend::{GrpcSimulatorBackend, RoutedSimulatorBackend, SimulatorBackend};
use session_core::clock::{Clock, SystemClock};
use session_core::component::Component;
use session_core::config::Settings;
use session_core::discovery::{self, Backend};
use session_core::ratelimit::RateLimiter;
use session_core::service::{ConnectAuthorizer, ConnectionService, ServiceParts, SessionService};
use session_core::store::ports::PortUse;
use session_core::store::{self, SharedStore};

use session_core::appconfig::{Flags, live_settings};

use crate::http::App;
use crate::live::Rebuilt;

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

/// The store methods the REST API calls: its use cases', its idempotency keys', its rate
/// limits'. Its IAM role grants exactly their DynamoDB actions (`tests/tests/infra.rs`), as do
/// the other functions' roles theirs.
pub const REST_API_PORTS: &[&[PortUse]] = &[SessionService::PORTS, App::PORTS, RateLimiter::PORTS];
/// The HTTP authorizer calls no store: it validates bearer tokens with the auth service.
pub const AUTHORIZER_PORTS: &[&[PortUse]] = &[];
/// The store methods the WebSocket `$connect` authorizer calls.
pub const WS_AUTHORIZER_PORTS: &[&[PortUse]] = &[ConnectAuthorizer::PORTS];
/// The store methods the WebSocket routes' handler calls.
pub const WS_HANDLER_PORTS: &[&[PortUse]] = &[ConnectionService::PORTS, RateLimiter::PORTS];

/// The REST API's state from `settings`, over `store` and `backend` (tests and the local stack
/// pass their own; [`rest_api`] builds them from settings).
pub fn app(
    settings: &Settings,
    store: SharedStore,
    backend: Arc<dyn SimulatorBackend>,
    clock: Arc<dyn Clock>,
) -> App {
    let flags = Flags::from_settings(&settings.appconfig);
    app_with_flags(settings, store, backend, clock, flags)
}

/// The REST API's router, rebuilt from the runtime settings in force at the first request
/// after they change (`appconfig.settings_profile`; start-up settings only without an agent):
/// limits and rate-limit quotas follow the document. The flags are polled once for all.
pub fn live_rest_router(
    settings: &Settings,
    store: SharedStore,
    backend: Arc<dyn SimulatorBackend>,
    clock: Arc<dyn Clock>,
) -> axum::Router {
    let flags = Flags::from_settings(&settings.appconfig);
    let routers = Rebuilt::new(&live_settings(settings), move |settings| {
        crate::http::router(app_with_flags(
            settings,
            store.clone(),
            backend.clone(),
            clock.clone(),
            flags.clone(),
        ))
    });
    crate::live::live_router(Arc::new(routers))
}

/// [`app`], its feature flags given.
fn app_with_flags(
    settings: &Settings,
    store: SharedStore,
    backend: Arc<dyn SimulatorBackend>,
    clock: Arc<dyn Clock>,
    flags: Arc<Flags>,
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
        flags,
    }
}

/// The REST API's router, everything built from `settings`, following the runtime settings
/// ([`live_rest_router`]).
///
/// # Errors
/// A backend URL is invalid.
pub async fn live_rest_api(settings: &Settings) -> Result<axum::Router, WiringError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = store::from_settings(
        &settings.store,
        &settings.regions,
        clock.clone(),
        Component::RestApi,
    )
    .await;
    let store = session_core::cache::wrap(store, &settings.cache, clock.clone());
    Ok(live_rest_router(
        settings,
        store,
        simulator_backend_of(settings, Component::RestApi)?,
        clock,
    ))
}

/// What `component`'s use cases are built from, everything from `settings` (the simulator
/// client stays lazy: the WebSocket functions never call it).
///
/// # Errors
/// A backend URL is invalid.
async fn parts(settings: &Settings, component: Component) -> Result<ServiceParts, WiringError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store =
        store::from_settings(&settings.store, &settings.regions, clock.clone(), component).await;
    Ok(ServiceParts::from_settings(
        settings,
        store,
        // Static even with discovery on: no Cloud Map calls for a client never called.
        Arc::new(
            GrpcSimulatorBackend::from_settings(settings).map_err(|source| {
                WiringError::Endpoint {
                    setting: "backends.simulator_url",
                    source,
                }
            })?,
        ),
        clock,
    ))
}

/// The WebSocket `$connect` authorizer's use case, everything built from `settings`.
///
/// # Errors
/// A backend URL is invalid.
pub async fn connect_authorizer(settings: &Settings) -> Result<ConnectAuthorizer, WiringError> {
    Ok(ConnectAuthorizer::new(
        &parts(settings, Component::WsAuthorizer).await?,
    ))
}

/// The WebSocket routes' handler from `settings` over `parts`: the rate limits decide in the
/// same store the use cases use.
pub fn ws_handler(settings: &Settings, parts: &ServiceParts) -> crate::websocket::Handler {
    crate::websocket::Handler {
        service: ConnectionService::new(parts),
        limiter: Arc::new(RateLimiter::new(
            &settings.rate_limits,
            parts.store.clone(),
            parts.clock.clone(),
        )),
    }
}

/// The WebSocket routes' handler, everything built from `settings`, its hot reads (each
/// heartbeat's connection and lease) cached. The `$connect` authorizer's are not: its session
/// read decides whether a ticket is honoured.
///
/// # Errors
/// A backend URL is invalid.
///
/// Rebuilt from the runtime settings in force at the first event after they change (the
/// connection quota, the heartbeat and reconnect tunables, the rate-limit quotas).
pub async fn ws_handler_from_settings(
    settings: &Settings,
) -> Result<Rebuilt<crate::websocket::Handler>, WiringError> {
    let mut parts = parts(settings, Component::WsHandler).await?;
    parts.store = session_core::cache::wrap(parts.store, &settings.cache, parts.clock.clone());
    Ok(live_ws_handler(settings, parts))
}

/// The WebSocket routes' handler over `parts`, rebuilt from the runtime settings in force at
/// the first event after they change (the connection quota, the heartbeat and reconnect
/// tunables, the rate-limit quotas).
pub fn live_ws_handler(
    settings: &Settings,
    parts: ServiceParts,
) -> Rebuilt<crate::websocket::Handler> {
    Rebuilt::new(&live_settings(settings), move |settings| {
        let parts = ServiceParts {
            limits: settings.limits.clone(),
            websocket: settings.websocket.clone(),
            ..parts.clone()
        };
        ws_handler(settings, &parts)
    })
}

/// The simulator service client of `settings`, as the REST API builds it
/// ([`simulator_backend_of`]).
///
/// # Errors
/// `backends.simulator_url` is invalid.
pub fn simulator_backend(settings: &Settings) -> Result<Arc<dyn SimulatorBackend>, WiringError> {
    simulator_backend_of(settings, Component::RestApi)
}

/// The simulator service client of `settings` for `component`: the one static server, or,
/// with `discovery.mode` set, the discovered servers (its Cloud Map calls naming
/// `component`). Must be called on a Tokio runtime when discovery is on.
///
/// # Errors
/// `backends.simulator_url` is invalid.
pub fn simulator_backend_of(
    settings: &Settings,
    component: Component,
) -> Result<Arc<dyn SimulatorBackend>, WiringError> {
    let endpoint = |source| WiringError::Endpoint {
        setting: "backends.simulator_url",
        source,
    };
    Ok(
        match discovery::watch_from_settings(settings, Backend::Simulator, component) {
            Some(servers) => {
                Arc::new(RoutedSimulatorBackend::new(servers, settings).map_err(endpoint)?)
            }
            None => Arc::new(GrpcSimulatorBackend::from_settings(settings).map_err(endpoint)?),
        },
    )
}

/// The auth service client of `settings`, as the HTTP authorizer builds it: the one static
/// URL, or balanced over the discovered replicas (Cloud Map calls naming the authorizer).
///
/// # Errors
/// `backends.auth_url` is invalid.
pub fn token_validator(settings: &Settings) -> Result<GrpcTokenValidator, WiringError> {
    if let Some(servers) =
        discovery::watch_from_settings(settings, Backend::Auth, Component::Authorizer)
    {
        return Ok(GrpcTokenValidator::balanced(settings, &servers));
    }
    GrpcTokenValidator::from_settings(settings).map_err(|source| WiringError::Endpoint {
        setting: "backends.auth_url",
        source,
    })
}
