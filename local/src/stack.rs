//! The local stack: every part of the session service that exists so far, in one process, on
//! loopback, wired the way AWS wires them — the reference auth service and exchange simulator
//! over real gRPC, the HTTP API emulator in front of the REST and authorizer functions, and the
//! WebSocket API emulator (with its `@connections` API) in front of the WebSocket functions,
//! the streamer (SSE) reading the simulator's market data, and the web page, served from an
//! origin of its own that both APIs allow (CORS, and the `Origin` checks of the WebSocket
//! `$connect` and the SSE stream).
//!
//! Tests start it on port 0 ([`StackSettings::ephemeral`]); `session-local` starts it on fixed
//! ports and prints the endpoints.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde::Serialize;
use session_core::auth::keys::{KeyError, SigningKey, VerifyKeys};
use session_core::clock::{Clock, SystemClock};
use session_core::component::Component;
use session_core::config::{ConfigError, DiscoveryMode, Settings, StoreBackend};
use session_core::service::{
    ConnectAuthorizer, ConnectionService, ServiceParts, SessionService, StreamService,
};
use session_core::store::{
    DynamoStore, HomeFence, InMemoryStore, SharedStore, StoreError, create_table,
};
use session_functions::wiring::{self, WiringError};
use session_streamer::StreamerSettings;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

use crate::appconfig::AppConfigAgent;
use crate::auth::{AuthServer, AuthService, AuthSettings};
use crate::cloudmap::{CloudMapApi, Registrar, Registry};
use crate::faults::{self, Fleet};
use crate::http_api::{HttpApi, HttpApiSettings, RouteError, RouteTable};
use crate::region_endpoints::RegionEndpoints;
use crate::server::ServerError;
use crate::simulator::{SimulatorServer, SimulatorSettings, SimulatorView};
use crate::tokens;
use crate::web::{self, WebConfig};
use crate::ws_api::{WsApi, WsApiSettings};

/// Where each part listens and how the service is configured.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// The HTTP API emulator.
    pub http_api: SocketAddr,
    /// The WebSocket API emulator and its `@connections` API.
    pub ws_api: SocketAddr,
    /// The streamer (SSE, health, metrics).
    pub sse: SocketAddr,
    /// The (first) exchange simulator server's gRPC address; the others take free ports.
    pub simulator: SocketAddr,
    /// How many simulator servers to run (`simulator-server-1`...); with more than one, the
    /// service finds them through Cloud Map (`discovery.mode = cloudmap`).
    pub simulator_servers: usize,
    /// The embedded Cloud Map registry's API.
    pub cloudmap: SocketAddr,
    /// Another Cloud Map API (moto's) to register in and discover from, instead of the
    /// embedded registry; the service then uses Cloud Map whatever the number of servers.
    pub cloudmap_endpoint: Option<String>,
    /// The auth service's gRPC server.
    pub auth: SocketAddr,
    /// The AppConfig Agent's API, which the REST function's flags are read from.
    pub appconfig: SocketAddr,
    /// The folder it serves (`<profile>.json`); `None`: the built-in defaults (every flag off).
    pub appconfig_dir: Option<PathBuf>,
    /// The web page (its origin is added to the HTTP API's and the streamer's CORS origins and
    /// to `websocket.allowed_origins`).
    pub web: SocketAddr,
    /// The session service's settings; backend URLs are pointed at the parts started here, and
    /// a ticket key pair is generated if none is set.
    pub service: Settings,
    /// The streamer's settings; its address and CORS origins are set to the stack's.
    pub streamer: StreamerSettings,
    /// The exchange simulator's settings (faults included).
    pub simulators: SimulatorSettings,
    /// The HTTP API's limits.
    pub http: HttpApiSettings,
    /// The WebSocket API's limits (idle timeout, connection cap, frame and message sizes).
    pub ws: WsApiSettings,
    /// Where to write the endpoints as JSON once everything is ready.
    pub endpoints_file: Option<PathBuf>,
    /// Whether the embedded streamer pushes to WebSocket connections (off when streamers run
    /// as processes of their own, as in the handover tests).
    pub push: bool,
    /// The in-memory store every component shares, instead of a fresh one (a region's replica
    /// in `--regions N`: `crate::regions`); ignored on DynamoDB.
    pub store: Option<SharedStore>,
    /// More dev-only routes for the HTTP API, beside `/_local/faults` (`--regions N`'s
    /// `/_local/regions` on every region).
    pub routes: Option<Router>,
    /// The identity provider (its signing keys) this stack's auth service serves, instead of
    /// a fresh one: `--regions N` shares the first region's, so a token is valid in every
    /// region (tickets stay regional: each stack has its own ticket keys).
    pub identity: Option<Arc<AuthService>>,
    /// Every region's endpoints, for the web page to fail over to (`--regions N`); empty: this
    /// stack's own, under `service.regions.this`.
    pub regions: Vec<RegionEndpoints>,
}

impl StackSettings {
    /// Fixed, documented ports on 127.0.0.1: what `session-local` uses by default.
    pub fn local(service: Settings) -> Self {
        let at = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Self {
            http_api: at(8080),
            ws_api: at(8081),
            sse: at(8090),
            simulator: at(50051),
            simulator_servers: 1,
            cloudmap: at(8060),
            cloudmap_endpoint: None,
            auth: at(50052),
            web: at(8070),
            appconfig: at(2772),
            appconfig_dir: None,
            service,
            streamer: StreamerSettings::default(),
            simulators: SimulatorSettings::default(),
            http: HttpApiSettings::default(),
            ws: WsApiSettings::default(),
            endpoints_file: None,
            push: true,
            store: None,
            routes: None,
            identity: None,
            regions: Vec::new(),
        }
    }

    /// Free ports on 127.0.0.1, for tests.
    pub fn ephemeral(service: Settings) -> Self {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self {
            http_api: any,
            ws_api: any,
            sse: any,
            simulator: any,
            cloudmap: any,
            auth: any,
            web: any,
            appconfig: any,
            ..Self::local(service)
        }
    }
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP API emulator failed while serving.
    #[error("the HTTP API emulator failed: {0}")]
    Http(std::io::Error),
    /// The WebSocket API emulator failed while serving.
    #[error("the WebSocket API emulator failed: {0}")]
    Ws(std::io::Error),
    /// The web page's server failed while serving.
    #[error("the web server failed: {0}")]
    Web(std::io::Error),
    /// The streamer could not start or failed while serving.
    #[error("the streamer failed: {0}")]
    Streamer(String),
    /// A backend server failed to start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The functions could not be wired.
    #[error(transparent)]
    Wiring(#[from] WiringError),
    /// The API's routes could not be read.
    #[error(transparent)]
    Routes(#[from] RouteError),
    /// The stack's servers could not be registered in Cloud Map.
    #[error("cannot register in Cloud Map: {0}")]
    Registry(#[from] faults::FaultError),
    /// The DynamoDB table could not be created.
    #[error("cannot create the DynamoDB table: {0}")]
    Store(#[from] StoreError),
    /// The ticket keys could not be made.
    #[error("cannot make the ticket keys: {0}")]
    TicketKeys(#[from] KeyError),
    /// The settings' ticket keys do not go together.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The endpoints file could not be written.
    #[error("cannot write {path}: {source}")]
    EndpointsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where to reach each part; written as JSON to `--endpoints-file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// Base URL of the HTTP API (`.../v1/sessions`).
    pub http_api: String,
    /// Where to mint dev tokens (`POST {"sub": ..., "scopes": [...]}`).
    pub token_url: String,
    /// The auth service's gRPC endpoint.
    pub auth_grpc: String,
    /// The (first) exchange simulator server's gRPC endpoint.
    pub simulator_grpc: String,
    /// Every simulator server's gRPC endpoint, `simulator-server-1` first.
    pub simulator_servers: Vec<String>,
    /// The Cloud Map API the servers are registered in (`discovery.cloudmap_endpoint`).
    pub cloudmap: String,
    /// Where to kill and restore a backend server (`POST {"target", "fault"}`).
    pub faults_url: String,
    /// The WebSocket API (`ws://127.0.0.1:8081/local`; connect with `?ticket=`).
    pub ws_api: String,
    /// The `@connections` management API (`http://127.0.0.1:8081/local`), the endpoint for
    /// `aws-sdk-apigatewaymanagement`.
    pub connections_url: String,
    /// The streamer's base URL (`{sse}/v1/sessions/{id}/stream`, `/health/ready`, `/metrics`).
    pub sse: String,
    /// The web page (`http://127.0.0.1:8070`), with its `/config.json`.
    pub web: String,
    /// The AppConfig Agent's API (`appconfig.base_url`), serving `--appconfig-dir`.
    pub appconfig: String,
}

/// A running stack; dropping it stops every part (each handle stops its server when dropped).
#[derive(Debug)]
pub struct Stack {
    endpoints: Endpoints,
    auth: Arc<AuthService>,
    fleet: Arc<Fleet>,
    /// Held for its lifetime (when embedded): dropping it stops the registry's API.
    _cloudmap: Option<CloudMapApi>,
    service: SessionService,
    connect_authorizer: ConnectAuthorizer,
    connection_service: ConnectionService,
    http_stop: Option<oneshot::Sender<()>>,
    http_task: JoinHandle<std::io::Result<()>>,
    ws_api: WsApi,
    ws_stop: Option<oneshot::Sender<()>>,
    ws_task: JoinHandle<std::io::Result<()>>,
    streamer_hub: session_streamer::hub::Hub,
    streamer_stop: Option<oneshot::Sender<()>>,
    streamer_task: JoinHandle<Result<(), session_streamer::StreamerError>>,
    web_stop: Option<oneshot::Sender<()>>,
    web_task: JoinHandle<std::io::Result<()>>,
    /// Held for its lifetime: dropping it stops the agent API.
    _appconfig: AppConfigAgent,
}

impl RegionEndpoints {
    /// Region `name`'s entry, from its stack's endpoints.
    pub(crate) fn of(name: &str, endpoints: &Endpoints) -> Self {
        Self {
            name: name.to_owned(),
            http_api: endpoints.http_api.clone(),
            ws_api: endpoints.ws_api.clone(),
            sse: endpoints.sse.clone(),
            web: endpoints.web.clone(),
            token_url: endpoints.token_url.clone(),
        }
    }
}

impl Stack {
    /// Starts every part and returns once all of them accept connections.
    ///
    /// # Errors
    /// A port is taken, the settings cannot work, or the DynamoDB table cannot be created.
    pub async fn start(settings: StackSettings) -> Result<Self, StackError> {
        // Boxed: starting holds several copies of the settings across awaits, and every caller
        // (tests, benches, the binary) would otherwise carry that future inline.
        Box::pin(Self::start_inner(settings)).await
    }

    async fn start_inner(settings: StackSettings) -> Result<Self, StackError> {
        let StackSettings {
            http_api,
            ws_api,
            sse,
            simulator,
            simulator_servers,
            cloudmap,
            cloudmap_endpoint,
            auth,
            web,
            appconfig,
            appconfig_dir,
            mut service,
            streamer: mut streamer_settings,
            simulators,
            mut http,
            ws,
            endpoints_file,
            push,
            store,
            routes,
            identity,
            regions,
        } = settings;
        let region = service.regions.this.to_string();

        let auth = match identity {
            Some(identity) => AuthServer::from_service(identity),
            None => AuthServer::new(AuthSettings {
                audience: service.auth.token_audience.clone(),
                ..AuthSettings::default()
            })
            .map_err(|e| ServerError::Settings(e.to_string()))?,
        }
        .spawn_on(bind(auth).await?)?;
        let mut servers = Vec::with_capacity(simulator_servers.max(1));
        for i in 0..simulator_servers.max(1) {
            let addr = if i == 0 {
                simulator
            } else {
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
            };
            let server = SimulatorServer::new(simulators).spawn_on(bind(addr).await?)?;
            servers.push((server, simulators));
        }

        service.backends.auth_url = auth.endpoint();
        service.backends.simulator_url = servers[0].0.endpoint();
        let simulator_endpoints: Vec<String> = servers.iter().map(|(s, _)| s.endpoint()).collect();
        let auth_service = Arc::clone(auth.auth());
        let discovery = &service.discovery;
        let names = [
            discovery.simulator_service.as_str(),
            discovery.auth_service.as_str(),
        ];
        let (embedded, registrar, cloudmap_url) = if let Some(endpoint) = &cloudmap_endpoint {
            let registrar = Registrar::external(endpoint, &discovery.namespace, &names)
                .await
                .map_err(faults::FaultError::from)?;
            (None, registrar, endpoint.clone())
        } else {
            let registry = Arc::new(Registry::new(&discovery.namespace, &names));
            let api = CloudMapApi::spawn(bind(cloudmap).await?, registry).map_err(|source| {
                StackError::Listen {
                    addr: cloudmap,
                    source,
                }
            })?;
            let registrar = Registrar::embedded(&api.endpoint(), &names);
            let url = api.endpoint();
            (Some(api), registrar, url)
        };
        let fleet =
            Arc::new(Fleet::register(registrar, (names[0], names[1]), servers, auth).await?);
        // One server keeps today's static URLs; more (or another registry) need discovery.
        if simulator_servers > 1 || cloudmap_endpoint.is_some() {
            service.discovery.mode = DiscoveryMode::Cloudmap;
            service.discovery.cloudmap_endpoint = Some(cloudmap_url.clone());
        }
        let appconfig =
            AppConfigAgent::spawn(bind(appconfig).await?, appconfig_dir).map_err(|source| {
                StackError::Listen {
                    addr: appconfig,
                    source,
                }
            })?;
        service.appconfig.base_url = Some(appconfig.endpoint());
        // Bound first: ticket URLs name the WebSocket API, and the service is built with them.
        let ws_listener = bind(ws_api).await?;
        let ws_addr = local_addr(&ws_listener, ws_api)?;
        service.streaming.ws_url = format!("ws://{ws_addr}/{}", crate::ws_api::STAGE);
        let sse_listener = bind(sse).await?;
        let sse_addr = local_addr(&sse_listener, sse)?;
        service.streaming.sse_url = format!("http://{sse_addr}");
        streamer_settings.listen = sse_addr.to_string();
        // Bound before the APIs are built: all three allow the page's origin.
        let web_listener = bind(web).await?;
        let web_addr = local_addr(&web_listener, web)?;
        for origin in web::origins(web_addr) {
            if !streamer_settings.cors_origins.contains(&origin) {
                streamer_settings.cors_origins.push(origin.clone());
            }
            if !service.websocket.allowed_origins.contains(&origin) {
                service.websocket.allowed_origins.push(origin.clone());
            }
            if !http.cors.allow_origins.contains(&origin) {
                http.cors.allow_origins.push(origin);
            }
        }
        ephemeral_ticket_keys(&mut service)?;
        // As in AWS: the REST API holds the private key, the others the public keys only.
        // Boxed: they live across the awaits below, in a future already large.
        let signer = Box::new(Settings {
            auth: service.auth.with_ticket_keys_for(true, false),
            ..service.clone()
        });
        let verifier = Box::new(Settings {
            auth: service.auth.with_ticket_keys_for(false, true),
            ..service.clone()
        });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let stores = Stores::of(&service, store, clock.clone()).await?;
        let backend = wiring::simulator_backend(&service)?;
        let parts_of = |settings: &Settings, component| {
            ServiceParts::from_settings(
                settings,
                stores.of_component(component),
                backend.clone(),
                clock.clone(),
            )
        };
        let ws_emulator = WsApi::new(
            ConnectAuthorizer::new(&parts_of(&verifier, Component::WsAuthorizer)),
            wiring::live_ws_handler(
                &service,
                ServiceParts {
                    store: stores.cached(Component::WsHandler),
                    ..parts_of(&verifier, Component::WsHandler)
                },
            ),
            ws,
        );
        let streamer_service = StreamService::new(&parts_of(&verifier, Component::Streamer))
            .with_regions(Arc::new((*service.regions).clone()));
        // Follows the runtime settings from the local agent, as the function does in AWS.
        let integration = wiring::live_rest_router(
            &signer,
            stores.cached(Component::RestApi),
            backend.clone(),
            clock.clone(),
        );
        // What tests drive every use case on (REST and WebSocket alike): both halves of the key.
        let both_keys = parts_of(&service, Component::RestApi);
        let session_service = SessionService::new(both_keys.clone());
        let connect_authorizer = ConnectAuthorizer::new(&both_keys);
        let connection_service = ConnectionService::new(&both_keys);
        let authorizer = Arc::new(wiring::token_validator(&service)?);
        let connections_url = streamer_settings.connections_url.clone();
        let streamer = session_streamer::Streamer::on(
            sse_listener,
            session_streamer::StreamerParts {
                settings: (*verifier).clone(),
                streamer: streamer_settings,
                service: streamer_service,
                tokens: authorizer.clone(),
                store: stores.cached(Component::Streamer),
                // The emulator's, unless the settings name another (a test's slow endpoint).
                connections: push.then(|| {
                    session_streamer::push::ConnectionsApi::local(
                        &connections_url.unwrap_or_else(|| {
                            format!("http://{ws_addr}/{}", crate::ws_api::STAGE)
                        }),
                    )
                }),
            },
        )
        .map_err(|e| StackError::Streamer(e.to_string()))?;
        let streamer_hub = streamer.hub().clone();
        let (streamer_stop, streamer_stopped) = oneshot::channel::<()>();
        let streamer_task = tokio::spawn(streamer.run(async move {
            let _ = streamer_stopped.await;
        }));
        let document: serde_json::Value =
            serde_json::from_str(session_functions::http::openapi::json())
                .unwrap_or_else(|_| unreachable!("the OpenAPI document is JSON"));
        let api = HttpApi::new(
            RouteTable::from_openapi(&document)?.with_default_route(),
            integration,
            authorizer,
            http,
        );

        let listener = bind(http_api).await?;
        let http_addr = local_addr(&listener, http_api)?;
        let base = format!("http://{http_addr}");
        let mut extra = Router::new()
            .route(tokens::PATH, post(tokens::mint))
            .route(tokens::JWKS_PATH, get(tokens::jwks))
            .with_state(Arc::clone(&auth_service))
            .merge(
                Router::new()
                    .route(faults::PATH, post(faults::inject).get(faults::list))
                    .with_state(Arc::clone(&fleet)),
            );
        if let Some(routes) = routes {
            extra = extra.merge(routes);
        }
        let (http_stop, stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(api.serve(listener, extra, async move {
            let _ = stopped.await;
        }));

        let (ws_stop, ws_stopped) = oneshot::channel::<()>();
        let ws_task = tokio::spawn(ws_emulator.clone().serve(ws_listener, async move {
            let _ = ws_stopped.await;
        }));

        let endpoints = Endpoints {
            token_url: format!("{base}{}", tokens::PATH),
            faults_url: format!("{base}{}", faults::PATH),
            http_api: base,
            auth_grpc: service.backends.auth_url.clone(),
            simulator_grpc: simulator_endpoints[0].clone(),
            simulator_servers: simulator_endpoints,
            cloudmap: cloudmap_url,
            ws_api: format!("ws://{ws_addr}/{}", crate::ws_api::STAGE),
            connections_url: format!("http://{ws_addr}/{}", crate::ws_api::STAGE),
            sse: format!("http://{sse_addr}"),
            web: format!("http://{web_addr}"),
            appconfig: appconfig.endpoint(),
        };
        let page = WebConfig {
            http_api: endpoints.http_api.clone(),
            token_url: endpoints.token_url.clone(),
            ws_api: endpoints.ws_api.clone(),
            sse: endpoints.sse.clone(),
            faults_url: Some(endpoints.faults_url.clone()),
            regions: if regions.is_empty() {
                vec![RegionEndpoints::of(&region, &endpoints)]
            } else {
                regions
            },
            region,
        };
        let (web_stop, web_stopped) = oneshot::channel::<()>();
        let web_task = tokio::spawn(async move {
            web::serve(web_listener, &page, async move {
                let _ = web_stopped.await;
            })
            .await
        });
        if let Some(path) = &endpoints_file {
            write_endpoints(path, &endpoints)?;
        }
        info!(?endpoints, "local stack ready");
        Ok(Self {
            endpoints,
            auth: auth_service,
            fleet,
            _cloudmap: embedded,
            service: session_service,
            connect_authorizer,
            connection_service,
            http_stop: Some(http_stop),
            http_task,
            ws_api: ws_emulator,
            ws_stop: Some(ws_stop),
            ws_task,
            streamer_hub,
            streamer_stop: Some(streamer_stop),
            streamer_task,
            web_stop: Some(web_stop),
            web_task,
            _appconfig: appconfig,
        })
    }

    /// Where each part listens.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// A session service as the functions run it, on the REST API's store, holding both ticket
    /// keys (the functions themselves each hold only their own: signing or verifying).
    pub fn service(&self) -> &SessionService {
        &self.service
    }

    /// The `$connect` authorizer's use case as the ws-authorizer runs it, on the REST API's
    /// store, holding both ticket keys.
    pub fn connect_authorizer(&self) -> &ConnectAuthorizer {
        &self.connect_authorizer
    }

    /// The WebSocket routes' use cases as the ws-handler runs them, on the REST API's store.
    pub fn connection_service(&self) -> &ConnectionService {
        &self.connection_service
    }

    /// The WebSocket API emulator (its open connections).
    pub fn ws_api(&self) -> &WsApi {
        &self.ws_api
    }

    /// The streamer's hub (its streams and their clients).
    pub fn streamer_hub(&self) -> &session_streamer::hub::Hub {
        &self.streamer_hub
    }

    /// The auth service, to mint tokens.
    pub fn auth(&self) -> &Arc<AuthService> {
        &self.auth
    }

    /// The (first) exchange simulator server, for its clients and fault injection.
    ///
    /// # Panics
    /// After [`Stack::stop_exchange_simulator`], or while `simulator-server-1` is killed.
    pub fn simulator(&self) -> SimulatorView {
        self.fleet
            .simulator(1)
            .expect("the exchange simulator was stopped")
    }

    /// The backend servers, to kill and restore them ([`Fleet::apply`]) as `/_local/faults`
    /// does.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// Stops every simulator server, as an outage would (chaos tests); the rest keeps running.
    ///
    /// # Errors
    /// A simulator server failed while running.
    pub async fn stop_exchange_simulator(&mut self) -> Result<(), StackError> {
        self.fleet.shutdown_simulators().await?;
        Ok(())
    }

    /// A dev token for `subject`, valid for an hour.
    pub fn token(&self, subject: &str) -> String {
        self.auth()
            .issue(subject, &tokens::DEFAULT_SCOPES, Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("the local auth service signs tokens: {e}"))
    }

    /// Stops every part: the APIs first (no new requests; WebSocket connections close with
    /// `$disconnect`), then the backends.
    ///
    /// # Errors
    /// A part failed while running.
    pub async fn shutdown(mut self) -> Result<(), StackError> {
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.ws_stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.streamer_stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.web_stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.streamer_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StackError::Streamer(e.to_string())),
            Err(e) => return Err(ServerError::Task(e).into()),
        }
        match (&mut self.http_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StackError::Http(e)),
            Err(e) => return Err(ServerError::Task(e).into()),
        }
        match (&mut self.ws_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StackError::Ws(e)),
            Err(e) => return Err(ServerError::Task(e).into()),
        }
        match (&mut self.web_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StackError::Web(e)),
            Err(e) => return Err(ServerError::Task(e).into()),
        }
        self.stop_exchange_simulator().await?;
        self.fleet.shutdown_auth().await?;
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StackError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Listen { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StackError> {
    listener
        .local_addr()
        .map_err(|source| StackError::Listen { addr, source })
}

/// The store each component works on. In memory, one store that all share. On DynamoDB, one
/// client per component, as each Lambda and the streamer have in AWS: each one's calls name it
/// in their user agent, which lets the permission check (`scripts/permissions-check.sh`) hold
/// each call against that component's IAM role. Beside each, the same store behind the cache
/// (`cache.*`) for the parts that read through it, as in AWS: one cache in memory (one process),
/// one per component on DynamoDB (a process each).
struct Stores(
    HashMap<Component, SharedStore>,
    HashMap<Component, SharedStore>,
);

impl Stores {
    /// The stores of `settings` (in memory: `given`, if any); for DynamoDB, the table is created if missing. A local
    /// endpoint gets fixed dummy credentials unless the environment has AWS credentials.
    async fn of(
        settings: &Settings,
        given: Option<SharedStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StackError> {
        let store = &settings.store;
        if store.backend == StoreBackend::Memory {
            let shared: SharedStore =
                given.unwrap_or_else(|| Arc::new(InMemoryStore::new(clock.clone())));
            let cached = session_core::cache::wrap(shared.clone(), &settings.cache, clock);
            return Ok(Self(
                Component::ALL.map(|c| (c, shared.clone())).into(),
                Component::ALL.map(|c| (c, cached.clone())).into(),
            ));
        }
        let local = store.endpoint.as_deref().filter(|_| !has_aws_credentials());
        let mut clients = HashMap::new();
        for component in Component::ALL {
            let client = match local {
                Some(endpoint) => DynamoStore::local_client(endpoint, store, Some(component)),
                None => DynamoStore::client_from_env(store, component).await,
            };
            clients.insert(component, client);
        }
        // The stack's own set-up: on a local endpoint as no component (no role creates tables).
        let setup = match local {
            Some(endpoint) => DynamoStore::local_client(endpoint, store, None),
            None => clients[&Component::RestApi].clone(),
        };
        create_table(&setup, &store.table_name).await?;
        let stores: HashMap<_, _> = clients
            .into_iter()
            .map(|(component, client)| {
                // Fenced to this region's sessions, as `store::from_settings` does; the
                // recovery component's failover writes from outside the home, unfenced.
                let fence = (component != Component::Recovery)
                    .then(|| HomeFence::from_settings(&settings.regions))
                    .flatten();
                let store: SharedStore = Arc::new(
                    DynamoStore::new(client, &store.table_name, clock.clone()).fenced_by(fence),
                );
                (component, store)
            })
            .collect();
        let cached = stores
            .iter()
            .map(|(&component, store)| {
                let cached =
                    session_core::cache::wrap(store.clone(), &settings.cache, clock.clone());
                (component, cached)
            })
            .collect();
        Ok(Self(stores, cached))
    }

    /// The store `component` works on.
    fn of_component(&self, component: Component) -> SharedStore {
        self.0[&component].clone()
    }

    /// The store `component` works on, behind its cache.
    fn cached(&self, component: Component) -> SharedStore {
        self.1[&component].clone()
    }
}

fn has_aws_credentials() -> bool {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some())
}

/// Gives `service` a fresh ticket key pair where its settings name none (the default: no files
/// needed): the REST API signs with it, the authorizer and the streamer verify with its public
/// half. Tickets of a local stack do not outlive it.
fn ephemeral_ticket_keys(service: &mut Settings) -> Result<(), StackError> {
    let signing = match service.auth.ticket_signing_key() {
        Some(_) => None,
        None => Some(SigningKey::generate(&format!(
            "local-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))?),
    };
    let verify = match (service.auth.ticket_verify_keys(), &signing) {
        (None, Some(key)) => Some(VerifyKeys::of(&[key])?),
        _ => None,
    };
    service.auth.set_ticket_keys(signing, verify)?;
    Ok(())
}

/// Writes `endpoints` so a reader never sees a half-written file: to a sibling, then renamed.
pub(crate) fn write_endpoints(path: &Path, endpoints: &impl Serialize) -> Result<(), StackError> {
    let error = |source| StackError::EndpointsFile {
        path: path.to_owned(),
        source,
    };
    let json =
        serde_json::to_vec_pretty(endpoints).unwrap_or_else(|_| unreachable!("strings serialise"));
    let partial = path.with_extension("partial");
    std::fs::write(&partial, json).map_err(error)?;
    std::fs::rename(&partial, path).map_err(error)
}
