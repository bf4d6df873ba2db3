//! Connect tickets as HS256 JWTs: minted by the REST API, checked by the WebSocket authorizer and
//! the streamer, which share the key.
//!
//! HMAC rather than a key pair: only this service mints and checks tickets, they live for a
//! minute, and verifying an HMAC is the cheapest check on the connect path.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::{SessionId, Ticket, TicketId, Timestamp, Transport, UserId};

const ISSUER: &str = "session-service";
const AUDIENCE: &str = "session-connect";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    trn: Transport,
    jti: String,
    iat: i64,
    exp: i64,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket this service signed (bad signature, wrong algorithm, audience or claims).
    #[error("the ticket is invalid")]
    Invalid,
    /// Past its expiry.
    #[error("the ticket has expired")]
    Expired,
    /// Signing failed (never expected with a valid key).
    #[error("the ticket could not be signed")]
    Signing,
}

/// Mints and checks tickets with one key.
#[derive(Clone)]
pub struct TicketCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for TicketCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketCodec")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TicketCodec {
    /// A codec signing with `secret`; tickets live for `ttl`.
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            ttl,
        }
    }

    /// How long tickets live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Mints a ticket for one connection of `transport` to `session` by `owner`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn issue(
        &self,
        session: &SessionId,
        owner: &UserId,
        transport: Transport,
        now: Timestamp,
    ) -> Result<(String, Ticket), TicketError> {
        let ticket = Ticket {
            id: TicketId::generate(),
            session_id: session.clone(),
            owner: owner.clone(),
            transport,
            expires_at: now.plus(self.ttl),
        };
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: owner.to_string(),
            sid: session.to_string(),
            trn: transport,
            jti: ticket.id.to_string(),
            iat: now.unix_millis() / 1000,
            exp: ticket.expires_at.unix_seconds_ceil(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TicketError::Signing)?;
        Ok((token, ticket))
    }

    /// Checks a ticket's signature, claims and expiry at `now`. Consuming it is the store's job.
    ///
    /// # Errors
    /// Invalid or expired.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Ticket, TicketError> {
        let ticket = self.decode(token)?;
        if ticket.expires_at <= now {
            return Err(TicketError::Expired);
        }
        Ok(ticket)
    }

    /// Checks a ticket's signature and claims, whatever its expiry: an SSE ticket's resume
    /// chain outlives it (`EventSource` reconnects to the URL it was given).
    ///
    /// # Errors
    /// Invalid.
    pub fn decode(&self, token: &str) -> Result<Ticket, TicketError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the service's clock, so tests can move it.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TicketError::Invalid)?;
        let claims = data.claims;
        let expires_at = Timestamp::from_unix_millis(claims.exp.saturating_mul(1000));
        Ok(Ticket {
            id: TicketId::parse("jti", &claims.jti).map_err(|_| TicketError::Invalid)?,
            session_id: SessionId::parse("sid", &claims.sid).map_err(|_| TicketError::Invalid)?,
            owner: UserId::parse("sub", &claims.sub).map_err(|_| TicketError::Invalid)?,
            transport: claims.trn,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(secret: &str) -> TicketCodec {
        TicketCodec::new(
            &SecretString::from(secret.to_owned()),
            Duration::from_secs(60),
        )
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_ticket_verifies_to_what_was_issued() {
        let codec = codec(KEY);
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let session = SessionId::generate();
        let owner = UserId::parse("sub", "alice").unwrap();
        let (token, ticket) = codec.issue(&session, &owner, Transport::Sse, now).unwrap();

        let verified = codec
            .verify(&token, now.plus(Duration::from_secs(59)))
            .unwrap();

        assert_eq!(verified, ticket);
        assert_eq!(verified.transport, Transport::Sse);
    }

    #[test]
    fn expired_forged_and_tampered_tickets_are_refused() {
        let codec = codec(KEY);
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let owner = UserId::parse("sub", "alice").unwrap();
        let (token, _) = codec
            .issue(&SessionId::generate(), &owner, Transport::Ws, now)
            .unwrap();

        assert_eq!(
            codec.verify(&token, now.plus(Duration::from_secs(60))),
            Err(TicketError::Expired)
        );
        let other = super::tests::codec("another key of thirty-two bytes!!");
        assert_eq!(other.verify(&token, now), Err(TicketError::Invalid));
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(codec.verify(&tampered, now), Err(TicketError::Invalid));
        assert_eq!(codec.verify("not a jwt", now), Err(TicketError::Invalid));
    }
}
