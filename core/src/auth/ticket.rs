//! Connect tickets as ES256 JWTs: minted by the REST API with the private key
//! ([`TicketSigner`]), checked by the WebSocket authorizer and the streamer with public keys
//! ([`TicketVerifier`]).
//!
//! A key pair rather than a shared HMAC key: the streamer is internet-facing, and whoever takes
//! it over must not be able to mint tickets for any session. The `kid` in the header picks the
//! verifying key, so two keys overlap during a rotation (docs/architecture.md, "Ticket keys").

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Principal;
use super::keys::{SigningKey, VerifyKeys};
use crate::domain::{
    Compression, RegionName, SessionId, Ticket, TicketId, Timestamp, Transport, UserId,
};

const ISSUER: &str = "session-service";
const AUDIENCE: &str = "session-connect";
/// The only algorithm signed or accepted.
const ALGORITHM: Algorithm = Algorithm::ES256;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    /// The bearer token the ticket was minted with.
    tid: String,
    trn: Transport,
    /// The push encoding granted; absent (older tickets too) means none.
    #[serde(default, skip_serializing_if = "Compression::is_none")]
    cmp: Compression,
    jti: String,
    iat: i64,
    exp: i64,
    /// The region that admits it; absent (single region, older tickets): any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reg: Option<String>,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket this service signed (bad signature, wrong algorithm, audience or claims).
    #[error("the ticket is invalid")]
    Invalid,
    /// Its `kid` names no key the verifier holds (missing, or a key already dropped).
    #[error("the ticket's key is unknown")]
    UnknownKey,
    /// Past its expiry.
    #[error("the ticket has expired")]
    Expired,
    /// Signing failed (never expected with a valid key).
    #[error("the ticket could not be signed")]
    Signing,
}

/// Mints tickets with one private key; only the control plane (the REST API) holds one.
#[derive(Debug, Clone)]
pub struct TicketSigner {
    key: SigningKey,
    ttl: Duration,
    /// The region named in every ticket (`reg`); `None` in a single-region deployment.
    region: Option<RegionName>,
}

impl TicketSigner {
    /// A signer with `key`; tickets live for `ttl`.
    pub fn new(key: SigningKey, ttl: Duration) -> Self {
        Self {
            key,
            ttl,
            region: None,
        }
    }

    /// The same, naming `region` (this one, in a multi-region deployment) in every ticket.
    #[must_use]
    pub fn in_region(mut self, region: Option<RegionName>) -> Self {
        self.region = region;
        self
    }

    /// How long tickets live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The `kid` put in every ticket's header.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// Mints a ticket for one connection of `transport` to `session` by `caller`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn issue(
        &self,
        session: &SessionId,
        caller: &Principal,
        transport: Transport,
        now: Timestamp,
    ) -> Result<(String, Ticket), TicketError> {
        self.issue_with(session, caller, transport, Compression::None, now)
    }

    /// Mints a ticket as [`Self::issue`] does, granting `compression` to the connection.
    ///
    /// # Errors
    /// Signing failed.
    pub fn issue_with(
        &self,
        session: &SessionId,
        caller: &Principal,
        transport: Transport,
        compression: Compression,
        now: Timestamp,
    ) -> Result<(String, Ticket), TicketError> {
        let ticket = Ticket {
            id: TicketId::generate(),
            session_id: session.clone(),
            owner: caller.user.clone(),
            token_id: caller.token_id.clone(),
            transport,
            compression,
            expires_at: now.plus(self.ttl),
            region: self.region.clone(),
        };
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: ticket.owner.to_string(),
            sid: session.to_string(),
            tid: ticket.token_id.clone(),
            trn: transport,
            cmp: compression,
            jti: ticket.id.to_string(),
            iat: now.unix_millis() / 1000,
            exp: ticket.expires_at.unix_seconds_ceil(),
            reg: ticket.region.as_ref().map(ToString::to_string),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, self.key.encoding_key())
            .map_err(|_| TicketError::Signing)?;
        Ok((token, ticket))
    }
}

/// Checks tickets against a set of public keys by `kid`: the WebSocket authorizer and the
/// streamer hold one.
#[derive(Debug, Clone)]
pub struct TicketVerifier {
    keys: VerifyKeys,
    /// This region, in a multi-region deployment: tickets naming another are not ours.
    region: Option<RegionName>,
}

impl TicketVerifier {
    /// A verifier accepting tickets signed by any of `keys`.
    pub fn new(keys: VerifyKeys) -> Self {
        Self { keys, region: None }
    }

    /// The same, serving as `region` (this one, in a multi-region deployment).
    #[must_use]
    pub fn in_region(mut self, region: Option<RegionName>) -> Self {
        self.region = region;
        self
    }

    /// The region `ticket` names if it is another than this verifier's: such a ticket is
    /// spent only where it was minted, so the same ticket never admits two connections across
    /// regions. A ticket naming no region (a rolling upgrade) is this region's.
    pub fn foreign_region<'a>(&self, ticket: &'a Ticket) -> Option<&'a RegionName> {
        let mine = self.region.as_ref()?;
        ticket.region.as_ref().filter(|theirs| *theirs != mine)
    }

    /// The keys accepted.
    pub fn keys(&self) -> &VerifyKeys {
        &self.keys
    }

    /// Checks a ticket's signature, claims and expiry at `now`. Consuming it is the store's job.
    ///
    /// # Errors
    /// Invalid, signed by an unknown key, or expired.
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
    /// Invalid, or signed by an unknown key.
    pub fn decode(&self, token: &str) -> Result<Ticket, TicketError> {
        // The header picks the key; `alg` is checked here and again by `jsonwebtoken` (only
        // ES256), so neither `none` nor an HMAC made with a public key gets through.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TicketError::Invalid)?;
        if header.alg != ALGORITHM {
            return Err(TicketError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TicketError::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the service's clock, so tests can move it.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| TicketError::Invalid)?;
        let claims = data.claims;
        let expires_at = Timestamp::from_unix_millis(claims.exp.saturating_mul(1000));
        Ok(Ticket {
            id: TicketId::parse("jti", &claims.jti).map_err(|_| TicketError::Invalid)?,
            session_id: SessionId::parse("sid", &claims.sid).map_err(|_| TicketError::Invalid)?,
            owner: UserId::parse("sub", &claims.sub).map_err(|_| TicketError::Invalid)?,
            token_id: claims.tid,
            transport: claims.trn,
            compression: claims.cmp,
            expires_at,
            region: claims
                .reg
                .map(|r| RegionName::parse("reg", &r))
                .transpose()
                .map_err(|_| TicketError::Invalid)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::EncodingKey;

    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000)
    }

    fn alice() -> Principal {
        Principal {
            user: UserId::parse("sub", "alice").unwrap(),
            scopes: vec![],
            expires_at: now().plus(Duration::from_secs(3600)),
            token_id: "token-1".to_owned(),
        }
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(kid).unwrap()
    }

    fn verifier(keys: &[&SigningKey]) -> TicketVerifier {
        TicketVerifier::new(VerifyKeys::of(keys).unwrap())
    }

    fn mint(key: &SigningKey) -> String {
        let signer = TicketSigner::new(key.clone(), TTL);
        signer
            .issue(&SessionId::generate(), &alice(), Transport::Ws, now())
            .unwrap()
            .0
    }

    /// A token with `header` and the claims of a real ticket; `sign` makes the signature
    /// segment of the signing input.
    fn forge(header: &serde_json::Value, sign: impl Fn(&[u8]) -> String) -> String {
        let genuine = mint(&key("k1"));
        let claims = genuine.split('.').nth(1).unwrap();
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let input = format!("{head}.{claims}");
        format!("{input}.{}", sign(input.as_bytes()))
    }

    #[test]
    fn a_ticket_verifies_to_what_was_issued_and_names_its_key_and_token() {
        let k1 = key("k1");
        let signer = TicketSigner::new(k1.clone(), TTL);
        let (token, ticket) = signer
            .issue(&SessionId::generate(), &alice(), Transport::Sse, now())
            .unwrap();

        let verified = verifier(&[&k1])
            .verify(&token, now().plus(Duration::from_secs(59)))
            .unwrap();

        assert_eq!(verified, ticket);
        assert_eq!(verified.token_id, "token-1");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn a_compression_grant_travels_in_the_ticket_and_a_ticket_without_one_means_none() {
        let k1 = key("k1");
        let signer = TicketSigner::new(k1.clone(), TTL);
        let session = SessionId::generate();
        let (deflate, _) = signer
            .issue_with(
                &session,
                &alice(),
                Transport::Ws,
                Compression::Deflate,
                now(),
            )
            .unwrap();
        let (plain, _) = signer
            .issue(&session, &alice(), Transport::Ws, now())
            .unwrap();

        let verifier = verifier(&[&k1]);

        assert_eq!(
            verifier.verify(&deflate, now()).unwrap().compression,
            Compression::Deflate
        );
        assert_eq!(
            verifier.verify(&plain, now()).unwrap().compression,
            Compression::None
        );
        // Tickets minted before the claim existed carry no `cmp` at all.
        let claims = plain.split('.').nth(1).unwrap();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert!(!claims.contains("cmp"), "{claims}");
    }

    #[test]
    fn expired_forged_and_tampered_tickets_are_refused() {
        let k1 = key("k1");
        let token = mint(&k1);
        let verifier = verifier(&[&k1]);

        assert_eq!(
            verifier.verify(&token, now().plus(TTL)),
            Err(TicketError::Expired)
        );
        let impostor = key("k1");
        assert_eq!(
            verifier.verify(&mint(&impostor), now()),
            Err(TicketError::Invalid),
            "the right kid with another key's signature"
        );
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(verifier.verify(&tampered, now()), Err(TicketError::Invalid));
        assert_eq!(
            verifier.verify("not a jwt", now()),
            Err(TicketError::Invalid)
        );
    }

    #[test]
    fn a_ticket_of_an_unknown_kid_is_refused() {
        let k1 = key("k1");
        let stranger = key("k2");

        assert_eq!(
            verifier(&[&k1]).verify(&mint(&stranger), now()),
            Err(TicketError::UnknownKey)
        );
    }

    #[test]
    fn hs256_none_and_algorithm_confusion_tokens_are_refused() {
        let k1 = key("k1");
        let verifier = verifier(&[&k1]);
        // HMAC keyed with the public key as published: the classic confusion attack.
        let public = serde_json::to_vec(k1.public_jwk()).unwrap();
        let hmac = |alg: Algorithm, secret: &[u8]| {
            let mut header = Header::new(alg);
            header.kid = Some("k1".to_owned());
            forge(&serde_json::to_value(&header).unwrap(), |input| {
                jsonwebtoken::crypto::sign(input, &EncodingKey::from_secret(secret), alg).unwrap()
            })
        };
        let unsigned = forge(&serde_json::json!({"alg": "none", "kid": "k1"}), |_| {
            String::new()
        });

        for token in [
            hmac(Algorithm::HS256, &public),
            hmac(Algorithm::HS256, b"any secret of thirty-two bytes!!"),
            hmac(Algorithm::HS512, &public),
            unsigned,
        ] {
            assert_eq!(verifier.verify(&token, now()), Err(TicketError::Invalid));
        }
    }

    #[test]
    fn during_a_rotation_tickets_of_either_key_verify_and_after_it_the_old_ones_are_refused() {
        let old = key("2026-11");
        let new = key("2026-12");
        let minted_before_the_switch = mint(&old);
        let minted_after_the_switch = mint(&new);

        let overlapping = verifier(&[&old, &new]);
        let after = verifier(&[&new]);

        assert!(overlapping.verify(&minted_before_the_switch, now()).is_ok());
        assert!(overlapping.verify(&minted_after_the_switch, now()).is_ok());
        assert_eq!(
            after.decode(&minted_before_the_switch),
            Err(TicketError::UnknownKey)
        );
        assert!(after.verify(&minted_after_the_switch, now()).is_ok());
    }
}
