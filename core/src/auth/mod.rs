//! Who is calling: bearer tokens validated by the auth service, and connect tickets minted and
//! checked by this service.
//!
//! Browsers cannot put headers on `EventSource` or `WebSocket`, so REST calls carry a bearer
//! token while streaming connections carry a short-lived, single-use ticket (a JWT this service
//! signs, whose `jti` the store consumes once).

mod cache;
mod grpc;
pub mod keys;
mod principal;
mod revocation;
mod scope;
mod ticket;

use async_trait::async_trait;

pub use cache::TokenCache;
pub use grpc::GrpcTokenValidator;
pub use principal::Principal;
pub use revocation::{RevocationCheck, RevocationError};
pub use scope::{InsufficientScope, Scope};
pub use ticket::{TicketError, TicketSigner, TicketVerifier};

use crate::resilience::{Classify, ErrorClass};

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token is not valid; `reason` is a stable code (`expired`, `bad_signature`, ...).
    #[error("token rejected: {reason}")]
    Rejected {
        /// Stable, client-safe reason code.
        reason: &'static str,
    },
    /// The auth service could not be asked (down, timed out, circuit open).
    #[error("auth service unavailable: {0}")]
    Unavailable(String),
}

impl Classify for AuthError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Rejected { .. } => ErrorClass::Permanent,
            Self::Unavailable(_) => ErrorClass::Transient,
        }
    }
}

/// Validates bearer tokens.
#[async_trait]
pub trait TokenValidator: Send + Sync + std::fmt::Debug {
    /// The principal a token speaks for.
    async fn validate(&self, token: &str) -> Result<Principal, AuthError>;
}
