//! The scopes a bearer token may carry, and the check that a caller has the one a route needs.
//! The REST API's routes name theirs in the OpenAPI document (`security`); the streamer's SSE
//! route needs [`Scope::Read`] from a bearer token.

use std::fmt;

use super::Principal;

/// A scope this service knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read sessions, simulators and books; open streams with a bearer token.
    Read,
    /// Create and close sessions, start and stop simulators, issue tickets and reconnects.
    Write,
    /// Revoke tokens (`POST /v1/admin/revocations`).
    Admin,
}

impl Scope {
    /// Every scope, for documents and tables.
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Admin];

    /// The scope as tokens carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "sessions:read",
            Self::Write => "sessions:write",
            Self::Admin => "sessions:admin",
        }
    }

    /// What it grants, in words.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Read => "Read sessions, simulators and books; open a stream with a bearer token",
            Self::Write => {
                "Create and close sessions, start and stop simulators, issue connect tickets and reconnects"
            }
            Self::Admin => "Revoke bearer tokens, by token id or by subject",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A caller's token lacks the scope a route needs (`403`, RFC 6750's `insufficient_scope`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token lacks the scope {needed}")]
pub struct InsufficientScope {
    /// The scope needed, as tokens carry it.
    pub needed: String,
}

impl Principal {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Passes if the token carries every scope of `needed`.
    ///
    /// # Errors
    /// [`InsufficientScope`] naming the first scope missing.
    pub fn require<'a>(
        &self,
        needed: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), InsufficientScope> {
        match needed.into_iter().find(|scope| !self.has_scope(scope)) {
            Some(missing) => Err(InsufficientScope {
                needed: missing.to_owned(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Timestamp, UserId};

    #[test]
    fn a_principal_passes_only_with_every_scope_needed() {
        let principal = Principal {
            user: UserId::parse("sub", "alice").unwrap(),
            scopes: vec!["sessions:read".to_owned()],
            expires_at: Timestamp::from_unix_millis(0),
            token_id: "t".to_owned(),
        };
        assert!(principal.require([Scope::Read.as_str()]).is_ok());
        assert!(principal.require([]).is_ok());
        assert_eq!(
            principal.require(["sessions:read", "sessions:write"]),
            Err(InsufficientScope {
                needed: "sessions:write".to_owned()
            })
        );
    }
}
