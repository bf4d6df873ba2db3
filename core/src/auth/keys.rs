//! ES256 keys: a private key with its `kid` (what signs), and a JWKS of public keys by `kid`
//! (what verifies). Connect tickets use them (the REST API signs, the WebSocket authorizer and
//! the streamer verify), and so does the local auth service for its bearer tokens.
//!
//! Formats, the same in a file and in a Secrets Manager secret's `SecretString`:
//! - signing key: `{"kid": "2026-12", "private_key_pem": "-----BEGIN PRIVATE KEY-----..."}`,
//!   the key a PKCS#8 EC P-256 PEM;
//! - verify keys: a JWKS (RFC 7517), `{"keys": [{"kty": "EC", "crv": "P-256", "x": ...,
//!   "y": ..., "kid": ..., "alg": "ES256", "use": "sig"}, ...]}`, one key or more.

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not the JSON document expected.
    #[error("not a {expected} JSON document: {detail}")]
    Format {
        /// What was expected.
        expected: &'static str,
        /// What the parser said.
        detail: String,
    },
    /// A private key is not a PKCS#8 PEM EC P-256 key.
    #[error("private_key_pem is not a PKCS#8 PEM EC P-256 private key")]
    PrivateKey,
    /// A `kid` is empty or missing.
    #[error("every key needs a non-empty kid")]
    MissingKid,
    /// A public key cannot verify ES256 signatures.
    #[error("key {kid:?} is not an ES256 public key: {detail}")]
    PublicKey {
        /// The key's id.
        kid: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// Two public keys share a `kid`.
    #[error("kid {0:?} names more than one key")]
    DuplicateKid(String),
    /// A JWKS with no key.
    #[error("the key set holds no key")]
    Empty,
    /// The crypto library could not generate a key.
    #[error("cannot generate an ES256 key")]
    Generation,
}

/// The signing key's document.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningKeyDocument {
    kid: String,
    private_key_pem: String,
}

/// An ES256 private key and its `kid`, which goes into the header of everything it signs.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    pem: SecretString,
    /// The public half, as published in the verifiers' JWKS.
    public: Jwk,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random P-256 key named `kid`.
    ///
    /// # Errors
    /// `kid` is empty, or the crypto library failed.
    pub fn generate(kid: &str) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| KeyError::Generation)?;
        let der = pair.to_pkcs8v1().map_err(|_| KeyError::Generation)?;
        Self::from_pem(kid, &pkcs8_pem(der.as_ref()))
    }

    /// The key of a PKCS#8 PEM `pem`, named `kid`.
    ///
    /// # Errors
    /// `kid` is empty, or `pem` is not a P-256 private key.
    pub fn from_pem(kid: &str, pem: &str) -> Result<Self, KeyError> {
        if kid.trim().is_empty() {
            return Err(KeyError::MissingKid);
        }
        let encoding =
            EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| KeyError::PrivateKey)?;
        // Deriving the public point parses the key as P-256: a wrong curve fails here, at
        // start, not at the first signature.
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|_| KeyError::PrivateKey)?;
        public.common.key_id = Some(kid.to_owned());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            kid: kid.to_owned(),
            encoding,
            pem: SecretString::from(pem.to_owned()),
            public,
        })
    }

    /// The key of a signing-key document (`{"kid": ..., "private_key_pem": ...}`).
    ///
    /// # Errors
    /// Not such a document, or its key is not a P-256 private key.
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let document: SigningKeyDocument =
            serde_json::from_str(text).map_err(|e| KeyError::Format {
                expected: "{\"kid\", \"private_key_pem\"}",
                // serde_json's message names the field and position, never the value.
                detail: e.to_string(),
            })?;
        Self::from_pem(&document.kid, &document.private_key_pem)
    }

    /// The signing-key document of this key: the secret the signer reads.
    pub fn to_json(&self) -> SecretString {
        let document = SigningKeyDocument {
            kid: self.kid.clone(),
            private_key_pem: self.pem.expose_secret().to_owned(),
        };
        SecretString::from(serde_json::to_string(&document).unwrap_or_default())
    }

    /// Its id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK (with `kid`, `alg` and `use`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// The key `jsonwebtoken` signs with.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// A DER PKCS#8 key as PEM (RFC 7468: base64 in 64-character lines).
fn pkcs8_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// ES256 public keys by `kid`: what verifiers accept.
#[derive(Clone)]
pub struct VerifyKeys {
    set: JwkSet,
    keys: Vec<(String, DecodingKey)>,
}

impl fmt::Debug for VerifyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKeys")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

impl VerifyKeys {
    /// The keys of a JWKS: each needs a unique `kid`, `kty` `EC` on `P-256`, and `alg`, if
    /// given, `ES256`.
    ///
    /// # Errors
    /// An empty set, or a key that is not such a key.
    pub fn new(set: JwkSet) -> Result<Self, KeyError> {
        if set.keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut keys: Vec<(String, DecodingKey)> = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .filter(|kid| !kid.trim().is_empty())
                .ok_or(KeyError::MissingKid)?;
            let wrong = |detail| KeyError::PublicKey {
                kid: kid.clone(),
                detail,
            };
            match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {}
                _ => return Err(wrong("kty must be EC and crv P-256")),
            }
            if jwk
                .common
                .key_algorithm
                .is_some_and(|alg| alg != KeyAlgorithm::ES256)
            {
                return Err(wrong("alg must be ES256"));
            }
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                return Err(wrong("use must be sig"));
            }
            if keys.iter().any(|(known, _)| *known == kid) {
                return Err(KeyError::DuplicateKid(kid));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|_| wrong("x or y is not base64url"))?;
            keys.push((kid, key));
        }
        Ok(Self { set, keys })
    }

    /// The keys of a JWKS document.
    ///
    /// # Errors
    /// Not a JWKS, or see [`new`](Self::new).
    pub fn from_json(text: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| KeyError::Format {
            expected: "JWKS {\"keys\": [...]}",
            detail: e.to_string(),
        })?;
        Self::new(set)
    }

    /// The public halves of `signing`.
    ///
    /// # Errors
    /// Two keys share a `kid`.
    pub fn of(signing: &[&SigningKey]) -> Result<Self, KeyError> {
        Self::new(JwkSet {
            keys: signing.iter().map(|key| key.public_jwk().clone()).collect(),
        })
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys
            .iter()
            .find(|(known, _)| known == kid)
            .map(|(_, key)| key)
    }

    /// Whether `signing`'s public half is in the set under its `kid`.
    pub fn holds(&self, signing: &SigningKey) -> bool {
        self.set
            .find(signing.kid())
            .is_some_and(|jwk| jwk.algorithm == signing.public_jwk().algorithm)
    }

    /// The ids of the keys, in the set's order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(kid, _)| kid.as_str())
    }

    /// The set as a JWKS.
    pub fn jwks(&self) -> &JwkSet {
        &self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_round_trips_through_its_document() {
        let key = SigningKey::generate("2026-12").unwrap();

        let read = SigningKey::from_json(key.to_json().expose_secret()).unwrap();

        assert_eq!(read.kid(), "2026-12");
        assert_eq!(read.public_jwk(), key.public_jwk());
        assert!(key.to_json().expose_secret().contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn a_jwks_of_public_halves_holds_each_key_under_its_kid() {
        let old = SigningKey::generate("old").unwrap();
        let new = SigningKey::generate("new").unwrap();
        let text = serde_json::to_string(VerifyKeys::of(&[&old, &new]).unwrap().jwks()).unwrap();

        let keys = VerifyKeys::from_json(&text).unwrap();

        assert_eq!(keys.kids().collect::<Vec<_>>(), ["old", "new"]);
        assert!(keys.holds(&old) && keys.holds(&new));
        let stranger = SigningKey::generate("old").unwrap();
        assert!(!keys.holds(&stranger), "same kid, another key");
        assert!(text.contains("\"alg\":\"ES256\"") && text.contains("\"kty\":\"EC\""));
    }

    #[test]
    fn bad_key_material_is_refused_saying_what_is_wrong() {
        let key = SigningKey::generate("k").unwrap();
        let mut jwk = key.public_jwk().clone();

        assert_eq!(
            VerifyKeys::new(JwkSet { keys: vec![] }).unwrap_err(),
            KeyError::Empty
        );
        assert_eq!(
            VerifyKeys::of(&[&key, &key]).unwrap_err(),
            KeyError::DuplicateKid("k".to_owned())
        );
        jwk.common.key_algorithm = Some(KeyAlgorithm::HS256);
        let err = VerifyKeys::new(JwkSet { keys: vec![jwk] }).unwrap_err();
        assert!(err.to_string().contains("alg must be ES256"), "{err}");
        let hmac = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#;
        let err = VerifyKeys::from_json(hmac).unwrap_err();
        assert!(err.to_string().contains("kty must be EC"), "{err}");
        assert!(matches!(
            VerifyKeys::from_json("[]"),
            Err(KeyError::Format { .. })
        ));
        assert_eq!(
            SigningKey::from_json(r#"{"kid": "k", "private_key_pem": "nope"}"#).unwrap_err(),
            KeyError::PrivateKey
        );
        let pem = key.to_json();
        let blank = pem.expose_secret().replace("\"kid\":\"k\"", "\"kid\":\"\"");
        assert_eq!(
            SigningKey::from_json(&blank).unwrap_err(),
            KeyError::MissingKid
        );
    }
}
