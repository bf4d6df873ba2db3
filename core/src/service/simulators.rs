//! Simulators: start one for a session (under its quota), read its status reconciled with the
//! backend, read a book, stop it.
//!
//! The record is written `starting` before the backend is asked, with this service's id as the
//! backend's idempotency token. So a request that dies half-way leaves a record that a later
//! read completes ([`SessionService::settle`]): asking the backend again with the same token
//! returns the instance it may have started, never a second one. A failed start ends `failed`
//! with a reason, never stuck in `starting`.
//!
//! With discovered servers, the server is chosen (and recorded) before the start, and every
//! later call goes to it. A simulator whose server is no longer among the healthy ones ends
//! `failed`, its reason naming the server: it is noticed by the next status read, stop or
//! book read, and written conditionally on the version read (so at most once).

use tracing::{info, instrument, warn};

use super::{ServiceError, SessionService};
use crate::auth::Principal;
use crate::backend::{BackendError, BackendSimulator, StartSpec};
use crate::domain::{
    BookView, NewSimulator, SessionId, Simulator, SimulatorId, SimulatorStatus, Symbol,
};
use crate::store::{SimulatorQuotas, StoreError};

impl SessionService {
    /// Starts a simulator in one of the caller's active sessions. The answer is the record after
    /// the backend's answer: `running` (or `starting`), or `failed` with a reason.
    #[instrument(skip_all, fields(user = %caller.user, session_id = %session_id))]
    pub async fn start_simulator(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        request: NewSimulator,
    ) -> Result<Simulator, ServiceError> {
        let session = self.owned_session(caller, session_id).await?;
        if !session.is_usable(self.clock.now()) {
            return Err(ServiceError::SessionClosed {
                id: session_id.to_string(),
            });
        }
        let placement = self.backend.place().await?;
        let mut simulator = Simulator::starting(&session, request, self.clock.now());
        simulator.host.clone_from(&placement.host);
        self.simulators
            .create_simulator(
                &simulator,
                &session.owner,
                SimulatorQuotas::of(&self.limits),
            )
            .await?;
        // `placement` counts the start on its server until it is answered.
        let started = self.complete_start(simulator).await;
        drop(placement);
        started
    }

    /// One of the caller's simulators, reconciled with the backend where that is cheap.
    pub async fn get_simulator(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        id: &SimulatorId,
    ) -> Result<Simulator, ServiceError> {
        let simulator = self.owned_simulator(caller, session_id, id).await?;
        self.settle(simulator).await
    }

    /// The authoritative book of one symbol of a running simulator.
    pub async fn simulator_book(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        id: &SimulatorId,
        symbol: &Symbol,
    ) -> Result<BookView, ServiceError> {
        let simulator = self.owned_simulator(caller, session_id, id).await?;
        let simulator = self.unless_lost(simulator).await?;
        if !simulator.symbols.contains(symbol) {
            // A book that does not exist, like an unknown simulator: the input is well formed.
            return Err(ServiceError::not_found("symbol", symbol.as_str()));
        }
        let backend_id = match (&simulator.backend_id, simulator.status) {
            (Some(backend_id), SimulatorStatus::Running | SimulatorStatus::Starting) => {
                backend_id.clone()
            }
            _ => {
                return Err(ServiceError::SimulatorNotRunning {
                    id: id.to_string(),
                    status: simulator.status.as_str(),
                });
            }
        };
        Ok(self
            .backend
            .book_on(simulator.host.as_ref(), &backend_id, symbol)
            .await?)
    }

    /// Stops one of the caller's simulators. Idempotent: a stopped or failed simulator is
    /// returned as it is. A simulator the backend cannot stop now stays `stopping`.
    #[instrument(skip_all, fields(user = %caller.user, session_id = %session_id, simulator = %id))]
    pub async fn stop_simulator(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        id: &SimulatorId,
    ) -> Result<Simulator, ServiceError> {
        let simulator = self.owned_simulator(caller, session_id, id).await?;
        self.stop(simulator).await
    }

    async fn owned_simulator(
        &self,
        caller: &Principal,
        session_id: &SessionId,
        id: &SimulatorId,
    ) -> Result<Simulator, ServiceError> {
        self.owned_session(caller, session_id).await?;
        self.simulators
            .get_simulator(session_id, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("simulator", id))
    }

    /// Asks the backend to start `simulator` (idempotently) and records the outcome.
    async fn complete_start(&self, simulator: Simulator) -> Result<Simulator, ServiceError> {
        let outcome = self
            .backend
            .start_on(simulator.host.as_ref(), &start_spec(&simulator))
            .await;
        let next = match &outcome {
            Ok(started) => self.follow(&simulator, started)?,
            Err(e) => {
                warn!(simulator = %simulator.id, error = %e, "simulator start failed");
                simulator.transition(
                    SimulatorStatus::Failed,
                    Some(start_failure_reason(e)),
                    self.clock.now(),
                )?
            }
        };
        match self.simulators.update_simulator(&simulator, &next).await {
            Ok(()) => Ok(next),
            Err(StoreError::Conflict { .. }) => {
                // Stopped while starting (a DELETE got in first): stop what was started.
                let current = self
                    .simulators
                    .get_simulator(&simulator.session_id, &simulator.id)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("simulator", &simulator.id))?;
                match outcome {
                    Ok(started) if current.status == SimulatorStatus::Stopping => {
                        let mut current = current;
                        if current.backend_id.is_none() {
                            current = self
                                .save(&current, |s| {
                                    s.backend_id = Some(started.backend_id.clone());
                                })
                                .await?;
                        }
                        self.stop(current).await
                    }
                    _ => Ok(current),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Brings a record in line with the backend:
    /// - `starting` or `stopping` without a backend id, left by a request that died: finish the
    ///   start (idempotent), then the stop if one was asked;
    /// - `stopping`: stop;
    /// - `starting` or `running`: adopt the backend's state (running, failed, gone).
    ///
    /// Backend failures leave the record as it is: a read never fails because the backend
    /// is down.
    async fn settle(&self, simulator: Simulator) -> Result<Simulator, ServiceError> {
        let simulator = self.unless_lost(simulator).await?;
        let stale = simulator.updated_at.plus(self.settle_after) <= self.clock.now();
        let original = simulator.clone();
        let settled = match (simulator.status, &simulator.backend_id) {
            (SimulatorStatus::Starting, None) if stale => self.complete_start(simulator).await,
            (SimulatorStatus::Stopping, None) if stale => self.stop(simulator).await,
            (SimulatorStatus::Stopping, Some(_)) => self.stop(simulator).await,
            (SimulatorStatus::Starting | SimulatorStatus::Running, Some(backend_id)) => {
                let backend_id = backend_id.clone();
                match self
                    .backend
                    .get_on(simulator.host.as_ref(), &backend_id)
                    .await
                {
                    Ok(seen) if seen.status != simulator.status => {
                        let next = self.follow(&simulator, &seen)?;
                        self.replace(&simulator, &next).await
                    }
                    Ok(_) => Ok(simulator),
                    Err(BackendError::NotFound(_)) => {
                        let next = simulator.transition(
                            SimulatorStatus::Failed,
                            Some("the simulator service no longer knows this simulator".into()),
                            self.clock.now(),
                        )?;
                        self.replace(&simulator, &next).await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(simulator),
        };
        match settled {
            Err(ServiceError::Backend(e)) => {
                warn!(simulator = %original.id, error = %e, "could not settle with the backend");
                Ok(original)
            }
            other => other,
        }
    }

    /// Moves a simulator to `stopping` (recorded first), asks the backend to stop it, and
    /// records `stopped`.
    pub(super) async fn stop(&self, simulator: Simulator) -> Result<Simulator, ServiceError> {
        let mut simulator = self.unless_lost(simulator).await?;
        loop {
            match simulator.status {
                SimulatorStatus::Stopped | SimulatorStatus::Failed => return Ok(simulator),
                SimulatorStatus::Starting | SimulatorStatus::Running => {
                    let next =
                        simulator.transition(SimulatorStatus::Stopping, None, self.clock.now())?;
                    simulator = self.replace(&simulator, &next).await?;
                }
                SimulatorStatus::Stopping => break,
            }
        }
        let backend_id = match &simulator.backend_id {
            Some(id) => id.clone(),
            None if simulator.updated_at.plus(self.settle_after) > self.clock.now() => {
                // A start is in flight; it sees `stopping` when it records its outcome and
                // stops the instance itself.
                return Ok(simulator);
            }
            None => {
                // The request that started it died; learn the instance (idempotently) to stop it.
                self.backend
                    .start_on(simulator.host.as_ref(), &start_spec(&simulator))
                    .await?
                    .backend_id
            }
        };
        match self
            .backend
            .stop_on(simulator.host.as_ref(), &backend_id)
            .await
        {
            Ok(_) | Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut next = simulator.transition(SimulatorStatus::Stopped, None, self.clock.now())?;
        next.backend_id = Some(backend_id);
        info!(simulator = %simulator.id, "simulator stopped");
        self.replace(&simulator, &next).await
    }

    /// `simulator`, or, when the server hosting it is no longer among the healthy ones, the
    /// record ended `failed` with a reason naming the server. The write is conditional on the
    /// version read: of concurrent readers one ends it, the others read its outcome.
    async fn unless_lost(&self, simulator: Simulator) -> Result<Simulator, ServiceError> {
        let Some(host) = simulator.host.as_ref() else {
            return Ok(simulator);
        };
        if simulator.status.is_terminal() || self.backend.serves(host).await {
            return Ok(simulator);
        }
        warn!(simulator = %simulator.id, server = %host, "simulator server lost");
        let next = simulator.transition(
            SimulatorStatus::Failed,
            Some(format!(
                "the simulator server {host} is gone (no longer among the healthy servers); start a new simulator"
            )),
            self.clock.now(),
        )?;
        self.replace(&simulator, &next).await
    }

    /// The record after the backend reported `seen` (a start's answer or a status read).
    fn follow(
        &self,
        simulator: &Simulator,
        seen: &BackendSimulator,
    ) -> Result<Simulator, ServiceError> {
        let now = self.clock.now();
        let mut next = match seen.status {
            SimulatorStatus::Starting if simulator.status == SimulatorStatus::Starting => {
                Simulator {
                    updated_at: now,
                    version: simulator.version + 1,
                    ..simulator.clone()
                }
            }
            SimulatorStatus::Stopped | SimulatorStatus::Stopping => simulator.transition(
                SimulatorStatus::Failed,
                Some("the simulator service stopped it".to_owned()),
                now,
            )?,
            status => simulator.transition(status, seen.reason.clone(), now)?,
        };
        next.backend_id = Some(seen.backend_id.clone());
        Ok(next)
    }

    /// Writes `next` over `previous`; on a concurrent change, returns the current record.
    async fn replace(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<Simulator, ServiceError> {
        match self.simulators.update_simulator(previous, next).await {
            Ok(()) => Ok(next.clone()),
            Err(StoreError::Conflict { .. }) => self
                .simulators
                .get_simulator(&previous.session_id, &previous.id)
                .await?
                .ok_or_else(|| ServiceError::not_found("simulator", &previous.id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a copy of `simulator` changed by `change`, with a new version.
    async fn save(
        &self,
        simulator: &Simulator,
        change: impl FnOnce(&mut Simulator),
    ) -> Result<Simulator, ServiceError> {
        let mut next = simulator.clone();
        change(&mut next);
        next.version += 1;
        next.updated_at = self.clock.now();
        self.simulators.update_simulator(simulator, &next).await?;
        Ok(next)
    }
}

/// The backend's start request for `simulator`; its id is the idempotency token.
fn start_spec(simulator: &Simulator) -> StartSpec {
    StartSpec {
        client_token: simulator.id.clone(),
        symbols: simulator.symbols.clone(),
        seed: simulator.seed,
        events_per_second: simulator.events_per_second,
    }
}

/// A client-safe reason for a failed start: the backend's refusal (meant for clients), or a
/// fixed text when it could not be reached (its transport errors stay in the log).
fn start_failure_reason(e: &BackendError) -> String {
    match e {
        BackendError::Refused(message) | BackendError::NotFound(message) => {
            format!("the simulator service refused the start: {message}")
        }
        BackendError::Unavailable(_) | BackendError::CircuitOpen(_) => {
            "the simulator service was unavailable; start a new simulator to retry".to_owned()
        }
    }
}
