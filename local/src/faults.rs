//! The local stack's backend servers as a fleet that can fail: N simulator servers
//! (`simulator-server-1`...) and the auth service (`auth-service`), each registered in Cloud
//! Map, and `POST /_local/faults` (dev only, on the HTTP API's origin like `/_local/tokens`),
//! which kills or restores one of them:
//!
//! - `kill` cuts the server as a crash would (open streams end with no final status, the port
//!   refuses connections, a simulator server's instances are gone) and marks its instance
//!   `UNHEALTHY`, as its failing health check does in Cloud Map;
//! - `restore` starts it again on the same address (a simulator server with no instance, the
//!   auth service with the same keys, so tokens stay valid) and marks it `HEALTHY`.
//!
//! `GET /_local/faults` lists the targets and whether each is up (what the web page shows).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::net::TcpListener;

use crate::auth::{AuthHandle, AuthServer, AuthService};
use crate::cloudmap::{Registrar, RegistrarError};
use crate::server::ServerError;
use crate::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings, SimulatorView};
use crate::tokens::bad_request;

/// Where the route is mounted.
pub const PATH: &str = "/_local/faults";

/// The auth service's target name and Cloud Map instance id.
pub const AUTH_TARGET: &str = "auth-service";

/// The target name and Cloud Map instance id of simulator server `index` (from 1).
pub fn simulator_target(index: usize) -> String {
    format!("simulator-server-{index}")
}

/// The zone simulator server `index` (from 1) is registered in: `local-a`, `local-b`...
pub fn zone(index: usize) -> String {
    let letter = char::from(b'a' + u8::try_from((index - 1) % 26).unwrap_or(0));
    format!("local-{letter}")
}

/// What to do to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Crash it.
    Kill,
    /// Start it again.
    Restore,
}

/// Why a fault could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The target names no server of the stack.
    #[error("target: must be one of {known}, not {given:?}")]
    UnknownTarget {
        /// The name given.
        given: String,
        /// The names there are.
        known: String,
    },
    /// The server could not be stopped or started again.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Its health could not be set in Cloud Map.
    #[error(transparent)]
    Registry(#[from] RegistrarError),
}

/// One target's state, as `GET /_local/faults` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetState {
    /// `simulator-server-<i>` or `auth-service`.
    pub target: String,
    /// Where it listens (or listened, while killed).
    pub address: String,
    /// Its zone.
    pub zone: String,
    /// Whether it is serving.
    pub up: bool,
}

#[derive(Debug)]
struct SimulatorSlot {
    addr: SocketAddr,
    settings: SimulatorSettings,
    handle: Option<SimulatorHandle>,
}

#[derive(Debug)]
struct AuthSlot {
    addr: SocketAddr,
    auth: Arc<AuthService>,
    handle: Option<AuthHandle>,
}

/// The stack's backend servers and their registration.
#[derive(Debug)]
pub struct Fleet {
    registrar: Registrar,
    simulator_service: String,
    auth_service: String,
    simulators: Vec<Mutex<SimulatorSlot>>,
    auth: Mutex<AuthSlot>,
    /// Held while a fault is applied: one at a time, so a kill and a restore never interleave.
    applying: tokio::sync::Mutex<()>,
}

/// The slot behind `mutex`; never held across an await, so a poisoned one is whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// A fleet of running servers, each registered (healthy) through `registrar` in the
    /// services `simulator_service` and `auth_service`.
    ///
    /// # Errors
    /// A registration failed.
    pub async fn register(
        registrar: Registrar,
        (simulator_service, auth_service): (&str, &str),
        simulators: Vec<(SimulatorHandle, SimulatorSettings)>,
        auth: AuthHandle,
    ) -> Result<Self, FaultError> {
        for (i, (handle, _)) in simulators.iter().enumerate() {
            registrar
                .register(
                    simulator_service,
                    &simulator_target(i + 1),
                    handle.addr(),
                    &zone(i + 1),
                )
                .await?;
        }
        registrar
            .register(auth_service, AUTH_TARGET, auth.addr(), &zone(1))
            .await?;
        Ok(Self {
            registrar,
            simulator_service: simulator_service.to_owned(),
            auth_service: auth_service.to_owned(),
            simulators: simulators
                .into_iter()
                .map(|(handle, settings)| {
                    Mutex::new(SimulatorSlot {
                        addr: handle.addr(),
                        settings,
                        handle: Some(handle),
                    })
                })
                .collect(),
            auth: Mutex::new(AuthSlot {
                addr: auth.addr(),
                auth: Arc::clone(auth.auth()),
                handle: Some(auth),
            }),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    /// How many simulator servers there are.
    pub fn simulator_servers(&self) -> usize {
        self.simulators.len()
    }

    /// Simulator server `index` (from 1), while it runs.
    pub fn simulator(&self, index: usize) -> Option<SimulatorView> {
        let slot = lock(self.simulators.get(index.checked_sub(1)?)?);
        slot.handle.as_ref().map(SimulatorHandle::view)
    }

    /// Applies `fault` to `target`; applying it twice does nothing more.
    ///
    /// # Errors
    /// The target is unknown, or the server or the registry failed.
    pub async fn apply(&self, target: &str, fault: Fault) -> Result<TargetState, FaultError> {
        let _one_at_a_time = self.applying.lock().await;
        if target == AUTH_TARGET {
            return self.apply_auth(fault).await;
        }
        let index = target
            .strip_prefix("simulator-server-")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| (1..=self.simulators.len()).contains(i))
            .ok_or_else(|| FaultError::UnknownTarget {
                given: target.to_owned(),
                known: self.targets().join(", "),
            })?;
        let slot = &self.simulators[index - 1];
        match fault {
            Fault::Kill => {
                let handle = lock(slot).handle.take();
                if let Some(handle) = handle {
                    tracing::warn!(target, "killing a simulator server");
                    handle.kill().await?;
                    self.registrar
                        .set_health(&self.simulator_service, target, false)
                        .await?;
                }
            }
            Fault::Restore => {
                let stopped = {
                    let slot = lock(slot);
                    slot.handle.is_none().then_some((slot.addr, slot.settings))
                };
                if let Some((addr, settings)) = stopped {
                    let listener = rebind(addr).await?;
                    lock(slot).handle = Some(SimulatorServer::new(settings).spawn_on(listener)?);
                    self.registrar
                        .set_health(&self.simulator_service, target, true)
                        .await?;
                    tracing::info!(target, "simulator server restored");
                }
            }
        }
        Ok(self.simulator_state(index))
    }

    fn simulator_state(&self, index: usize) -> TargetState {
        let slot = lock(&self.simulators[index - 1]);
        TargetState {
            target: simulator_target(index),
            address: slot.addr.to_string(),
            zone: zone(index),
            up: slot.handle.is_some(),
        }
    }

    fn auth_state(&self) -> TargetState {
        let slot = lock(&self.auth);
        TargetState {
            target: AUTH_TARGET.to_owned(),
            address: slot.addr.to_string(),
            zone: zone(1),
            up: slot.handle.is_some(),
        }
    }

    async fn apply_auth(&self, fault: Fault) -> Result<TargetState, FaultError> {
        match fault {
            Fault::Kill => {
                let handle = lock(&self.auth).handle.take();
                if let Some(handle) = handle {
                    tracing::warn!(target = AUTH_TARGET, "killing the auth service");
                    handle.kill().await?;
                    self.registrar
                        .set_health(&self.auth_service, AUTH_TARGET, false)
                        .await?;
                }
            }
            Fault::Restore => {
                let stopped = {
                    let slot = lock(&self.auth);
                    slot.handle
                        .is_none()
                        .then(|| (slot.addr, Arc::clone(&slot.auth)))
                };
                if let Some((addr, auth)) = stopped {
                    let listener = rebind(addr).await?;
                    let server = AuthServer::from_service(auth);
                    lock(&self.auth).handle = Some(server.spawn_on(listener)?);
                    self.registrar
                        .set_health(&self.auth_service, AUTH_TARGET, true)
                        .await?;
                    tracing::info!(target = AUTH_TARGET, "auth service restored");
                }
            }
        }
        Ok(self.auth_state())
    }

    /// Every target's state.
    pub fn states(&self) -> Vec<TargetState> {
        (1..=self.simulators.len())
            .map(|i| self.simulator_state(i))
            .chain([self.auth_state()])
            .collect()
    }

    fn targets(&self) -> Vec<String> {
        (1..=self.simulators.len())
            .map(simulator_target)
            .chain([AUTH_TARGET.to_owned()])
            .collect()
    }

    /// Stops every server that runs, gracefully (the stack's shutdown).
    ///
    /// # Errors
    /// A server failed while running.
    pub async fn shutdown_simulators(&self) -> Result<(), ServerError> {
        for slot in &self.simulators {
            let handle = lock(slot).handle.take();
            if let Some(handle) = handle {
                handle.shutdown().await?;
            }
        }
        Ok(())
    }

    /// Stops the auth service gracefully (the stack's shutdown).
    ///
    /// # Errors
    /// The server failed while running.
    pub async fn shutdown_auth(&self) -> Result<(), ServerError> {
        let handle = lock(&self.auth).handle.take();
        match handle {
            Some(handle) => handle.shutdown().await,
            None => Ok(()),
        }
    }
}

/// Binds `addr` again; the killed server's socket may take a moment to be released.
async fn rebind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if attempt < 20 && e.kind() == std::io::ErrorKind::AddrInUse => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(ServerError::Listen(e)),
        }
    }
}

/// A request to `POST /_local/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    target: String,
    fault: String,
}

/// Applies a fault; bad input is a 400 naming the field.
pub async fn inject(State(fleet): State<Arc<Fleet>>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return bad_request(&format!(
                "the body is not a fault request ({{\"target\", \"fault\"}}): {e}"
            ));
        }
    };
    let fault = match request.fault.as_str() {
        "kill" => Fault::Kill,
        "restore" => Fault::Restore,
        other => return bad_request(&format!("fault: must be kill or restore, not {other:?}")),
    };
    match fleet.apply(&request.target, fault).await {
        Ok(state) => Json(state).into_response(),
        Err(e @ FaultError::UnknownTarget { .. }) => bad_request(&e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, target = request.target, ?fault, "cannot apply a fault");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "message": "cannot apply the fault" })),
            )
                .into_response()
        }
    }
}

/// Every target and whether it is up.
pub async fn list(State(fleet): State<Arc<Fleet>>) -> Response {
    Json(fleet.states()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_follow_the_alphabet_from_local_a() {
        assert_eq!(zone(1), "local-a");
        assert_eq!(zone(2), "local-b");
        assert_eq!(zone(27), "local-a");
        assert_eq!(simulator_target(2), "simulator-server-2");
    }
}
