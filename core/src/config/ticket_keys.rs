//! The ticket keys of `auth`: where they come from (a file or a Secrets Manager secret each),
//! and the check that a process holding both signs with a key it also verifies.

use std::path::Path;

use super::{AuthSettings, ConfigError, invalid, validate_secret_arn};
use crate::auth::keys::{KeyError, SigningKey, VerifyKeys};

const SIGNING_FILE: &str = "auth.ticket_signing_key_file";
const SIGNING_SECRET: &str = "auth.ticket_signing_key_secret_arn";
const VERIFY_FILE: &str = "auth.ticket_verify_keys_file";
const VERIFY_SECRET: &str = "auth.ticket_verify_keys_secret_arn";

/// The keys as read.
#[derive(Debug, Clone, Default)]
pub(super) struct TicketKeys {
    signing: Option<SigningKey>,
    verify: Option<VerifyKeys>,
}

/// Reads and parses the file `path` of `setting`.
fn read<T>(
    setting: &'static str,
    path: &Path,
    parse: fn(&str) -> Result<T, KeyError>,
) -> Result<T, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return invalid(setting, format!("cannot read {}: {e}", path.display())),
    };
    parse(&text).or_else(|e| invalid(setting, format!("{}: {e}", path.display())))
}

impl AuthSettings {
    /// The key that signs tickets, if this process has one.
    pub fn ticket_signing_key(&self) -> Option<&SigningKey> {
        self.ticket_keys.signing.as_ref()
    }

    /// The public keys tickets are checked with, if this process has them.
    pub fn ticket_verify_keys(&self) -> Option<&VerifyKeys> {
        self.ticket_keys.verify.as_ref()
    }

    /// The signing key's secret, if set and not read yet.
    pub fn ticket_signing_key_pending(&self) -> Option<&str> {
        self.ticket_signing_key_secret_arn
            .as_deref()
            .filter(|_| self.ticket_keys.signing.is_none())
    }

    /// The verify keys' secret, if set and not read yet.
    pub fn ticket_verify_keys_pending(&self) -> Option<&str> {
        self.ticket_verify_keys_secret_arn
            .as_deref()
            .filter(|_| self.ticket_keys.verify.is_none())
    }

    /// Takes the signing key read from `auth.ticket_signing_key_secret_arn` (a signing-key
    /// document).
    ///
    /// # Errors
    /// Not a signing-key document, or its kid is not among the verify keys held.
    pub fn set_ticket_signing_key_from_secret(&mut self, text: &str) -> Result<(), ConfigError> {
        let key =
            SigningKey::from_json(text).or_else(|e| invalid(SIGNING_SECRET, e.to_string()))?;
        self.set_ticket_keys(Some(key), None)
    }

    /// Takes the public keys read from `auth.ticket_verify_keys_secret_arn` (a JWKS).
    ///
    /// # Errors
    /// Not a JWKS of ES256 keys, or the signing key held is not among them.
    pub fn set_ticket_verify_keys_from_secret(&mut self, text: &str) -> Result<(), ConfigError> {
        let keys =
            VerifyKeys::from_json(text).or_else(|e| invalid(VERIFY_SECRET, e.to_string()))?;
        self.set_ticket_keys(None, Some(keys))
    }

    /// Sets the keys given (the local stack makes its own), keeping the others.
    ///
    /// # Errors
    /// The process would sign with a key its verify keys do not hold.
    pub fn set_ticket_keys(
        &mut self,
        signing: Option<SigningKey>,
        verify: Option<VerifyKeys>,
    ) -> Result<(), ConfigError> {
        let mut keys = (*self.ticket_keys).clone();
        keys.signing = signing.or(keys.signing);
        keys.verify = verify.or(keys.verify);
        if let (Some(signing), Some(verify)) = (&keys.signing, &keys.verify)
            && !verify.holds(signing)
        {
            let setting = if self.ticket_verify_keys_secret_arn.is_some() {
                VERIFY_SECRET
            } else {
                VERIFY_FILE
            };
            return invalid(
                setting,
                format!(
                    "holds no public key matching the signing key {:?} (publish a new key to the \
                     verifiers before signing with it)",
                    signing.kid()
                ),
            );
        }
        *self.ticket_keys = keys;
        Ok(())
    }

    /// These settings holding only the keys a component needs: the signing key if it `signs`,
    /// the verify keys if it `verifies` (the local stack runs every component in one process,
    /// each with its own share, as in AWS).
    #[must_use]
    pub fn with_ticket_keys_for(&self, signs: bool, verifies: bool) -> Self {
        let mut auth = self.clone();
        if !signs {
            auth.ticket_keys.signing = None;
        }
        if !verifies {
            auth.ticket_keys.verify = None;
        }
        auth
    }

    /// One source per key, and secrets named by ARN.
    pub(super) fn validate_ticket_key_sources(&self) -> Result<(), ConfigError> {
        for (file, file_setting, secret, secret_setting) in [
            (
                &self.ticket_signing_key_file,
                SIGNING_FILE,
                &self.ticket_signing_key_secret_arn,
                SIGNING_SECRET,
            ),
            (
                &self.ticket_verify_keys_file,
                VERIFY_FILE,
                &self.ticket_verify_keys_secret_arn,
                VERIFY_SECRET,
            ),
        ] {
            if file.is_some() && secret.is_some() {
                return invalid(
                    secret_setting,
                    format!("must not be set with {file_setting} (one place holds the keys)"),
                );
            }
            validate_secret_arn(secret_setting, secret.as_deref())?;
        }
        Ok(())
    }

    /// Reads the key files named.
    pub(super) fn load_ticket_key_files(&mut self) -> Result<(), ConfigError> {
        let signing = match &self.ticket_signing_key_file {
            Some(path) => Some(read(SIGNING_FILE, path, SigningKey::from_json)?),
            None => None,
        };
        let verify = match &self.ticket_verify_keys_file {
            Some(path) => Some(read(VERIFY_FILE, path, VerifyKeys::from_json)?),
            None => None,
        };
        self.set_ticket_keys(signing, verify)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // `Jail`'s closures return figment's error
mod tests {
    use figment::Figment;
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::config::Settings;

    fn jwks(keys: &[&SigningKey]) -> String {
        serde_json::to_string(VerifyKeys::of(keys).unwrap().jwks()).unwrap()
    }

    #[test]
    fn ticket_keys_load_from_their_files() {
        let key = SigningKey::generate("2026-12").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.create_file("signing.json", key.to_json().expose_secret())?;
            jail.create_file("verify.json", &jwks(&[&key]))?;
            jail.set_env("SESSION_AUTH__TICKET_SIGNING_KEY_FILE", "signing.json");
            jail.set_env("SESSION_AUTH__TICKET_VERIFY_KEYS_FILE", "verify.json");

            let settings = Settings::load(None).unwrap();

            let auth = &settings.auth;
            assert_eq!(auth.ticket_signing_key().unwrap().kid(), "2026-12");
            let kids: Vec<_> = auth.ticket_verify_keys().unwrap().kids().collect();
            assert_eq!(kids, ["2026-12"]);
            Ok(())
        });
    }

    #[test]
    fn a_signing_key_the_verify_keys_do_not_hold_is_refused() {
        let signing = SigningKey::generate("new").unwrap();
        let old = SigningKey::generate("old").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.create_file("signing.json", signing.to_json().expose_secret())?;
            jail.create_file("verify.json", &jwks(&[&old]))?;
            let figment = Figment::new()
                .merge(("auth.ticket_signing_key_file", "signing.json"))
                .merge(("auth.ticket_verify_keys_file", "verify.json"));

            let err = Settings::from_figment(&figment).unwrap_err().to_string();

            assert!(err.contains("auth.ticket_verify_keys_file"), "{err}");
            assert!(err.contains("\"new\""), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_ticket_key_settings_name_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hmac.json",
                r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#,
            )?;
            let load = |pairs: &[(&str, &str)]| {
                let figment = pairs
                    .iter()
                    .fold(Figment::new(), |f, (k, v)| f.merge((*k, *v)));
                Settings::from_figment(&figment).unwrap_err().to_string()
            };

            let both = load(&[
                ("auth.ticket_signing_key_file", "k.json"),
                (
                    "auth.ticket_signing_key_secret_arn",
                    "arn:aws:secretsmanager:us-east-1:1:secret:k-AbCdEf",
                ),
            ]);
            let missing = load(&[("auth.ticket_signing_key_file", "/nonexistent/k.json")]);
            let hmac = load(&[("auth.ticket_verify_keys_file", "hmac.json")]);

            assert!(
                both.contains("auth.ticket_signing_key_secret_arn: must not be set with"),
                "{both}"
            );
            assert!(
                missing.contains("auth.ticket_signing_key_file: cannot read /nonexistent/k.json"),
                "{missing}"
            );
            assert!(
                hmac.contains("auth.ticket_verify_keys_file") && hmac.contains("kty must be EC"),
                "{hmac}"
            );
            Ok(())
        });
    }

    #[test]
    fn keys_read_from_secrets_are_parsed_and_cross_checked() {
        let key = SigningKey::generate("k").unwrap();
        let mut auth = AuthSettings::default();

        auth.set_ticket_verify_keys_from_secret(&jwks(&[&key]))
            .unwrap();
        auth.set_ticket_signing_key_from_secret(key.to_json().expose_secret())
            .unwrap();
        let err = auth
            .set_ticket_signing_key_from_secret("{}")
            .unwrap_err()
            .to_string();

        assert_eq!(auth.ticket_signing_key().unwrap().kid(), "k");
        assert!(err.contains("auth.ticket_signing_key_secret_arn"), "{err}");
    }
}
