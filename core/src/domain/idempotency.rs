//! Idempotency keys: a retried POST gets the first response instead of doing the work twice.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::validation::{self, ValidationError};

/// A client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a key; `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        validation::length(field, text, 1, 255)?;
        validation::charset(field, text, "printable ASCII", |c| c.is_ascii_graphic())?;
        Ok(Self(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest of what a request asked for, so a reused key with another body is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestFingerprint(String);

impl RequestFingerprint {
    /// The SHA-256 of the parts, each length-prefixed so that parts cannot run into each other.
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let mut hex = String::with_capacity(64);
        for byte in hasher.finalize() {
            let _ = write!(hex, "{byte:02x}");
        }
        Self(hex)
    }

    /// Rebuilds a fingerprint read back from a store.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The digest as lower-case hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The response the first request got, replayed to its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Status code.
    pub status: u16,
    /// Headers that matter to a replay (`Location`, `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// The body, as sent.
    pub body: String,
}

/// What a store says when a request claims an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is new: this request does the work, then completes or abandons the claim.
    Claimed,
    /// A request with the same key and body already finished: replay its response.
    Completed(StoredResponse),
    /// A request with the same key and body is still running.
    InProgress,
    /// The key was used with another request body.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_parts() {
        assert_ne!(
            RequestFingerprint::of(&[b"ab", b"c"]),
            RequestFingerprint::of(&[b"a", b"bc"])
        );
        assert_eq!(RequestFingerprint::of(&[b"x"]).as_str().len(), 64);
    }

    #[test]
    fn keys_must_be_printable_ascii() {
        assert!(IdempotencyKey::parse("Idempotency-Key", "retry-1").is_ok());
        let err = IdempotencyKey::parse("Idempotency-Key", "a b").unwrap_err();
        assert_eq!(err.field, "Idempotency-Key");
    }
}
