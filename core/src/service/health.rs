//! Health of the control plane: `ok`, `degraded` (it serves, but a dependency is failing) or
//! `down` (it cannot serve: the store is failing), with each dependency's state.

use std::time::Duration;

use super::SessionService;
use crate::backend::BackendError;
use crate::domain::SessionId;
use crate::resilience::BreakerState;

/// How long a health probe may take before its dependency counts as failing (within the
/// Kubernetes readiness probe's 2 s).
const PROBE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The deadline of the simulator service's probe call: inside [`PROBE_TIMEOUT`], so that the
/// call always ends with an outcome its circuit breaker records (an answer, or a failure at the
/// deadline) instead of being dropped by the timeout while it holds the breaker's half-open
/// probe. (The backend's own deadline, `backends.deadline_ms`, 2 s by default, and its retries
/// are longer than the timeout.)
const BACKEND_PROBE_DEADLINE: Duration = Duration::from_millis(1_250);

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// Everything answers.
    Ok,
    /// Requests are served, some fail (e.g. starting simulators).
    Degraded,
    /// Requests cannot be served.
    Down,
}

impl HealthStatus {
    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// One dependency's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyState {
    /// It answered.
    Ok,
    /// It did not answer, or its circuit breaker is open.
    Failing,
}

/// One dependency and what the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// Its name (`store`, `simulator_service`).
    pub name: &'static str,
    /// Its state.
    pub state: DependencyState,
    /// A client-safe word on why it is failing.
    pub detail: Option<&'static str>,
}

/// The answer of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Each dependency.
    pub dependencies: Vec<Dependency>,
}

impl SessionService {
    /// Probes the store (a read) and the simulator service (a status read of an id that does
    /// not exist: `not found` proves it answers), concurrently and bounded in time.
    pub async fn health(&self) -> Health {
        let probe_id = SessionId::generate();
        let store = async {
            match tokio::time::timeout(PROBE_TIMEOUT, self.store.get_session(&probe_id)).await {
                Ok(Ok(_)) => (DependencyState::Ok, None),
                Ok(Err(_)) => (DependencyState::Failing, Some("error")),
                Err(_) => (DependencyState::Failing, Some("timeout")),
            }
        };
        let backend = async {
            if self.backend.breaker_state() == BreakerState::Open {
                return (DependencyState::Failing, Some("circuit_open"));
            }
            let probe = self.backend.probe("health-probe", BACKEND_PROBE_DEADLINE);
            match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                Ok(Ok(()) | Err(BackendError::NotFound(_) | BackendError::Refused(_))) => {
                    (DependencyState::Ok, None)
                }
                Ok(Err(BackendError::CircuitOpen(_))) => {
                    (DependencyState::Failing, Some("circuit_open"))
                }
                Ok(Err(BackendError::Unavailable(_))) => {
                    (DependencyState::Failing, Some("unavailable"))
                }
                Err(_) => (DependencyState::Failing, Some("timeout")),
            }
        };
        let ((store_state, store_detail), (backend_state, backend_detail)) =
            tokio::join!(store, backend);
        let status = match (store_state, backend_state) {
            (DependencyState::Failing, _) => HealthStatus::Down,
            (_, DependencyState::Failing) => HealthStatus::Degraded,
            _ => HealthStatus::Ok,
        };
        Health {
            status,
            dependencies: vec![
                Dependency {
                    name: "store",
                    state: store_state,
                    detail: store_detail,
                },
                Dependency {
                    name: "simulator_service",
                    state: backend_state,
                    detail: backend_detail,
                },
            ],
        }
    }
}
