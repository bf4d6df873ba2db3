//! Unit tests of the use cases, over the in-memory store, a manual clock the tests advance and a
//! small in-process simulator backend (the real one is a gRPC service; its adapter has its own
//! tests). One file per area.

mod connections;
mod errors;
mod health;
mod revocations;
mod sessions;
mod simulators;
mod tickets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{ConnectAuthorizer, ConnectionService, ServiceParts, SessionService, StreamService};
use crate::auth::keys::{SigningKey, VerifyKeys};
use crate::auth::{Principal, RevocationCheck, TicketSigner, TicketVerifier};
use crate::backend::{BackendError, BackendSimulator, SimulatorBackend, StartSpec};
use crate::clock::{Clock as _, ManualClock};
use crate::config::{Limits, StreamingSettings, WebSocketSettings};
use crate::domain::{
    BookView, EventId, NewSession, NewSimulator, Session, Simulator, SimulatorStatus, Symbol,
    Timestamp, UserId,
};
use crate::resilience::BreakerState;
use crate::store::{InMemoryStore, SharedStore};

/// Where every test's clock starts (2027-01-15).
const START: Timestamp = Timestamp::from_unix_millis(1_800_000_000_000);
/// How long a backend call may take, retries included: a half-done start is settled after
/// twice this.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the doors cache a revocation answer.
const REVOCATION_CACHE: Duration = Duration::from_secs(5);
/// How long a connect ticket lives.
const TICKET_TTL: Duration = Duration::from_secs(60);
/// The longest life of a bearer token.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(24 * 3600);

/// A backend call, to make it fail or to count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Start,
    Stop,
    Get,
    Book,
    Probe,
}

/// The simulator service in process: instances by backend id, one per start token, and the
/// failures a test sets per call until it clears them.
#[derive(Debug)]
struct FakeBackend {
    state: Mutex<FakeState>,
}

#[derive(Debug)]
struct FakeState {
    instances: HashMap<String, BackendSimulator>,
    failures: HashMap<Call, BackendError>,
    calls: HashMap<Call, usize>,
    breaker: BreakerState,
}

impl FakeBackend {
    fn new() -> Self {
        Self {
            state: Mutex::new(FakeState {
                instances: HashMap::new(),
                failures: HashMap::new(),
                calls: HashMap::new(),
                breaker: BreakerState::Closed,
            }),
        }
    }

    /// Every `call` fails with `error` until [`Self::recover`].
    fn fail(&self, call: Call, error: BackendError) {
        self.lock().failures.insert(call, error);
    }

    fn recover(&self, call: Call) {
        self.lock().failures.remove(&call);
    }

    fn set_breaker(&self, state: BreakerState) {
        self.lock().breaker = state;
    }

    /// The instance changes state on its own (it failed, or it was stopped behind our back).
    fn set_status(&self, backend_id: &str, status: SimulatorStatus, reason: Option<&str>) {
        let mut state = self.lock();
        let instance = state
            .instances
            .get_mut(backend_id)
            .expect("a started instance");
        instance.status = status;
        instance.reason = reason.map(str::to_owned);
    }

    /// The backend loses the instance (restarted without its state).
    fn forget(&self, backend_id: &str) {
        self.lock().instances.remove(backend_id);
    }

    fn calls(&self, call: Call) -> usize {
        self.lock().calls.get(&call).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake backend poisoned")
    }

    /// Counts `call`, then fails it if a test said so.
    fn enter(&self, call: Call) -> Result<std::sync::MutexGuard<'_, FakeState>, BackendError> {
        let mut state = self.lock();
        *state.calls.entry(call).or_default() += 1;
        match state.failures.get(&call) {
            Some(error) => Err(error.clone()),
            None => Ok(state),
        }
    }
}

fn unknown(backend_id: &str) -> BackendError {
    BackendError::NotFound(format!("no simulator {backend_id}"))
}

#[async_trait]
impl SimulatorBackend for FakeBackend {
    async fn start(&self, spec: &StartSpec) -> Result<BackendSimulator, BackendError> {
        let mut state = self.enter(Call::Start)?;
        let backend_id = format!("bk-{}", spec.client_token);
        let instance = state
            .instances
            .entry(backend_id.clone())
            .or_insert_with(|| BackendSimulator {
                backend_id,
                status: SimulatorStatus::Running,
                position: EventId {
                    epoch: 1,
                    sequence: 0,
                },
                reason: None,
            });
        Ok(instance.clone())
    }

    async fn stop(&self, backend_id: &str) -> Result<BackendSimulator, BackendError> {
        let mut state = self.enter(Call::Stop)?;
        let instance = state
            .instances
            .get_mut(backend_id)
            .ok_or_else(|| unknown(backend_id))?;
        instance.status = SimulatorStatus::Stopped;
        Ok(instance.clone())
    }

    async fn get(&self, backend_id: &str) -> Result<BackendSimulator, BackendError> {
        let state = self.enter(Call::Get)?;
        state
            .instances
            .get(backend_id)
            .cloned()
            .ok_or_else(|| unknown(backend_id))
    }

    async fn book(&self, backend_id: &str, symbol: &Symbol) -> Result<BookView, BackendError> {
        let state = self.enter(Call::Book)?;
        let instance = state
            .instances
            .get(backend_id)
            .ok_or_else(|| unknown(backend_id))?;
        Ok(BookView {
            symbol: symbol.as_str().to_owned(),
            at: instance.position,
            price_scale: 2,
            quantity_scale: 4,
            bids: Vec::new(),
            asks: Vec::new(),
        })
    }

    async fn probe(&self, backend_id: &str, _deadline: Duration) -> Result<(), BackendError> {
        let state = self.enter(Call::Probe)?;
        match state.instances.get(backend_id) {
            Some(_) => Ok(()),
            None => Err(unknown(backend_id)),
        }
    }

    fn breaker_state(&self) -> BreakerState {
        self.lock().breaker
    }
}

/// A service over fresh state, and handles on its parts.
struct Harness {
    service: SessionService,
    authorizer: ConnectAuthorizer,
    connections: ConnectionService,
    streams: StreamService,
    clock: ManualClock,
    store: Arc<InMemoryStore>,
    backend: Arc<FakeBackend>,
}

impl Harness {
    /// Production limits and settings, both ticket keys configured.
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        let key = SigningKey::generate("test-key").expect("a P-256 key");
        let verify_keys = VerifyKeys::of(&[&key]).expect("its public key");
        Self::build(
            limits,
            Some(TicketSigner::new(key, TICKET_TTL)),
            Some(TicketVerifier::new(verify_keys)),
        )
    }

    /// A deployment without ticket keys (neither signer nor verifier).
    fn without_ticket_keys() -> Self {
        Self::build(Limits::default(), None, None)
    }

    fn build(
        limits: Limits,
        ticket_signer: Option<TicketSigner>,
        ticket_verifier: Option<TicketVerifier>,
    ) -> Self {
        let clock = ManualClock::new(START);
        let store = Arc::new(InMemoryStore::new(Arc::new(clock.clone())));
        let backend = Arc::new(FakeBackend::new());
        let parts = ServiceParts {
            ticket_signer,
            ticket_verifier,
            limits,
            ..parts(store.clone(), &clock, backend.clone())
        };
        Self {
            authorizer: ConnectAuthorizer::new(&parts),
            connections: ConnectionService::new(&parts),
            streams: StreamService::new(&parts),
            service: SessionService::new(parts),
            clock,
            store,
            backend,
        }
    }

    /// The caller `user`, with token `tok-<user>` valid for an hour from now.
    fn caller(&self, user: &str) -> Principal {
        Principal {
            user: UserId::parse("sub", user).expect("a user id"),
            scopes: Vec::new(),
            expires_at: self.clock.now().plus(Duration::from_secs(3600)),
            token_id: format!("tok-{user}"),
        }
    }

    async fn session(&self, caller: &Principal) -> Session {
        self.service
            .create_session(caller, NewSession::default())
            .await
            .expect("a session")
    }

    /// A running simulator of `session` (the backend answers the start).
    async fn simulator(&self, caller: &Principal, session: &Session) -> Simulator {
        self.service
            .start_simulator(caller, &session.id, new_simulator())
            .await
            .expect("a simulator")
    }
}

/// What a service over `store` and `backend` is built from: production settings, no ticket keys.
fn parts(store: SharedStore, clock: &ManualClock, backend: Arc<FakeBackend>) -> ServiceParts {
    ServiceParts {
        store: store.clone(),
        backend,
        ticket_signer: None,
        ticket_verifier: None,
        clock: Arc::new(clock.clone()),
        limits: Limits::default(),
        streaming: StreamingSettings::default(),
        websocket: WebSocketSettings::default(),
        backend_patience: PATIENCE,
        revocations: RevocationCheck::new(store, Arc::new(clock.clone()), REVOCATION_CACHE, 100),
        max_token_life: MAX_TOKEN_LIFE,
    }
}

/// A request for one `BTC-USD` simulator at 50 events per second.
fn new_simulator() -> NewSimulator {
    NewSimulator::parse(&["BTC-USD".to_owned()], Some(7), Some(50)).expect("a valid request")
}
