//! `session-local ticket-keys --kid ID`: a new connect-ticket key pair, printed as the two
//! secrets' JSON, without openssl: `signing_key` for the REST API
//! (`auth.ticket_signing_key_secret_arn`), `verify_keys` (a JWKS) for the WebSocket authorizer
//! and the streamer (`auth.ticket_verify_keys_secret_arn`, `auth.ticket_verify_keys_file`).
//! docs/deploy.md, "Rotating the ticket keys", uses it.

use secrecy::ExposeSecret as _;
use session_core::auth::keys::{KeyError, SigningKey, VerifyKeys};

/// A fresh key pair named `kid`, as `{"signing_key": {"kid", "private_key_pem"},
/// "verify_keys": {"keys": [<its public JWK>]}}`.
///
/// # Errors
/// `kid` is empty, or the key cannot be generated.
pub fn generate(kid: &str) -> Result<serde_json::Value, KeyError> {
    let key = SigningKey::generate(kid)?;
    let signing: serde_json::Value = serde_json::from_str(key.to_json().expose_secret())
        .unwrap_or_else(|_| unreachable!("to_json writes JSON"));
    let verify = serde_json::to_value(VerifyKeys::of(&[&key])?.jwks())
        .unwrap_or_else(|_| unreachable!("a JWKS serialises"));
    Ok(serde_json::json!({ "signing_key": signing, "verify_keys": verify }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_documents_are_the_secrets_the_service_reads_and_match() {
        let printed = generate("2026-12").unwrap();

        let signing = SigningKey::from_json(&printed["signing_key"].to_string()).unwrap();
        let verify = VerifyKeys::from_json(&printed["verify_keys"].to_string()).unwrap();

        assert_eq!(signing.kid(), "2026-12");
        assert!(verify.holds(&signing));
        assert!(
            !printed["verify_keys"].to_string().contains("PRIVATE"),
            "the public set holds no private key"
        );
        assert_eq!(generate(" ").unwrap_err(), KeyError::MissingKid);
    }
}
