//! The reference exchange simulator: `SimulatorControl`, `MarketData` and the local-only
//! `FaultInjection` over gRPC, plus the gRPC health service.
//!
//! Layout, bottom up: `book` (a pure L2 book with matching), `engine` (the deterministic
//! generator of one instance's events), `instance` (one running instance: epoch, sequence,
//! retained window, broadcast), `subscription` (one subscriber's gapless stream), `faults`,
//! `registry` ([`Simulators`]: every instance and the operations on them), `service` (the gRPC
//! edge), `replica` (a client's rebuilt books, for tests), and here the server you can run or
//! spawn.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use session_local::simulator::{SimulatorServer, SimulatorSettings};
//! use session_proto::simulator::v1 as pb;
//!
//! let simulator = SimulatorServer::spawn(SimulatorSettings::default()).await?;
//! let mut control = simulator.control_client();
//! let info = control
//!     .start(pb::StartRequest {
//!         symbols: vec!["BTC-USD".into()],
//!         seed: 7,
//!         events_per_second: 1000,
//!         client_token: String::new(),
//!     })
//!     .await?
//!     .into_inner();
//! simulator.simulators().fail_starts(2, std::time::Duration::ZERO);
//! simulator.shutdown().await?;
//! # Ok(()) }
//! ```

mod book;
mod engine;
mod faults;
mod instance;
mod registry;
mod replica;
mod service;
mod subscription;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use session_proto::simulator::v1::fault_injection_client::FaultInjectionClient;
use session_proto::simulator::v1::fault_injection_server::FaultInjectionServer;
use session_proto::simulator::v1::market_data_client::MarketDataClient;
use session_proto::simulator::v1::simulator_control_client::SimulatorControlClient;
use session_proto::simulator::v1::simulator_control_server::SimulatorControlServer;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use book::{Book, Fill, InvariantViolation, LevelChange, Outcome, Side};
pub use engine::{Engine, EngineConfig, Event};
pub use faults::FaultConfig;
pub use instance::{
    InstanceSettings, InstanceStats, MAX_BACKLOG_EVENTS, MAX_BATCH_EVENTS, STOPPED_RETAINED_EVENTS,
};
pub use registry::{SimulatorError, SimulatorSettings, Simulators};
pub use replica::{Replica, ReplicaError};
pub use service::{ControlService, FaultService, MarketDataService};

use crate::server::{self, KillSignal, ServerError, ServerHandle, ServerTls};

/// A simulator server: its instances and the gRPC services over them.
#[derive(Debug, Clone)]
pub struct SimulatorServer {
    simulators: Arc<Simulators>,
    tls: Option<ServerTls>,
}

impl SimulatorServer {
    /// A server with no instance yet.
    pub fn new(settings: SimulatorSettings) -> Self {
        Self {
            simulators: Arc::new(Simulators::new(settings)),
            tls: None,
        }
    }

    /// Serves over TLS (mutual when `tls` names a client CA) instead of plaintext.
    #[must_use]
    pub fn with_tls(self, tls: ServerTls) -> Self {
        Self {
            tls: Some(tls),
            ..self
        }
    }

    /// Its instances, for in-process control (starting instances, injecting faults).
    pub fn simulators(&self) -> &Arc<Simulators> {
        &self.simulators
    }

    /// Serves every service on `listener` until `shutdown` resolves; then stops every instance
    /// (each open stream gets its final `STOPPED` status and ends) and drains connections.
    ///
    /// # Errors
    /// The TLS material does not parse, or the gRPC server failed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.run_until(listener, shutdown, KillSignal::never())
            .await
    }

    /// [`SimulatorServer::run`], cut short by `kill`.
    async fn run_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        kill: KillSignal,
    ) -> Result<(), ServerError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<SimulatorControlServer<ControlService>>()
            .await;
        reporter.set_serving::<MarketDataService>().await;
        reporter
            .set_serving::<FaultInjectionServer<FaultService>>()
            .await;
        let simulators = Arc::clone(&self.simulators);
        let router = server::builder(self.tls.as_ref())?
            .trace_fn(|request| session_core::telemetry::server_span("exchange-simulator", request))
            .add_service(health)
            .add_service(SimulatorControlServer::new(ControlService::new(
                Arc::clone(&simulators),
            )))
            .add_service(MarketDataService::new(Arc::clone(&simulators)))
            .add_service(FaultInjectionServer::new(FaultService::new(Arc::clone(
                &simulators,
            ))));
        let stopping = async move {
            shutdown.await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            // Stalled streams would hold the drain for their whole stall.
            simulators.clear_faults();
            simulators.stop_all("the simulator server is shutting down");
        };
        server::serve(router, listener, stopping, kill).await
    }

    /// Binds 127.0.0.1 on a free port and runs a server with `settings` on a task of the
    /// current runtime.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn spawn(settings: SimulatorSettings) -> Result<SimulatorHandle, ServerError> {
        let listener = server::bind_loopback().await?;
        Self::new(settings).spawn_on(listener)
    }

    /// Runs this server on `listener` on a task of the current runtime.
    ///
    /// # Errors
    /// The listener's address cannot be read.
    pub fn spawn_on(self, listener: TcpListener) -> Result<SimulatorHandle, ServerError> {
        let simulators = Arc::clone(&self.simulators);
        let server = ServerHandle::spawn(listener, move |listener, stop, kill| {
            self.run_until(
                listener,
                async move {
                    let _ = stop.await;
                },
                kill,
            )
        })?;
        let view = SimulatorView {
            addr: server.addr(),
            simulators,
        };
        Ok(SimulatorHandle { server, view })
    }
}

/// A simulator server running in-process; dropping it stops the server. Its address, instances
/// and clients are those of its [`SimulatorView`] (`Deref`).
#[derive(Debug)]
pub struct SimulatorHandle {
    server: ServerHandle,
    view: SimulatorView,
}

/// What a running simulator server offers besides stopping it: its address, its instances and
/// clients; cheap to clone, and kept by whoever needs it while another party owns the server.
#[derive(Debug, Clone)]
pub struct SimulatorView {
    addr: SocketAddr,
    simulators: Arc<Simulators>,
}

impl std::ops::Deref for SimulatorHandle {
    type Target = SimulatorView;

    fn deref(&self) -> &SimulatorView {
        &self.view
    }
}

impl SimulatorView {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients connect to, e.g. `http://127.0.0.1:50051`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its instances, for in-process control: [`Simulators::start`],
    /// [`Simulators::fail_starts`], [`Simulators::end_streams`], [`Simulators::restart`]...
    pub fn simulators(&self) -> &Arc<Simulators> {
        &self.simulators
    }

    /// A new, lazily connecting channel: its own HTTP/2 connection.
    pub fn channel(&self) -> Channel {
        server::channel(self.addr)
    }

    /// A `SimulatorControl` client on a new connection.
    pub fn control_client(&self) -> SimulatorControlClient<Channel> {
        SimulatorControlClient::new(self.channel())
    }

    /// A `MarketData` client on a new connection (streams of one connection share its flow
    /// control window: give a subscriber that may be slow a connection of its own).
    pub fn market_data_client(&self) -> MarketDataClient<Channel> {
        MarketDataClient::new(self.channel())
    }

    /// A `FaultInjection` client on a new connection.
    pub fn fault_client(&self) -> FaultInjectionClient<Channel> {
        FaultInjectionClient::new(self.channel())
    }
}

impl SimulatorHandle {
    /// Its view, to keep apart from the handle.
    pub fn view(&self) -> SimulatorView {
        self.view.clone()
    }

    /// Stops the server: every instance stops, every stream ends, connections drain.
    ///
    /// # Errors
    /// The server failed while running, or its task panicked.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.server.shutdown().await
    }

    /// Kills the server as a crash would: open streams are cut with no final status, the port
    /// refuses connections, and its instances are gone.
    ///
    /// # Errors
    /// The server failed while running, or its task panicked.
    pub async fn kill(self) -> Result<(), ServerError> {
        self.server.kill().await
    }
}
