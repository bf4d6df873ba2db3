//! `auth`: ticket keys, token audience, and the caches of token answers.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::{check_range, whole_secs};
use super::ticket_keys::TicketKeys;
use super::{ConfigError, invalid};

/// Authentication settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// JSON file of the ES256 key that signs connect tickets, `{"kid": ..., "private_key_pem":
    /// ...}` (PKCS#8 EC P-256): only the REST API has one. See `auth::keys` for the formats.
    pub ticket_signing_key_file: Option<PathBuf>,
    /// Instead of `ticket_signing_key_file`: the Secrets Manager secret holding that document,
    /// read once at start ([`crate::secrets::load_ticket_keys`]).
    pub ticket_signing_key_secret_arn: Option<String>,
    /// JWKS file of the public keys tickets are checked with (one or more, by `kid`): the
    /// WebSocket authorizer and the streamer have one.
    pub ticket_verify_keys_file: Option<PathBuf>,
    /// Instead of `ticket_verify_keys_file`: the Secrets Manager secret holding that JWKS.
    pub ticket_verify_keys_secret_arn: Option<String>,
    /// How long a connect ticket is valid, in seconds.
    #[serde(deserialize_with = "super::duration::secs")]
    pub ticket_ttl_secs: Duration,
    /// The audience bearer tokens must be issued for.
    pub token_audience: String,
    /// How long a process keeps an answer of the revocation list (negative ones too), in
    /// milliseconds: the bound within which a revocation takes effect at every door. 0: ask
    /// the store every time.
    #[serde(deserialize_with = "super::duration::millis")]
    pub revocation_cache_ms: Duration,
    /// How many tokens' answers a process keeps at most.
    pub revocation_cache_entries: usize,
    /// How many validated bearer tokens' answers a process keeps at most (each for at most a
    /// minute, and never past the token's expiry), so that a warm process does not ask the auth
    /// service at every request.
    pub token_cache_entries: usize,
    /// The longest life of a bearer token the auth service issues, in seconds: a revocation
    /// lasts at most this long, and by default a subject's lasts exactly this long (every token
    /// of the subject has expired by then).
    #[serde(deserialize_with = "super::duration::secs")]
    pub max_token_life_secs: Duration,
    /// The ticket keys as read from the files or secrets above (or set by the local stack).
    /// Boxed, as `backends.tls` is: settings are held across awaits in many futures.
    #[serde(skip)]
    pub(super) ticket_keys: Box<TicketKeys>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            ticket_signing_key_file: None,
            ticket_signing_key_secret_arn: None,
            ticket_verify_keys_file: None,
            ticket_verify_keys_secret_arn: None,
            ticket_ttl_secs: Duration::from_secs(60),
            token_audience: "session-service".to_owned(),
            revocation_cache_ms: Duration::from_millis(5_000),
            revocation_cache_entries: 10_000,
            token_cache_entries: 10_000,
            max_token_life_secs: Duration::from_secs(86_400),
            ticket_keys: Box::default(),
        }
    }
}

impl AuthSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_ticket_key_sources()?;
        check_range(
            "auth.ticket_ttl_secs",
            whole_secs(self.ticket_ttl_secs),
            5..=600,
        )?;
        if self.revocation_cache_ms > Duration::from_secs(60) {
            return invalid(
                "auth.revocation_cache_ms",
                "must be at most 60000 (a minute)",
            );
        }
        if self.revocation_cache_entries == 0 {
            return invalid("auth.revocation_cache_entries", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.token_cache_entries) {
            return invalid("auth.token_cache_entries", "must be between 1 and 1000000");
        }
        if !(60..=30 * 86_400).contains(&self.max_token_life_secs.as_secs()) {
            return invalid(
                "auth.max_token_life_secs",
                "must be between 60 and 2592000 (30 days)",
            );
        }
        Ok(())
    }
}
