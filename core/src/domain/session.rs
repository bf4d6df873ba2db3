//! Sessions: a user's workspace of simulators and connections. Active until closed or expired.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validation::{self, ValidationError};
use super::{RegionName, SessionId, Timestamp, TransitionError, UserId};

/// Whether a session can still be used. Expiry is not a status: a session past `expires_at`
/// is treated as absent everywhere, because DynamoDB deletes expired items only lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Open for simulators and connections.
    Active,
    /// Closed by its owner; kept until it expires, for idempotent closes and audit.
    Closed,
}

impl SessionStatus {
    /// The wire and store name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Closed => "closed",
        }
    }

    /// Parses the wire and store name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// A session's display name: 1 to 64 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionName(String);

impl SessionName {
    /// The names `parse` accepts, as an ECMA-262 regular expression (the OpenAPI `pattern`; the
    /// length is `minLength`/`maxLength`): no control character (Unicode `Cc`), and neither
    /// first nor last a white space (Unicode `White_Space`, what `str::trim` removes).
    pub const PATTERN: &'static str = concat!(
        r"^[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        r"(?:[^\x00-\x1F\x7F-\x9F]*",
        r"[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?$"
    );

    /// Validates a name; `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        validation::length(field, text, 1, 64)?;
        validation::charset(field, text, "printable characters", |c| !c.is_control())?;
        if text.trim() != text {
            return Err(ValidationError::new(
                field,
                "must not start or end with white space",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionName {
    type Error = ValidationError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse("name", &text)
    }
}

impl From<SessionName> for String {
    fn from(name: SessionName) -> String {
        name.0
    }
}

/// Free-form client metadata: a JSON object of at most 4 KiB once serialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct Metadata(serde_json::Map<String, serde_json::Value>);

impl Metadata {
    /// Largest serialised size accepted.
    pub const MAX_BYTES: usize = 4096;

    /// Validates metadata; `field` names it in the error.
    pub fn parse(field: &str, value: serde_json::Value) -> Result<Self, ValidationError> {
        let serde_json::Value::Object(map) = value else {
            return Err(ValidationError::new(field, "must be a JSON object"));
        };
        let size = serde_json::to_vec(&map).map_or(usize::MAX, |v| v.len());
        if size > Self::MAX_BYTES {
            return Err(ValidationError::new(
                field,
                format!(
                    "must be at most {} bytes as JSON, got {size}",
                    Self::MAX_BYTES
                ),
            ));
        }
        Ok(Self(map))
    }

    /// The metadata as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::Value::Object(self.0.clone()).to_string()
    }
}

impl TryFrom<serde_json::Value> for Metadata {
    type Error = ValidationError;
    fn try_from(value: serde_json::Value) -> Result<Self, Self::Error> {
        Self::parse("metadata", value)
    }
}

impl From<Metadata> for serde_json::Value {
    fn from(metadata: Metadata) -> Self {
        serde_json::Value::Object(metadata.0)
    }
}

/// What a client asks for when it creates a session (already validated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSession {
    /// Optional display name.
    pub name: Option<SessionName>,
    /// Optional client metadata.
    pub metadata: Option<Metadata>,
}

/// A session (serialisable for the shared cache tier, `crate::cache`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Its id.
    pub id: SessionId,
    /// The user who created it; nobody else may see it.
    pub owner: UserId,
    /// Optional display name.
    pub name: Option<SessionName>,
    /// Optional client metadata.
    pub metadata: Option<Metadata>,
    /// Active or closed.
    pub status: SessionStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// After this instant it no longer exists for anyone.
    pub expires_at: Timestamp,
    /// When it was closed, if it was.
    pub closed_at: Option<Timestamp>,
    /// Bumped by every change; stores write a change only over the version it was made from.
    pub version: u64,
    /// The one region where the session's items are written (`docs/multi-region.md`); `None`:
    /// the deployment's primary region. Items and cache entries written before regions
    /// existed have none and read as the primary region, epoch 1: no migration is needed.
    #[serde(default)]
    pub home_region: Option<RegionName>,
    /// Grows by one at each failover of the home; stores write a change only while the item's
    /// home is still the one the change was made under (a fence against the old home).
    #[serde(default = "first_epoch")]
    pub home_epoch: u64,
}

/// The epoch of a home that never moved.
const fn first_epoch() -> u64 {
    1
}

impl Session {
    /// A new active session of `owner` that lives for `lifetime`, homed in the primary region
    /// (the single-region spelling: see [`Session::open_in`]).
    pub fn open(owner: UserId, request: NewSession, now: Timestamp, lifetime: Duration) -> Self {
        Self::open_in(owner, request, now, lifetime, None)
    }

    /// The same, born and homed in `region` (`None`: the primary region, with a bare id), at
    /// epoch 1; the id names the region ([`SessionId::region`]).
    pub fn open_in(
        owner: UserId,
        request: NewSession,
        now: Timestamp,
        lifetime: Duration,
        region: Option<RegionName>,
    ) -> Self {
        Self {
            id: SessionId::generate_in(region.as_ref()),
            home_region: region,
            home_epoch: first_epoch(),
            owner,
            name: request.name,
            metadata: request.metadata,
            status: SessionStatus::Active,
            created_at: now,
            expires_at: now.plus(lifetime),
            closed_at: None,
            version: 1,
        }
    }

    /// The closed version of this session.
    ///
    /// # Errors
    /// A closed session cannot be closed again (callers that want idempotency check first).
    pub fn close(&self, now: Timestamp) -> Result<Self, TransitionError> {
        if self.status != SessionStatus::Active {
            return Err(TransitionError {
                entity: "session",
                from: self.status.as_str(),
                to: SessionStatus::Closed.as_str(),
            });
        }
        Ok(Self {
            status: SessionStatus::Closed,
            closed_at: Some(now),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Whether it no longer exists at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// Whether it is active and not expired at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.status == SessionStatus::Active && !self.is_expired(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let owner = UserId::parse("sub", "alice").unwrap();
        Session::open(
            owner,
            NewSession::default(),
            Timestamp::from_unix_millis(1_000),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn closing_an_active_session_bumps_its_version() {
        let s = session();
        let closed = s.close(Timestamp::from_unix_millis(2_000)).unwrap();
        assert_eq!(closed.status, SessionStatus::Closed);
        assert_eq!(closed.version, s.version + 1);
        assert_eq!(closed.closed_at, Some(Timestamp::from_unix_millis(2_000)));
    }

    #[test]
    fn closing_twice_is_an_illegal_transition() {
        let closed = session().close(Timestamp::from_unix_millis(2_000)).unwrap();
        let err = closed
            .close(Timestamp::from_unix_millis(3_000))
            .unwrap_err();
        assert_eq!(err.to_string(), "a session cannot go from closed to closed");
    }

    #[test]
    fn a_session_expires_at_its_expiry_instant() {
        let s = session();
        assert!(s.is_usable(Timestamp::from_unix_millis(60_999)));
        assert!(s.is_expired(Timestamp::from_unix_millis(61_000)));
    }

    #[test]
    fn names_and_metadata_are_validated_with_the_field_named() {
        assert_eq!(
            SessionName::parse("name", " x").unwrap_err().to_string(),
            "name: must not start or end with white space"
        );
        assert!(SessionName::parse("name", "a\u{7}").is_err());
        let err = Metadata::parse("metadata", serde_json::json!([1])).unwrap_err();
        assert_eq!(err.to_string(), "metadata: must be a JSON object");
        let big = serde_json::json!({ "k": "x".repeat(4100) });
        assert!(
            Metadata::parse("metadata", big)
                .unwrap_err()
                .problem
                .contains("4096")
        );
    }
}
