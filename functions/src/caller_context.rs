//! The authorizer's verdict as it travels to the handlers: the authorizer returns it as its
//! `context`, API Gateway passes it in `requestContext.authorizer.lambda`, and the handlers read
//! it back. One type serves both ends, so they cannot drift apart.

use serde::{Deserialize, Serialize};
use session_core::auth::Principal;
use session_core::domain::{Timestamp, UserId};

/// The authorizer context. API Gateway passes only strings, numbers and booleans, so scopes are
/// one space-separated string (as in OAuth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerContext {
    /// The token's subject.
    pub user: String,
    /// Granted scopes, space-separated.
    pub scopes: String,
    /// When the token expires, in seconds since the Unix epoch. API Gateway may cache an
    /// authorizer's answer; the handler refuses it once this has passed.
    pub expires_at: i64,
    /// The token's id, for audit logs.
    pub token_id: String,
}

impl From<&Principal> for CallerContext {
    fn from(principal: &Principal) -> Self {
        Self {
            user: principal.user.to_string(),
            scopes: principal.scopes.join(" "),
            expires_at: principal.expires_at.unix_millis() / 1000,
            token_id: principal.token_id.clone(),
        }
    }
}

impl CallerContext {
    /// The principal this context speaks for, if it is well-formed and not expired at `now`.
    pub fn principal(&self, now: Timestamp) -> Option<Principal> {
        let expires_at = Timestamp::from_unix_millis(self.expires_at.saturating_mul(1000));
        if expires_at <= now {
            return None;
        }
        Some(Principal {
            user: UserId::parse("user", &self.user).ok()?,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            expires_at,
            token_id: self.token_id.clone(),
        })
    }
}

/// An authorizer's context as API Gateway hands it on (`requestContext.authorizer`), read back
/// into its type; `None` if it does not have that shape. HTTP and WebSocket handlers share this.
pub fn from_authorizer<T: serde::de::DeserializeOwned, S: std::hash::BuildHasher>(
    fields: &std::collections::HashMap<String, serde_json::Value, S>,
) -> Option<T> {
    let object = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::from_value(serde_json::Value::Object(object)).ok()
}
