//! The streamer as an application: its parts, its HTTP routes, and its lifecycle (bind, serve,
//! drain on shutdown). `main` and the local stack run the same [`Streamer`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use session_core::auth::{GrpcTokenValidator, TokenValidator};
use session_core::backend::{GrpcSimulatorBackend, RoutedSimulatorBackend, SimulatorBackend};
use session_core::clock::{Clock, SystemClock};
use session_core::component::Component;
use session_core::config::Settings;
use session_core::discovery::{self, Backend};
use session_core::http::ApiError;
use session_core::ratelimit::RateLimiter;
use session_core::service::{HealthStatus, ServiceParts, StreamService};
use session_core::store::ports::PortUse;
use session_core::store::{self, SharedStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

use crate::admission::Admission;
use crate::beat::RegionBeat;
use crate::error::StreamerError;
use crate::hub::{Hub, HubSettings, UpstreamState};
use crate::push::{ConnectionsApi, PushSettings, Pusher};
use crate::settings::StreamerSettings;
use crate::state::AppState;
use crate::upstream::{Upstream, UpstreamSettings};
use crate::{http1, metrics, sse};

/// The store methods the streamer calls: SSE admission and the tickets' resume chain, the
/// WebSocket push (connections and leases), the stream rate limits, the region's beat.
/// `StreamerRole` in `infra/template.yaml` grants exactly their DynamoDB actions
/// (`tests/tests/infra.rs`).
pub const PORTS: &[&[PortUse]] = &[
    StreamService::PORTS,
    Pusher::PORTS,
    RateLimiter::PORTS,
    RegionBeat::PORTS,
];

/// What the streamer is built from (the local stack passes its own service and validator).
#[derive(Debug, Clone)]
pub struct StreamerParts {
    /// Every shared setting; the streamer reads `streaming`, `backends` and `rate_limits`.
    pub settings: Settings,
    /// The streamer's own settings.
    pub streamer: StreamerSettings,
    /// Admits stream connections (tickets, sessions, simulators).
    pub service: StreamService,
    /// Checks bearer tokens.
    pub tokens: Arc<dyn TokenValidator>,
    /// Session state (connection sets and leases of the WebSocket push).
    pub store: SharedStore,
    /// The `@connections` API; `None`, no WebSocket push.
    pub connections: Option<ConnectionsApi>,
}

impl StreamerParts {
    /// Everything built from `settings` and `streamer` (the store, the backends' clients).
    ///
    /// # Errors
    /// A backend URL is invalid.
    pub async fn from_settings(
        settings: Settings,
        streamer: StreamerSettings,
    ) -> Result<Self, StreamerError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = store::from_settings(
            &settings.store,
            &settings.regions,
            clock.clone(),
            Component::Streamer,
        )
        .await;
        let backend: Arc<dyn SimulatorBackend> = match discovery::watch_from_settings(
            &settings,
            Backend::Simulator,
            Component::Streamer,
        ) {
            Some(servers) => Arc::new(
                RoutedSimulatorBackend::new(servers, &settings)
                    .map_err(StreamerError::SimulatorEndpoint)?,
            ),
            None => Arc::new(
                GrpcSimulatorBackend::from_settings(&settings)
                    .map_err(StreamerError::SimulatorEndpoint)?,
            ),
        };
        let service = StreamService::new(&ServiceParts::from_settings(
            &settings,
            store.clone(),
            backend,
            clock,
        ))
        .with_regions(Arc::new((*settings.regions).clone()));
        let tokens = Arc::new(
            match discovery::watch_from_settings(&settings, Backend::Auth, Component::Streamer) {
                Some(servers) => GrpcTokenValidator::balanced(&settings, &servers),
                None => GrpcTokenValidator::from_settings(&settings)
                    .map_err(StreamerError::AuthEndpoint)?,
            },
        );
        let connections = match &streamer.connections_url {
            Some(url) => Some(ConnectionsApi::from_env(url).await),
            None => None,
        };
        // The push's hot reads (connections, leases) are cached; the stream doors' are not
        // (their session read decides whether a ticket is honoured).
        let store = session_core::cache::wrap(store, &settings.cache, Arc::new(SystemClock));
        Ok(Self {
            settings,
            streamer,
            service,
            tokens,
            store,
            connections,
        })
    }
}

/// A bound, not yet serving, streamer.
#[derive(Debug)]
pub struct Streamer {
    listener: TcpListener,
    state: AppState,
    draining: watch::Sender<bool>,
    pusher: Option<Pusher>,
    /// This region's beat (multi-region only).
    beat: Option<RegionBeat>,
}

impl Streamer {
    /// Binds `streamer.listen` (port 0 picks a free one); see [`Streamer::on`].
    ///
    /// # Errors
    /// The address cannot be bound, or the simulator URL is invalid.
    pub async fn bind(parts: StreamerParts) -> Result<Self, StreamerError> {
        let address = &parts.streamer.listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StreamerError::Bind {
                address: address.clone(),
                source,
            })?;
        Self::on(listener, parts)
    }

    /// A streamer that will serve on `listener` (the local stack binds first, to know its
    /// address).
    ///
    /// # Errors
    /// The simulator URL is invalid.
    pub fn on(listener: TcpListener, parts: StreamerParts) -> Result<Self, StreamerError> {
        let settings = &parts.settings;
        let streamer = &parts.streamer;
        let upstream = Upstream::new(UpstreamSettings::from_config(settings, streamer))
            .map_err(StreamerError::SimulatorEndpoint)?;
        let hub = Hub::new(
            upstream.clone(),
            HubSettings::from_config(settings, streamer),
        );
        let (draining, draining_rx) = watch::channel(false);
        let limits = crate::limits::StreamLimits::new(&settings.rate_limits, parts.store.clone());
        let runtime = crate::runtime::live(settings, streamer);
        let beat = RegionBeat::from_settings(
            &settings.regions,
            parts.store.clone(),
            Arc::new(SystemClock),
        );
        let pusher = parts.connections.map(|api| {
            Pusher::new(
                hub.clone(),
                parts.service.clone(),
                parts.store.clone(),
                parts.store,
                api,
                PushSettings::from_settings(streamer),
            )
        });
        Ok(Self {
            pusher,
            beat,
            listener,
            state: AppState {
                service: parts.service,
                tokens: parts.tokens,
                hub,
                upstream,
                settings: Arc::new(streamer.clone()),
                draining: draining_rx,
                metrics: metrics::install(),
                admission: Admission::new(streamer, settings.rate_limits.trusted_proxy_hops),
                limits,
                runtime,
            },
            draining,
        })
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Its hub (tests look at streams and clients).
    pub fn hub(&self) -> &Hub {
        &self.state.hub
    }

    /// Serves until `shutdown` completes, then drains: refuses new streams, tells every client
    /// to reconnect (`reconnect` event, reason `draining`), and waits for them to go, at most
    /// `streamer.drain_deadline_secs`.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StreamerError> {
        let deadline = self.state.settings.drain_deadline_secs;
        let upkeep = metrics::upkeep(self.state.metrics.clone());
        let draining_rx = self.state.draining.clone();
        let draining = self.draining;
        let hub = self.state.hub.clone();
        let following = tokio::spawn(follow(
            self.state.runtime.subscribe(),
            self.state.admission.clone(),
            self.state.limits.clone(),
            self.pusher.clone(),
        ));
        let pushing = self
            .pusher
            .map(|pusher| tokio::spawn(pusher.run(draining_rx.clone())));
        let beating = self
            .beat
            .map(|beat| tokio::spawn(beat.run(draining_rx.clone())));
        // Its own task: a slow or failing CloudWatch never holds up the data path.
        let publishing = crate::cloudwatch::Publisher::from_settings(
            &self.state.settings,
            self.state.metrics.clone(),
        )
        .await
        .map(|publisher| tokio::spawn(publisher.run(draining_rx.clone())));
        let admission = self.state.admission.clone();
        let timeouts = http1::Timeouts::from_settings(&self.state.settings);
        let serving = async move {
            let router = router(self.state);
            let served =
                http1::serve(self.listener, router, draining_rx, admission, timeouts).await;
            // Sessions hand their leases over once told to drain.
            if let Some(pushing) = pushing {
                let _ = pushing.await;
            }
            // Its last publish, bounded by the publisher itself.
            if let Some(publishing) = publishing {
                let _ = publishing.await;
            }
            following.abort();
            if let Some(beating) = beating {
                beating.abort();
            }
            served.map_err(StreamerError::Serve)
        };
        // The server returns once every connection has ended; past the deadline, whatever is
        // left is cut (the process exits).
        tokio::select! {
            result = serving => result,
            () = async move {
                shutdown.await;
                info!("draining: refusing new streams, telling clients to reconnect");
                // Connections see it and end; the value stays readable after the sender goes.
                draining.send_replace(true);
                // SSE clients look at the flag when their stream wakes them: wake them all.
                hub.wake_all();
                tokio::time::sleep(deadline).await;
            } => {
                warn!(?deadline, "drain deadline passed; closing the remaining connections");
                Ok(())
            }
            never = upkeep => match never {},
        }
    }
}

/// Applies each change of the runtime settings to what keeps its own copy: the pod's caps, the
/// stream-open rate limits and the push's batch delay (the SSE heartbeat and retry are read at
/// each stream's open).
async fn follow(
    mut changes: watch::Receiver<Arc<crate::runtime::StreamerRuntime>>,
    admission: Admission,
    limits: crate::limits::StreamLimits,
    pusher: Option<Pusher>,
) {
    // The value in force first: one may have been applied before this task started.
    loop {
        let runtime = changes.borrow_and_update().clone();
        admission.set_caps(&runtime.streamer);
        limits.set_quotas(&runtime.core.settings.rate_limits);
        if let Some(pusher) = &pusher {
            pusher.set_batch_delay(runtime.streamer.push_batch_delay_ms);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

fn router(state: AppState) -> Router {
    let origins: Vec<HeaderValue> = state
        .settings
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET])
        .allow_headers([
            header::AUTHORIZATION,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route("/v1/sessions/{session_id}/stream", get(sse::stream))
        .layer(cors)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .fallback(|| async { ApiError::NoRoute })
        .layer(axum::middleware::map_response(count_errors))
        .with_state(state)
}

async fn count_errors(response: Response) -> Response {
    if response.status().is_client_error() || response.status().is_server_error() {
        metrics::http_error(response.status().as_u16());
    }
    response
}

async fn live() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready unless draining, full (see `admission`) or the store is down; `degraded` (still
/// 200) with reasons when an upstream or a backend is failing.
async fn ready(State(app): State<AppState>) -> Response {
    if *app.draining.borrow() {
        metrics::readiness("draining");
        let body = json!({ "status": "draining", "reasons": ["draining"] });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    // Out of rotation before the cap refuses anyone, so the load balancer sends new clients
    // to other pods while this one keeps its own.
    if app.admission.full() {
        metrics::readiness("full");
        let body = json!({
            "status": "full",
            "reasons": ["full"],
            "connections": app.admission.connections(),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let health = app.service.health().await;
    let mut reasons: Vec<String> = health
        .dependencies
        .iter()
        .filter(|d| d.state != session_core::service::DependencyState::Ok)
        .map(|d| format!("{}: {}", d.name, d.detail.unwrap_or("failing")))
        .collect();
    if app.upstream.breaker().state() != session_core::resilience::BreakerState::Closed {
        reasons.push("upstream: circuit open".to_owned());
    }
    let streams = app.hub.streams();
    for stream in &streams {
        if let UpstreamState::Degraded(why) = stream.upstream() {
            reasons.push(format!("upstream {}: {why}", stream.key));
        }
    }
    let (code, status) = match health.status {
        HealthStatus::Down => (StatusCode::SERVICE_UNAVAILABLE, "down"),
        _ if reasons.is_empty() => (StatusCode::OK, "ok"),
        _ => (StatusCode::OK, "degraded"),
    };
    metrics::readiness(status);
    let body = json!({
        "status": status,
        "reasons": reasons,
        "streams": streams.len(),
        "connections": app.admission.connections(),
    });
    (code, axum::Json(body)).into_response()
}

async fn render_metrics(State(app): State<AppState>) -> Response {
    let (events, bytes) = app
        .hub
        .streams()
        .iter()
        .map(|stream| stream.window_size())
        .fold((0, 0), |(e, b), (events, bytes)| (e + events, b + bytes));
    metrics::window(events, bytes);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&app.metrics),
    )
        .into_response()
}
