//! What a use case can fail with, in terms an edge (HTTP, WebSocket) maps to a response once.

use crate::backend::BackendError;
use crate::domain::{TransitionError, ValidationError};
use crate::store::{Quota, StoreError};

/// Why a use case did not happen. Unless said otherwise, nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule; the error names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such resource for this caller (missing, expired, or another user's).
    #[error("{entity} {id} not found")]
    NotFound {
        /// The kind of resource.
        entity: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A quota is reached.
    #[error("quota {quota} of {limit} reached")]
    QuotaExceeded {
        /// Which quota.
        quota: Quota,
        /// Its limit.
        limit: u32,
    },
    /// The session is closed, so nothing can be added to it.
    #[error("session {id} is closed")]
    SessionClosed {
        /// The session.
        id: String,
    },
    /// The resource is in a state that does not allow this.
    #[error(transparent)]
    InvalidState(#[from] TransitionError),
    /// The simulator is not running, so it has no book or stream to offer.
    #[error("simulator {id} is {status}")]
    SimulatorNotRunning {
        /// The simulator.
        id: String,
        /// Its state.
        status: &'static str,
    },
    /// The caller's bearer token, or every token of its subject, is revoked (for a ticket:
    /// the token it was minted with).
    #[error("the token is revoked")]
    TokenRevoked,
    /// A connect ticket was refused.
    #[error("ticket refused: {0}")]
    TicketRefused(#[from] super::connections::TicketRefusal),
    /// The simulator backend refused or could not be reached.
    #[error("simulator backend: {0}")]
    Backend(#[from] BackendError),
    /// This deployment lacks a setting the operation needs.
    #[error("not configured: {setting}")]
    NotConfigured {
        /// The missing setting.
        setting: &'static str,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// A bug or an impossible state; details are in the log, not in responses.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// `NotFound` for `entity` with `id`.
    pub fn not_found(entity: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QuotaExceeded { quota, limit } => Self::QuotaExceeded { quota, limit },
            StoreError::SessionNotActive { id } => Self::SessionClosed { id },
            StoreError::NotFound { entity, id } => Self::NotFound { entity, id },
            other => Self::Store(other),
        }
    }
}
