//! Sessions: create under the owner's quota, list, inspect, close.

use tracing::{instrument, warn};

use super::{ServiceError, SessionService};
use crate::auth::Principal;
use crate::domain::{NewSession, Page, PageRequest, Session, SessionId, Simulator};
use crate::store::StoreError;

/// A session with what hangs off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetail {
    /// The session.
    pub session: Session,
    /// Its simulators, oldest first.
    pub simulators: Vec<Simulator>,
    /// Its live WebSocket connections.
    pub connections: usize,
}

impl SessionService {
    /// Opens a session for the caller, within the open-sessions quota.
    #[instrument(skip_all, fields(user = %caller.user, session_id = tracing::field::Empty))]
    pub async fn create_session(
        &self,
        caller: &Principal,
        request: NewSession,
    ) -> Result<Session, ServiceError> {
        let session = Session::open_in(
            caller.user.clone(),
            request,
            self.clock.now(),
            self.limits.session_lifetime_secs,
            self.regions.birth_region(),
        );
        tracing::Span::current().record("session_id", tracing::field::display(&session.id));
        self.sessions
            .create_session(&session, self.limits.sessions_per_user)
            .await?;
        Ok(session)
    }

    /// The caller's live sessions, newest first.
    pub async fn list_sessions(
        &self,
        caller: &Principal,
        page: &PageRequest,
    ) -> Result<Page<Session>, ServiceError> {
        Ok(self.sessions.list_sessions(&caller.user, page).await?)
    }

    /// One of the caller's sessions with its simulators and connection count.
    pub async fn session_detail(
        &self,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<SessionDetail, ServiceError> {
        let session = self.owned_session(caller, id).await?;
        let (simulators, connections) = tokio::try_join!(
            self.simulators.list_simulators(id),
            self.connections.list_connections(id)
        )?;
        Ok(SessionDetail {
            session,
            simulators,
            connections: connections.len(),
        })
    }

    /// Closes one of the caller's sessions and stops its simulators. Idempotent: closing a
    /// closed session returns it as it is.
    ///
    /// The session is closed first, so no simulator can be added while the others stop; a
    /// simulator the backend cannot stop now stays `stopping` and is settled by a later read.
    /// Its tickets die with it: a ticket is only honoured for an active session.
    #[instrument(skip_all, fields(user = %caller.user, session_id = %id))]
    pub async fn close_session(
        &self,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<Session, ServiceError> {
        let mut session = self.owned_session(caller, id).await?;
        let closed = loop {
            if !session.is_usable(self.clock.now()) {
                break session;
            }
            let next = session.close(self.clock.now())?;
            match self.sessions.update_session(&session, &next).await {
                Ok(()) => break next,
                Err(StoreError::Conflict { .. }) => {
                    session = self.owned_session(caller, id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        for simulator in self.simulators.list_simulators(id).await? {
            if simulator.status.is_terminal() {
                continue;
            }
            if let Err(e) = self.stop(simulator).await {
                warn!(error = %e, "a simulator of a closed session could not be stopped yet");
            }
        }
        Ok(closed)
    }
}
