//! The WebSocket `$connect` authorizer's use case: a single-use ticket admits one connection,
//! to a usable session of the ticket's owner, unless the token it was minted with is revoked.

use std::sync::Arc;

use tracing::instrument;

use super::revocations::not_revoked;
use super::{Admission, ServiceError, ServiceParts, TicketRefusal};
use crate::auth::{RevocationCheck, TicketError, TicketVerifier};
use crate::clock::Clock;
use crate::domain::{Session, Ticket, Timestamp, Transport};
use crate::store::ports::{Port, PortUse};
use crate::store::{SessionStore, StoreError, TicketStore};

/// Checks and spends `$connect` tickets.
#[derive(Debug, Clone)]
pub struct ConnectAuthorizer {
    /// Read only: the session a ticket opens.
    sessions: Arc<dyn SessionStore>,
    /// Spent once per ticket.
    tickets: Arc<dyn TicketStore>,
    revocations: RevocationCheck,
    ticket_verifier: Option<TicketVerifier>,
    clock: Arc<dyn Clock>,
    /// The browser origins allowed to open WebSocket connections.
    allowed_origins: Vec<String>,
}

impl ConnectAuthorizer {
    /// The store methods the `$connect` authorizer calls: the ws-authorizer's IAM policy.
    pub const PORTS: &[PortUse] = &[
        PortUse {
            port: Port::Sessions,
            methods: &["get_session"],
        },
        PortUse {
            port: Port::Tickets,
            methods: &["consume_ticket"],
        },
        PortUse {
            port: Port::Revocations,
            methods: &["revocation"],
        },
    ];

    /// The authorizer over `parts`.
    pub fn new(parts: &ServiceParts) -> Self {
        Self {
            sessions: parts.store.clone(),
            tickets: parts.store.clone(),
            revocations: parts.revocations.clone(),
            ticket_verifier: parts.ticket_verifier.clone(),
            clock: parts.clock.clone(),
            allowed_origins: parts.websocket.allowed_origins.clone(),
        }
    }

    /// The browser origins allowed to open WebSocket connections (`websocket.allowed_origins`).
    pub fn websocket_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    /// Checks a `$connect` ticket and consumes it: a ticket admits one connection, ever.
    ///
    /// # Errors
    /// `TicketRefused` (invalid, expired, used, other transport); `NotFound` if the session is
    /// gone or not the ticket owner's; `SessionClosed`.
    #[instrument(skip_all)]
    pub async fn admit_connect(&self, ticket: &str) -> Result<Admission, ServiceError> {
        let verifier = self
            .ticket_verifier
            .as_ref()
            .ok_or(ServiceError::NotConfigured {
                setting: "auth.ticket_verify_keys_secret_arn",
            })?;
        let now = self.clock.now();
        let ticket = verifier.verify(ticket, now).map_err(|e| match e {
            TicketError::Expired => ServiceError::TicketRefused(TicketRefusal::Expired),
            TicketError::Invalid | TicketError::UnknownKey | TicketError::Signing => {
                ServiceError::TicketRefused(TicketRefusal::Invalid)
            }
        })?;
        ours(verifier, &ticket)?;
        if ticket.transport != Transport::Ws {
            return Err(ServiceError::TicketRefused(TicketRefusal::WrongTransport));
        }
        // The session is checked before the ticket is spent, so a ticket for a closed session
        // stays unspent; it expires within a minute anyway.
        ticket_session(self.sessions.as_ref(), &self.revocations, now, &ticket).await?;
        match self
            .tickets
            .consume_ticket(&ticket.id, ticket.expires_at)
            .await
        {
            Ok(()) => {}
            Err(StoreError::TicketAlreadyUsed) => {
                return Err(ServiceError::TicketRefused(TicketRefusal::AlreadyUsed));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Admission {
            session_id: ticket.session_id,
            user: ticket.owner,
            ticket_id: ticket.id,
            compression: ticket.compression,
        })
    }
}

/// Refuses a ticket of another region (`TicketWrongRegion`, naming it) before anything is
/// read or spent: both ticket doors, WebSocket and SSE, ask here.
pub(super) fn ours(verifier: &TicketVerifier, ticket: &Ticket) -> Result<(), ServiceError> {
    match verifier.foreign_region(ticket) {
        Some(region) => Err(ServiceError::TicketWrongRegion {
            region: region.clone(),
        }),
        None => Ok(()),
    }
}

/// The usable session `ticket` opens at `now`, if it is still its owner's and neither the token
/// it was minted with nor its owner is revoked (`TokenRevoked`): both ticket doors, WebSocket
/// and SSE (a first use and a resumed continuation alike), ask here before spending it.
pub(super) async fn ticket_session(
    sessions: &dyn SessionStore,
    revocations: &RevocationCheck,
    now: Timestamp,
    ticket: &Ticket,
) -> Result<Session, ServiceError> {
    not_revoked(revocations, &ticket.token_id, &ticket.owner).await?;
    let session = sessions
        .get_session(&ticket.session_id)
        .await?
        .filter(|s| s.owner == ticket.owner)
        .ok_or_else(|| ServiceError::not_found("session", &ticket.session_id))?;
    if !session.is_usable(now) {
        return Err(ServiceError::SessionClosed {
            id: session.id.to_string(),
        });
    }
    Ok(session)
}
