//! What the samples run against: a router or session service over a fresh in-memory store,
//! a simulator service of its own, and the sample session and simulator when seeded.

use std::sync::Arc;

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use serde_json::Value;
use session_core::auth::keys::{SigningKey, VerifyKeys};
use session_core::backend::{SimulatorBackend, StartSpec};
use session_core::clock::{Clock, SystemClock};
use session_core::config::Settings;
use session_core::domain::{
    NewSession, NewSimulator, Session, SessionId, SessionName, Simulator, SimulatorId,
    SimulatorStatus, UserId,
};
use session_core::store::{InMemoryStore, SharedStore};
use session_local::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings};

use crate::{SESSION_ID, SIMULATOR_ID, USER};

/// One router over a fresh in-memory store, with a simulator service of its own (so a sample
/// that stops the simulator cannot change what the next sample sees).
pub(crate) struct World {
    router: axum::Router,
    /// Serves the router's backend; dropping it stops the server.
    _simulator: SimulatorHandle,
}

pub(crate) fn settings(simulator_url: String) -> Settings {
    let mut settings = Settings::default();
    settings.backends.simulator_url = simulator_url;
    let key = SigningKey::generate("events-test").expect("a ticket key");
    let keys = VerifyKeys::of(&[&key]).expect("its public half");
    settings
        .auth
        .set_ticket_keys(Some(key), Some(keys))
        .expect("a key pair that goes together");
    settings
}

pub(crate) async fn world(seeded: bool) -> anyhow::Result<World> {
    let simulator = SimulatorServer::spawn(SimulatorSettings::default())
        .await
        .context("spawning the simulator service")?;
    let settings = settings(simulator.endpoint());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: SharedStore = Arc::new(InMemoryStore::new(clock.clone()));
    let backend = session_functions::wiring::simulator_backend(&settings)?;
    if seeded {
        seed(&settings, &store, backend.as_ref(), clock.as_ref()).await?;
    }
    let app = session_functions::wiring::app(&settings, store, backend, clock);
    Ok(World {
        router: session_functions::http::router(app),
        _simulator: simulator,
    })
}

/// The session and the running simulator the samples name, owned by the samples' caller.
pub(crate) async fn seed(
    settings: &Settings,
    store: &SharedStore,
    backend: &dyn SimulatorBackend,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let now = clock.now();
    let session = Session {
        id: SessionId::parse("session_id", SESSION_ID)?,
        ..Session::open(
            UserId::parse("user", USER)?,
            NewSession {
                name: Some(SessionName::parse("name", "sample")?),
                metadata: None,
            },
            now,
            settings.limits.session_lifetime_secs,
        )
    };
    store
        .create_session(&session, settings.limits.sessions_per_user)
        .await?;
    let request =
        NewSimulator::parse(&["BTC-USD".to_owned(), "ETH-USD".to_owned()], Some(7), None)?;
    let id = SimulatorId::parse("simulator_id", SIMULATOR_ID)?;
    let started = backend
        .start(&StartSpec {
            client_token: id.clone(),
            symbols: request.symbols.clone(),
            seed: request.seed,
            events_per_second: request.events_per_second,
        })
        .await
        .context("starting the sample simulator on the simulator service")?;
    ensure!(
        started.status == SimulatorStatus::Running,
        "the simulator service answered {} to a start",
        started.status
    );
    let simulator = Simulator {
        id,
        status: SimulatorStatus::Running,
        backend_id: Some(started.backend_id),
        ..Simulator::starting(&session, request, now)
    };
    store
        .create_simulator(
            &simulator,
            &session.owner,
            session_core::store::SimulatorQuotas::of(&settings.limits),
        )
        .await?;
    Ok(())
}

/// A handler's answer as API Gateway receives it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: serde_json::Map<String, Value>,
    /// The body parsed as JSON (`Null` when empty).
    pub(crate) body: Value,
}

impl Reply {
    fn parse(response: &Value) -> anyhow::Result<Self> {
        let status = response["statusCode"]
            .as_u64()
            .context("the response has no statusCode")? as u16;
        let headers = response["headers"].as_object().cloned().unwrap_or_default();
        let text = response["body"].as_str().unwrap_or_default();
        let text = if response["isBase64Encoded"].as_bool() == Some(true) {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text)?)?
        } else {
            text.to_owned()
        };
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("the body is not JSON: {text}"))?
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub(crate) fn str(&self, pointer: &str) -> &str {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

pub(crate) async fn invoke(world: &World, event: Value) -> anyhow::Result<Reply> {
    let response = session_functions::invoke::invoke(world.router.clone(), event).await?;
    Reply::parse(&response)
}
