//! The exchange simulators as this service sees them: a port to start, stop, inspect them and
//! read their books, and its gRPC adapter.
//!
//! The port speaks domain types only; [`GrpcSimulatorBackend`] translates to and from
//! `simulator.v1.SimulatorControl` and owns deadlines, retries and the circuit breaker;
//! [`channel`] builds the endpoint of every backend client (plaintext or mutual TLS).

mod balanced;
pub mod channel;
mod grpc;
mod routed;

use std::time::Duration;

use async_trait::async_trait;

pub use balanced::balanced_channel;
pub use grpc::GrpcSimulatorBackend;
pub use routed::RoutedSimulatorBackend;

use crate::discovery::balance::Load;
use crate::domain::{BookView, EventId, SimulatorHost, SimulatorId, SimulatorStatus, Symbol};
use crate::resilience::{BreakerState, Classify, ErrorClass};

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSpec {
    /// Makes retried starts idempotent: the backend starts at most one instance per token.
    /// This service uses its own simulator id.
    pub client_token: SimulatorId,
    /// Symbols to simulate.
    pub symbols: Vec<Symbol>,
    /// Seed of the instance's generator.
    pub seed: u64,
    /// Target events per second.
    pub events_per_second: u32,
}

/// A backend instance's state as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSimulator {
    /// The backend's id of the instance.
    pub backend_id: String,
    /// Its lifecycle state.
    pub status: SimulatorStatus,
    /// Where its stream is now.
    pub position: EventId,
    /// Why it failed, when it did.
    pub reason: Option<String>,
}

/// Where a new simulator is to start: the server chosen (`None`: the one static server), and
/// the start counted on it for the balancing until this is dropped.
#[derive(Debug, Default)]
pub struct Placement {
    /// The server chosen.
    pub host: Option<SimulatorHost>,
    /// Holds the server's count of starts in flight.
    pub load: Option<Load>,
}

/// Why a backend call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The backend does not know the instance (or the symbol).
    #[error("not found: {0}")]
    NotFound(String),
    /// The backend refused the request; retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The backend could not answer in time or at all; worth retrying later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The circuit breaker is open: the backend failed repeatedly and is given time to recover.
    #[error("unavailable: {0}")]
    CircuitOpen(String),
}

impl Classify for BackendError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) => ErrorClass::Transient,
            // Transient for the client, but not worth retrying within one call: the breaker's
            // cool-down is longer than any caller waits.
            Self::NotFound(_) | Self::Refused(_) | Self::CircuitOpen(_) => ErrorClass::Permanent,
        }
    }
}

/// Starts, stops and inspects simulator instances.
#[async_trait]
pub trait SimulatorBackend: Send + Sync + std::fmt::Debug {
    /// Starts an instance (idempotent per `spec.client_token`).
    async fn start(&self, spec: &StartSpec) -> Result<BackendSimulator, BackendError>;

    /// Stops an instance; stopping a stopped one succeeds.
    async fn stop(&self, backend_id: &str) -> Result<BackendSimulator, BackendError>;

    /// The instance's current state.
    async fn get(&self, backend_id: &str) -> Result<BackendSimulator, BackendError>;

    /// The authoritative book of one symbol and the stream position it reflects.
    async fn book(&self, backend_id: &str, symbol: &Symbol) -> Result<BookView, BackendError>;

    /// One status read of `backend_id`, without retries, that ends within `deadline` with an
    /// outcome the circuit breaker counts (an answer, or `Unavailable` once `deadline` passes):
    /// health checks probe with it inside their own timeout.
    async fn probe(&self, backend_id: &str, deadline: Duration) -> Result<(), BackendError>;

    /// The state of the circuit breaker in front of the backend, for health checks.
    fn breaker_state(&self) -> BreakerState;

    /// Chooses the server of a new simulator; one static server: `None`.
    ///
    /// # Errors
    /// No server is healthy.
    async fn place(&self) -> Result<Placement, BackendError> {
        Ok(Placement::default())
    }

    /// [`start`](Self::start) on `host` (`None`: the static server).
    async fn start_on(
        &self,
        host: Option<&SimulatorHost>,
        spec: &StartSpec,
    ) -> Result<BackendSimulator, BackendError> {
        let _ = host;
        self.start(spec).await
    }

    /// [`stop`](Self::stop) on `host`.
    async fn stop_on(
        &self,
        host: Option<&SimulatorHost>,
        backend_id: &str,
    ) -> Result<BackendSimulator, BackendError> {
        let _ = host;
        self.stop(backend_id).await
    }

    /// [`get`](Self::get) on `host`.
    async fn get_on(
        &self,
        host: Option<&SimulatorHost>,
        backend_id: &str,
    ) -> Result<BackendSimulator, BackendError> {
        let _ = host;
        self.get(backend_id).await
    }

    /// [`book`](Self::book) on `host`.
    async fn book_on(
        &self,
        host: Option<&SimulatorHost>,
        backend_id: &str,
        symbol: &Symbol,
    ) -> Result<BookView, BackendError> {
        let _ = host;
        self.book(backend_id, symbol).await
    }

    /// Whether `host` is still among the healthy servers (waiting, at a cold start, for the
    /// first list); a server that is not has lost its simulators.
    async fn serves(&self, host: &SimulatorHost) -> bool {
        let _ = host;
        true
    }
}
