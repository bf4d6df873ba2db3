//! Identifiers. Ids the service mints are prefixed ULIDs (`ses_01J…`): they sort by creation
//! time, say what they name in logs, and cannot be confused with one another.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ulid::{Generator, Ulid};

use super::validation::{self, ValidationError};

/// One generator per process so ids minted in the same millisecond still sort in mint order.
static GENERATOR: Mutex<Option<Generator>> = Mutex::new(None);

fn next_ulid() -> Ulid {
    let mut guard = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let generator = guard.get_or_insert_with(Generator::new);
    // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random one if it happens.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

/// Whether `text` is a ULID as this service writes it: 26 upper-case Crockford base-32
/// characters, the first at most `7` (a larger one overflows 128 bits). Lower case and the
/// aliases Crockford decoding tolerates (`I`, `L`, `O`) are refused, so that one id has one
/// spelling and the documented pattern ([`SessionId::PATTERN`]) is exactly what is accepted.
fn is_canonical_ulid(text: &str) -> bool {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    text.len() == 26
        && text.as_bytes()[0] <= b'7'
        && text.bytes().all(|b| ALPHABET.contains(&b))
        && Ulid::from_string(text).is_ok()
}

/// Splits what follows an id's prefix into its ULID and the region after it, if any
/// (Crockford's alphabet has no `-`, so the first `-` is where the region starts).
fn split_region(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('-') {
        Some((ulid, region)) => (ulid, Some(region)),
        None => (rest, None),
    }
}

/// What every id type has: text access, `Display`/`Debug` as the bare id, serde through `parse`.
macro_rules! id_impls {
    ($name:ident) => {
        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(stringify!($name), &text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        prefixed_id!($(#[$doc])* $name, $prefix, "", false);
    };
    // `$regional`: the ULID may be followed by `-<region>` (`$suffix` is its pattern).
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $suffix:literal, $regional:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// The ids `parse` accepts, as an ECMA-262 regular expression (the OpenAPI
            /// document's `pattern`).
            pub const PATTERN: &'static str =
                concat!("^", $prefix, "[0-7][0-9A-HJKMNP-TV-Z]{25}", $suffix, "$");

            /// Mints a new id, later than every id minted before it in this process.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Parses an id received from a client; `field` names it in the error.
            pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
                let rest = text.strip_prefix($prefix).ok_or_else(|| {
                    ValidationError::new(field, format!("must start with {:?}", $prefix))
                })?;
                let (ulid, region) = split_region(rest);
                if !is_canonical_ulid(ulid) || (region.is_some() && !$regional) {
                    return Err(ValidationError::new(
                        field,
                        format!("must be {:?} followed by a 26-character ULID", $prefix),
                    ));
                }
                if let Some(region) = region {
                    RegionName::parse(field, region).map_err(|e| {
                        ValidationError::new(field, format!("region suffix: {}", e.problem))
                    })?;
                }
                Ok(Self(text.to_owned()))
            }
        }

        id_impls!($name);
    };
}

prefixed_id!(
    /// Names a session: `ses_<ULID>` (born in the primary region: every session created before
    /// regions existed) or `ses_<ULID>-<region>` (born in `region`, minted by a multi-region
    /// deployment). The ULID stays first, so ids still sort by creation time.
    SessionId,
    "ses_",
    "(?:-[a-z0-9-]{1,24})?",
    true
);

impl SessionId {
    /// Mints a new id born in `region` (`None`: the bare `ses_<ULID>` of a single-region
    /// deployment, which means the primary region).
    pub fn generate_in(region: Option<&RegionName>) -> Self {
        match region {
            Some(region) => Self(format!("{}{}-{region}", Self::PREFIX, next_ulid())),
            None => Self::generate(),
        }
    }

    /// The region the session was born in, if the id names one (`None`: the primary region).
    /// Only a hint: after a failover the session item's `home_region` is authoritative.
    pub fn region(&self) -> Option<RegionName> {
        let (_, region) = split_region(&self.0[Self::PREFIX.len()..]);
        region.map(|r| RegionName(r.to_owned()))
    }
}
prefixed_id!(
    /// Names a simulator record of a session (not the backend's instance id).
    SimulatorId,
    "sim_"
);
prefixed_id!(
    /// Names a connect ticket: its JWT `jti`, consumable once.
    TicketId,
    "tkt_"
);

macro_rules! external_id {
    ($(#[$doc:meta])* $name:ident, $max:literal, $description:literal, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates an id that comes from outside; `field` names it in the error.
            pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
                validation::length(field, text, 1, $max)?;
                validation::charset(field, text, $description, $allowed)?;
                Ok(Self(text.to_owned()))
            }
        }

        id_impls!($name);
    };
}

external_id!(
    /// A user: the `sub` of a validated token. `#` is excluded because store keys use it.
    UserId,
    128,
    "letters, digits and . _ @ : | + -",
    |c: char| c.is_ascii_alphanumeric() || "._@:|+-".contains(c)
);
external_id!(
    /// A region of a deployment (`eu-west-1`, `local-a`): 1 to 24 lower-case letters, digits
    /// and `-`. The suffix of a session id born there, and its `home_region`.
    RegionName,
    24,
    "lower-case letters, digits and -",
    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
);
external_id!(
    /// An API Gateway WebSocket connection id (base64-like, e.g. `L0SM9cOFvHcCIhw=`).
    ConnectionId,
    128,
    "letters, digits and + / = _ -",
    |c: char| c.is_ascii_alphanumeric() || "+/=_-".contains(c)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_sort_in_mint_order_and_parse_back() {
        let ids: Vec<SessionId> = (0..100).map(|_| SessionId::generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        for id in &ids {
            assert_eq!(&SessionId::parse("session_id", id.as_str()).unwrap(), id);
        }
    }

    #[test]
    fn an_id_of_another_kind_is_rejected_with_the_field_name() {
        let sim = SimulatorId::generate();
        let err = SessionId::parse("session_id", sim.as_str()).unwrap_err();
        assert_eq!(err.field, "session_id");
        assert!(err.problem.contains("ses_"), "{err}");
    }

    #[test]
    fn malformed_ulids_are_rejected() {
        for bad in [
            "ses_",
            "ses_123",
            "ses_01JDXXXXXXXXXXXXXXXXXXXXXXX",
            "ses_01jd!",
            "ses_01jdxq9v0m7y8k2r4t6w8z0abc",
            "ses_81JDXQ9V0M7Y8K2R4T6W8Z0ABC",
            "ses_01JDXQ9V0M7Y8K2R4T6W8Z0ABI",
        ] {
            assert!(SessionId::parse("session_id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_session_id_may_name_its_birth_region_and_still_sorts_by_creation() {
        let region = RegionName::parse("region", "eu-west-1").unwrap();
        let bare = SessionId::generate();
        let regional = SessionId::generate_in(Some(&region));
        assert_eq!(bare.region(), None);
        assert_eq!(regional.region(), Some(region));
        assert!(regional.as_str().ends_with("-eu-west-1"), "{regional}");
        assert!(bare < regional);
        assert_eq!(
            SessionId::parse("session_id", regional.as_str()).unwrap(),
            regional
        );
    }

    #[test]
    fn a_bad_region_suffix_or_a_suffix_on_another_kind_of_id_is_rejected() {
        let ulid = "01JDXQ9V0M7Y8K2R4T6W8Z0ABC";
        for bad in [
            format!("ses_{ulid}-"),
            format!("ses_{ulid}-EU"),
            format!("ses_{ulid}-{}", "a".repeat(25)),
            format!("ses_{ulid}-eu_west"),
        ] {
            assert!(SessionId::parse("session_id", &bad).is_err(), "{bad}");
        }
        assert!(SimulatorId::parse("simulator_id", &format!("sim_{ulid}-a")).is_err());
        assert!(SessionId::parse("session_id", &format!("ses_{ulid}-local-a")).is_ok());
    }

    #[test]
    fn user_ids_refuse_the_store_key_separator() {
        assert!(UserId::parse("sub", "auth0|abc-123").is_ok());
        let err = UserId::parse("sub", "a#b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sub: contains '#'; allowed are letters, digits and . _ @ : | + -"
        );
    }
}
