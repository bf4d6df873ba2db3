//! The reference auth service: issues ES256 JWTs for any subject and scopes, validates them
//! for `auth.v1.AuthService`, and publishes its public keys as a JWKS document.
//!
//! Layout: [`AuthService`] here (keys, issuing, validation; no I/O), `grpc` (the gRPC edge and
//! the server you can run or spawn: [`AuthServer`]).
//!
//! Validation checks, in order, and rejects at the first failure with the proto's reason: the
//! token's shape (three base64url parts, a JSON header: `MALFORMED`), its `alg` (only `ES256`:
//! `none`, `HS256` and every other algorithm get `ALGORITHM_NOT_ALLOWED`), its `kid`
//! (`UNKNOWN_KEY`), the signature (`BAD_SIGNATURE`), the claims' shape (`sub`, `iss`, `aud`,
//! `exp`, `jti` present and typed: `MALFORMED`), `iss` (`WRONG_ISSUER`), `aud`
//! (`WRONG_AUDIENCE`), `exp` (`EXPIRED`) and `nbf` (`NOT_YET_VALID`). The header is read by hand
//! before `jsonwebtoken` sees the token, because `jsonwebtoken` cannot even parse `alg: none`
//! and would call it malformed.

mod grpc;

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use session_core::auth::keys;
use session_proto::auth::v1::{RejectionReason, ValidToken};
use ulid::Ulid;

pub use grpc::{AuthGrpcService, AuthHandle, AuthServer};

/// Who the service is and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The `iss` of every token issued, and the only one accepted.
    pub issuer: String,
    /// The `aud` of issued tokens, and the audience expected when a request names none.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`. Zero by default, so a test token that expired a
    /// second ago is expired.
    pub leeway: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "session-local-auth".to_owned(),
            // The session service's default `auth.token_audience`.
            audience: "session-service".to_owned(),
            leeway: Duration::ZERO,
        }
    }
}

/// Why a token could not be issued or a key generated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The crypto library could not generate or load a key pair.
    #[error("cannot generate a signing key")]
    KeyGeneration,
    /// Encoding or signing the token failed.
    #[error("cannot sign the token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// The claims of a token this service issues (and the only shape it accepts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user the token speaks for.
    pub sub: String,
    /// Audiences; a single one is written as a string, as most issuers do.
    #[serde(
        serialize_with = "audience::serialize",
        deserialize_with = "audience::deserialize"
    )]
    pub aud: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: i64,
    /// Unique token id, for replay checks and audit logs.
    pub jti: String,
    /// Granted scopes, space-separated (RFC 8693 `scope`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

mod audience {
    //! `aud` is a string or an array of strings (RFC 7519 §4.1.3).

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    #[allow(clippy::ptr_arg)] // serde's `serialize_with` hands over the field as it is.
    pub(super) fn serialize<S: Serializer>(aud: &Vec<String>, s: S) -> Result<S::Ok, S::Error> {
        match aud.as_slice() {
            [one] => s.serialize_str(one),
            many => s.collect_seq(many),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

/// Why a token is not valid: the proto's reason and a detail for logs (never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?}: {detail}")]
pub struct Rejection {
    /// The machine-readable reason.
    pub reason: RejectionReason,
    /// What exactly was wrong.
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectionReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One ES256 key pair and its id (made as the connect tickets' keys are).
#[derive(Debug)]
struct SigningKey {
    kid: String,
    pair: keys::SigningKey,
    decoding: DecodingKey,
}

impl SigningKey {
    fn generate() -> Result<Self, AuthError> {
        let kid = format!("local-{}", Ulid::new().to_string().to_lowercase());
        let pair = keys::SigningKey::generate(&kid).map_err(|_| AuthError::KeyGeneration)?;
        let decoding =
            DecodingKey::from_jwk(pair.public_jwk()).map_err(|_| AuthError::KeyGeneration)?;
        Ok(Self {
            kid,
            pair,
            decoding,
        })
    }
}

/// The keys: every one is accepted, the last one signs.
#[derive(Debug)]
struct Keys {
    keys: Vec<SigningKey>,
}

/// Most keys kept after rotations; the oldest is dropped beyond it.
const MAX_KEYS: usize = 4;

/// The reference auth service: issues and validates ES256 JWTs.
#[derive(Debug)]
pub struct AuthService {
    settings: AuthSettings,
    keys: RwLock<Keys>,
}

/// The part of the header validation needs; `alg` as text so `none` parses.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn not_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Err(serde::de::Error::custom("must not be empty"));
    }
    Ok(text)
}

/// The claims validation requires: present, typed, `sub` and `jti` not empty.
#[derive(Deserialize)]
struct RequiredClaims {
    #[serde(deserialize_with = "not_empty")]
    sub: String,
    #[serde(deserialize_with = "not_empty")]
    jti: String,
    iss: String,
    #[serde(deserialize_with = "audience::deserialize")]
    aud: Vec<String>,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    scope: String,
}

impl AuthService {
    /// A service with one freshly generated key.
    ///
    /// # Errors
    /// The key cannot be generated.
    pub fn new(settings: AuthSettings) -> Result<Self, AuthError> {
        Ok(Self {
            settings,
            keys: RwLock::new(Keys {
                keys: vec![SigningKey::generate()?],
            }),
        })
    }

    /// Its settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        // Every write replaces the vector whole, so a poisoned lock still holds valid keys.
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `kid` of the key that signs new tokens.
    pub fn current_kid(&self) -> String {
        self.read_keys()
            .keys
            .last()
            .map(|key| key.kid.clone())
            .unwrap_or_default()
    }

    /// Generates a new signing key; tokens signed with the previous ones stay valid (the last
    /// few keys are kept). Returns the new `kid`.
    ///
    /// # Errors
    /// The key cannot be generated.
    pub fn rotate_key(&self) -> Result<String, AuthError> {
        let key = SigningKey::generate()?;
        let kid = key.kid.clone();
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.keys.push(key);
        let excess = keys.keys.len().saturating_sub(MAX_KEYS);
        keys.keys.drain(..excess);
        Ok(kid)
    }

    /// The claims of a token for `subject` with `scopes`, valid from now for `ttl`, for the
    /// default audience: change any field before [`sign`](Self::sign) to make special tokens.
    pub fn claims<S: AsRef<str>>(&self, subject: &str, scopes: &[S], ttl: Duration) -> Claims {
        let now = unix_seconds(SystemTime::now());
        Claims {
            iss: self.settings.issuer.clone(),
            sub: subject.to_owned(),
            aud: vec![self.settings.audience.clone()],
            exp: now.saturating_add(ttl.as_secs() as i64),
            nbf: Some(now),
            iat: now,
            jti: Ulid::new().to_string(),
            scope: scopes
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Signs `claims` with the current key (ES256, its `kid` in the header). Any serializable
    /// claims, so that tests can make tokens with claims missing or of the wrong type.
    ///
    /// # Errors
    /// Signing failed.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, AuthError> {
        let keys = self.read_keys();
        let key = keys.keys.last().ok_or(AuthError::KeyGeneration)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            key.pair.encoding_key(),
        )?)
    }

    /// A token for `subject` with `scopes`, valid from now for `ttl`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn issue<S: AsRef<str>>(
        &self,
        subject: &str,
        scopes: &[S],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        self.sign(&self.claims(subject, scopes, ttl))
    }

    /// The public keys as a JWKS document (RFC 7517): `{"keys": [{"kty": "EC", ...}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys = self.read_keys();
        let keys: Vec<_> = keys
            .keys
            .iter()
            .map(|key| serde_json::to_value(key.pair.public_jwk()).unwrap_or_default())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Validates `token` for `audience` (`None` or empty: the default audience) as of now.
    ///
    /// # Errors
    /// The token is not valid; the rejection says why.
    pub fn validate(&self, token: &str, audience: Option<&str>) -> Result<ValidToken, Rejection> {
        self.validate_at(token, audience, SystemTime::now())
    }

    /// Validates `token` for `audience` as of `now`.
    ///
    /// # Errors
    /// The token is not valid; the rejection says why.
    pub fn validate_at(
        &self,
        token: &str,
        audience: Option<&str>,
        now: SystemTime,
    ) -> Result<ValidToken, Rejection> {
        use RejectionReason as R;
        let audience = audience
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.settings.audience);
        let header = read_header(token)?;
        if header.alg != "ES256" {
            return Err(Rejection::new(
                R::AlgorithmNotAllowed,
                format!("alg {:?} is not allowed: only ES256", header.alg),
            ));
        }
        let Some(kid) = header.kid else {
            return Err(Rejection::new(R::UnknownKey, "the header has no kid"));
        };
        let keys = self.read_keys();
        let Some(key) = keys.keys.iter().find(|key| key.kid == kid) else {
            return Err(Rejection::new(
                R::UnknownKey,
                format!("kid {kid:?} names no key of this issuer"),
            ));
        };
        // `jsonwebtoken` checks the signature only: `RequiredClaims` checks presence and types,
        // and the claims are judged below, in a fixed order, against our clock and leeway.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<RequiredClaims>(token, &key.decoding, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => {
                    Rejection::new(R::BadSignature, "the signature does not verify")
                }
                ErrorKind::InvalidAlgorithm => {
                    Rejection::new(R::AlgorithmNotAllowed, "only ES256 is allowed")
                }
                _ => Rejection::new(R::Malformed, format!("malformed claims: {error}")),
            })?
            .claims;
        if claims.iss != self.settings.issuer {
            return Err(Rejection::new(
                R::WrongIssuer,
                format!("iss is not {:?}", self.settings.issuer),
            ));
        }
        if !claims.aud.iter().any(|aud| aud == audience) {
            return Err(Rejection::new(
                R::WrongAudience,
                format!("aud does not contain {audience:?}"),
            ));
        }
        let leeway = self.settings.leeway.as_secs() as i64;
        let now = unix_seconds(now);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(Rejection::new(
                R::Expired,
                format!("expired at {} (now {now})", claims.exp),
            ));
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(Rejection::new(
                R::NotYetValid,
                format!("not valid before {nbf} (now {now})"),
            ));
        }
        Ok(ValidToken {
            subject: claims.sub,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            expires_at_unix_seconds: claims.exp,
            token_id: claims.jti,
            issuer: claims.iss,
        })
    }
}

/// The header of a compact JWS, or why the token is malformed.
fn read_header(token: &str) -> Result<RawHeader, Rejection> {
    let malformed = |detail: &str| Rejection::new(RejectionReason::Malformed, detail);
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, _] = parts.as_slice() else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("the header is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| malformed("the header is not a JSON object with alg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> AuthService {
        AuthService::new(AuthSettings::default()).unwrap()
    }

    fn reason(result: Result<ValidToken, Rejection>) -> RejectionReason {
        result.expect_err("the token must be rejected").reason
    }

    #[test]
    fn an_issued_token_validates_with_its_subject_scopes_and_id() {
        let auth = service();
        let token = auth
            .issue(
                "alice",
                &["sessions:read", "sessions:write"],
                Duration::from_secs(60),
            )
            .unwrap();
        let valid = auth.validate(&token, None).unwrap();
        assert_eq!(valid.subject, "alice");
        assert_eq!(valid.scopes, ["sessions:read", "sessions:write"]);
        assert_eq!(valid.issuer, "session-local-auth");
        assert!(!valid.token_id.is_empty());
    }

    #[test]
    fn expiry_and_not_before_are_judged_at_the_given_time() {
        let auth = service();
        let token = auth
            .issue("alice", &["a"], Duration::from_secs(60))
            .unwrap();
        let now = SystemTime::now();
        assert!(auth.validate_at(&token, None, now).is_ok());
        assert_eq!(
            reason(auth.validate_at(&token, None, now + Duration::from_secs(61))),
            RejectionReason::Expired
        );
        assert_eq!(
            reason(auth.validate_at(&token, None, now - Duration::from_secs(30))),
            RejectionReason::NotYetValid
        );
    }

    #[test]
    fn tokens_of_a_rotated_out_key_stay_valid_until_the_key_is_dropped() {
        let auth = service();
        let old = auth
            .issue("alice", &["a"], Duration::from_secs(60))
            .unwrap();
        let first_kid = auth.current_kid();
        let kid = auth.rotate_key().unwrap();
        assert_ne!(kid, first_kid);
        assert!(auth.validate(&old, None).is_ok());
        for _ in 0..MAX_KEYS {
            auth.rotate_key().unwrap();
        }
        assert_eq!(
            reason(auth.validate(&old, None)),
            RejectionReason::UnknownKey
        );
        assert_eq!(auth.jwks()["keys"].as_array().unwrap().len(), MAX_KEYS);
    }

    #[test]
    fn a_single_audience_is_written_as_a_string_and_many_as_an_array() {
        let auth = service();
        let mut claims = auth.claims("alice", &["a"], Duration::from_secs(60));
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], "session-service");
        claims.aud.push("other".into());
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], serde_json::json!(["session-service", "other"]));
        let back: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(back, claims);
    }
}
