//! Health of the control plane: `ok`, `degraded` (it serves, but a dependency is failing) or
//! `down` (it cannot serve: the store is failing), with each dependency's state.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use std::sync::Arc;

use crate::backend::{BackendError, SimulatorBackend};
use crate::domain::SessionId;
use crate::resilience::BreakerState;
use crate::store::SessionStore;

/// How long a health probe may take before its dependency counts as failing (within the
/// Kubernetes readiness probe's 2 s).
const PROBE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The deadline of the simulator service's probe call: inside [`PROBE_TIMEOUT`], so that the
/// call always ends with an outcome its circuit breaker records (an answer, or a failure at the
/// deadline) instead of being dropped by the timeout while it holds the breaker's half-open
/// probe. (The backend's own deadline, `backends.deadline_ms`, 2 s by default, and its retries
/// are longer than the timeout.)
const BACKEND_PROBE_DEADLINE: Duration = Duration::from_millis(1_250);

/// How long a health answer is reused: `/v1/health` is anonymous, so without this every request
/// would read the store and call the simulator service (a flood of health checks would become a
/// flood of both). Short enough that a load balancer or a person sees a change within seconds.
pub const HEALTH_CACHE_TTL: Duration = Duration::from_secs(2);

/// The last health answer, shared by every request of a process; one probe at a time.
#[derive(Debug, Default)]
pub(super) struct HealthCache {
    /// Held across a probe, so concurrent requests wait for the probe under way and share its
    /// answer (single flight) instead of probing in parallel.
    last: Mutex<Option<(Instant, Health)>>,
}

impl HealthCache {
    /// The answer of at most `ttl` ago, or the one `probe` gives now.
    pub(super) async fn get_or_probe<F>(&self, ttl: Duration, probe: F) -> Health
    where
        F: Future<Output = Health>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, health)) = last.as_ref()
            && at.elapsed() < ttl
        {
            return health.clone();
        }
        let health = probe.await;
        *last = Some((Instant::now(), health.clone()));
        health
    }
}

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

/// Probes the store and the simulator service, one probe per [`HEALTH_CACHE_TTL`] per process.
#[derive(Debug, Clone)]
pub(super) struct HealthProbe {
    sessions: Arc<dyn SessionStore>,
    backend: Arc<dyn SimulatorBackend>,
    /// The last answer (shared by clones: one per process).
    cache: Arc<HealthCache>,
}

impl HealthProbe {
    /// A probe of `sessions` (a read) and `backend`.
    pub(super) fn new(sessions: Arc<dyn SessionStore>, backend: Arc<dyn SimulatorBackend>) -> Self {
        Self {
            sessions,
            backend,
            cache: Arc::default(),
        }
    }

    /// The health of the store and the simulator service, probed at most once per
    /// [`HEALTH_CACHE_TTL`] per process.
    pub(super) async fn get(&self) -> Health {
        self.cache
            .get_or_probe(HEALTH_CACHE_TTL, self.probe_health())
            .await
    }

    /// Probes the store (a read) and the simulator service (a status read of an id that does
    /// not exist: `not found` proves it answers), concurrently and bounded in time.
    async fn probe_health(&self) -> Health {
        let probe_id = SessionId::generate();
        let store = async {
            match tokio::time::timeout(PROBE_TIMEOUT, self.sessions.get_session(&probe_id)).await {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn health(status: HealthStatus) -> Health {
        Health {
            status,
            dependencies: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_reused_until_it_is_older_than_the_ttl() {
        let cache = HealthCache::default();
        let probes = AtomicU32::new(0);
        let probe = |status| {
            probes.fetch_add(1, Ordering::SeqCst);
            std::future::ready(health(status))
        };

        let first = cache
            .get_or_probe(HEALTH_CACHE_TTL, probe(HealthStatus::Ok))
            .await;
        tokio::time::advance(HEALTH_CACHE_TTL.saturating_sub(Duration::from_millis(1))).await;
        let reused = cache
            .get_or_probe(HEALTH_CACHE_TTL, async { unreachable!("reused") })
            .await;
        tokio::time::advance(Duration::from_millis(1)).await;
        let fresh = cache
            .get_or_probe(HEALTH_CACHE_TTL, probe(HealthStatus::Down))
            .await;

        assert_eq!(first.status, HealthStatus::Ok);
        assert_eq!(reused.status, HealthStatus::Ok);
        assert_eq!(fresh.status, HealthStatus::Down);
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_the_probe_under_way() {
        let cache = std::sync::Arc::new(HealthCache::default());
        let probes = std::sync::Arc::new(AtomicU32::new(0));
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (cache, probes) = (cache.clone(), probes.clone());
            requests.spawn(async move {
                let slow_probe = async {
                    probes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    health(HealthStatus::Degraded)
                };
                cache.get_or_probe(HEALTH_CACHE_TTL, slow_probe).await
            });
        }

        let answers = requests.join_all().await;

        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert_eq!(answers.len(), 50);
        assert!(answers.iter().all(|h| h.status == HealthStatus::Degraded));
    }
}
