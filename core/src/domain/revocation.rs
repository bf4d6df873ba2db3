//! Revoked bearer tokens: one token by its id (`jti`), or every token of a subject, until a
//! given time.

use std::fmt;

use super::validation::{self, ValidationError};
use super::{Timestamp, UserId};

/// A bearer token's id (`jti`) as the auth service issued it: 1 to 256 printable ASCII
/// characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

impl TokenId {
    /// The longest token id accepted.
    pub const MAX_LEN: usize = 256;

    /// A token id from client input.
    ///
    /// # Errors
    /// Empty, longer than [`Self::MAX_LEN`], or a character outside `!`..`~`.
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        validation::length(field, text, 1, Self::MAX_LEN)?;
        validation::charset(field, text, "printable ASCII without spaces", |c| {
            c.is_ascii_graphic()
        })?;
        Ok(Self(text.to_owned()))
    }

    /// The id as issued.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a revocation refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RevocationTarget {
    /// The one token with this id.
    Token(TokenId),
    /// Every token of this subject.
    Subject(UserId),
}

impl RevocationTarget {
    /// What could refuse a token with `token_id` of `subject`, token first: an id no admin could
    /// have revoked (empty, unparseable) is looked up by subject only.
    pub fn of_token(token_id: &str, subject: &UserId) -> [Option<Self>; 2] {
        [
            TokenId::parse("token_id", token_id).ok().map(Self::Token),
            Some(Self::Subject(subject.clone())),
        ]
    }
}

impl fmt::Display for RevocationTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(id) => write!(f, "token {id}"),
            Self::Subject(user) => write!(f, "subject {user}"),
        }
    }
}

/// A revocation: `target` is refused at every door until `until` (for a token, its expiry:
/// after that it is refused anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// What is refused.
    pub target: RevocationTarget,
    /// Until when.
    pub until: Timestamp,
}

impl Revocation {
    /// Whether it still refuses at `now`.
    pub fn is_in_force(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_printable_ascii_of_bounded_length() {
        assert!(TokenId::parse("token_id", "01JG7Q3Z-abc_.~").is_ok());
        assert_eq!(
            TokenId::parse("token_id", "").unwrap_err().field,
            "token_id"
        );
        assert!(TokenId::parse("token_id", "a b").is_err());
        assert!(TokenId::parse("token_id", "é").is_err());
        assert!(TokenId::parse("token_id", &"a".repeat(257)).is_err());
        assert!(TokenId::parse("token_id", &"a".repeat(256)).is_ok());
    }
}
