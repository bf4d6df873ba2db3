//! The caller a valid token speaks for.

use crate::domain::{Timestamp, UserId};

/// A validated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject.
    pub user: UserId,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When the token expires; nothing derived from it may outlive this.
    pub expires_at: Timestamp,
    /// The token's id, for audit logs.
    pub token_id: String,
}
