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
    /// A connect ticket minted by another region: only that region admits it.
    #[error("the ticket was issued for region {region}; connect there")]
    TicketWrongRegion {
        /// The ticket's region.
        region: crate::domain::RegionName,
    },
    /// The simulator backend refused or could not be reached.
    #[error("simulator backend: {0}")]
    Backend(#[from] BackendError),
    /// A write to a session homed in another region (`docs/multi-region.md`): nothing was
    /// claimed or written here; the client resends it to the home region's API.
    #[error("session {session} is homed in {home_region}; send writes there")]
    WrongRegion {
        /// The session.
        session: String,
        /// Its home region.
        home_region: crate::domain::RegionName,
        /// The home's epoch as this region knows it (1 when only the id was known).
        home_epoch: u64,
        /// The home region's HTTP API base URL, if configured (`regions.apis`).
        home_api: Option<String>,
    },
    /// This deployment lacks a setting the operation needs.
    #[error("not configured: {setting}")]
    NotConfigured {
        /// The missing setting.
        setting: &'static str,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// A bug or an impossible state. The edge logs it with its cause chain ([`error_chain`])
    /// and answers an opaque error: neither the context nor the cause reaches a client.
    #[error("internal error: {context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The failure underneath, if an error caused it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl ServiceError {
    /// `NotFound` for `entity` with `id`.
    pub fn not_found(entity: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// `Internal`: doing `context` failed because of `source`, which is kept as the cause.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// `Internal` without an underlying error: a broken invariant, described by `context`.
    pub fn bug(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }
}

/// `error` and each of its causes, joined by `: `, for the log (a cause that only repeats its
/// wrapper's text is skipped).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let line = inner.to_string();
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = inner.source();
    }
    text
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QuotaExceeded { quota, limit } => Self::QuotaExceeded { quota, limit },
            StoreError::SessionNotActive { id } => Self::SessionClosed { id },
            StoreError::NotFound { entity, id } => Self::NotFound { entity, id },
            // The store's fence (a write racing a failover, or one the edge did not check):
            // the store knows no API URLs, so the answer names the region only.
            StoreError::NotHome {
                id,
                home_region,
                home_epoch,
            } => Self::WrongRegion {
                session: id,
                home_region,
                home_epoch,
                home_api: None,
            },
            other => Self::Store(other),
        }
    }
}
