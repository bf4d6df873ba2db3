//! `backends`: where the gRPC backends are, how patiently they are called, and mutual TLS to
//! them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::duration::{check_range, whole_secs};
use super::{ConfigError, invalid, validate_secret_arn};

/// Where the gRPC backends are and how patiently to call them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSettings {
    /// The auth service (`auth.v1.AuthService`).
    pub auth_url: String,
    /// The exchange simulator service (`simulator.v1.SimulatorControl`, `MarketData`).
    pub simulator_url: String,
    /// Deadline of one call attempt, in milliseconds.
    #[serde(deserialize_with = "super::duration::millis")]
    pub deadline_ms: Duration,
    /// Retries of a transient failure after the first attempt.
    pub max_retries: u32,
    /// Upper bound of the first retry delay, in milliseconds (full jitter, doubling).
    #[serde(deserialize_with = "super::duration::millis")]
    pub retry_base_ms: Duration,
    /// Consecutive failures of a backend that open its circuit breaker (each process keeps
    /// one per backend).
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before it lets one through, in seconds.
    #[serde(deserialize_with = "super::duration::secs")]
    pub breaker_cool_down_secs: Duration,
    /// Calls in flight at once on one backend server's channel (one HTTP/2 connection per
    /// server); more wait for a slot, so one busy server cannot take every task of a process.
    pub channel_concurrency_limit: usize,
    /// HTTP/2 keep-alive ping interval of a backend server's channel, in milliseconds: a
    /// server that vanished without closing is noticed within this and the ping's timeout.
    #[serde(deserialize_with = "super::duration::millis")]
    pub keep_alive_ms: Duration,
    /// Mutual TLS to both backends; unset, they are called in plaintext (the local stack).
    /// Boxed: `Settings` is held across awaits in many futures, and this is rarely set.
    pub tls: Box<BackendTlsSettings>,
}

/// Mutual TLS to the gRPC backends (`backends.tls`). Off by default; set `ca_file` and make both
/// backend URLs `https://` to turn it on.
///
/// The files are read once, when the settings are loaded: a missing or unreadable file stops the
/// process at start-up with the setting named, rather than at the first backend call, and the
/// clients are then built without I/O (a Lambda's cold start stays free of it). Rotating
/// certificates therefore means restarting the process (a new pod or Lambda instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendTlsSettings {
    /// PEM file of the CA (one or more certificates) that signs the backends' server
    /// certificates; the only roots trusted (no system roots). Required by `https://` backend
    /// URLs.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this service's client certificate (its chain, leaf first), presented to the
    /// backends; needs `key_file`. Unset, no client certificate is sent (TLS without the "m").
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1); needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Instead of `key_file`: the ARN of a Secrets Manager secret whose `SecretString` is that
    /// PEM key, read once at start ([`crate::secrets::load_backend_tls_key`]). The Lambdas use
    /// it, so that the key never ships in a layer or an image.
    pub key_secret_arn: Option<String>,
    /// The name checked against the backends' server certificates (and sent as SNI), when it
    /// is not the URLs' host: e.g. the certificate names `simulator.internal` and the URL is an
    /// IP address. Default: each URL's host.
    pub domain: Option<String>,
    /// The files' contents, read by [`Settings::from_figment`].
    #[serde(skip)]
    pem: TlsPem,
}

/// Ends the first line of every PEM private key: `BEGIN PRIVATE KEY` (PKCS#8), `BEGIN RSA
/// PRIVATE KEY`, `BEGIN EC PRIVATE KEY`.
const PRIVATE_KEY_BLOCK: &str = "PRIVATE KEY-----";

/// What the `backends.tls` files hold, read at load.
#[derive(Debug, Clone, Default)]
struct TlsPem {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<SecretString>,
}

// By hand: `SecretString` does not compare, on purpose; settings compare by their contents.
impl PartialEq for TlsPem {
    fn eq(&self, other: &Self) -> bool {
        self.ca == other.ca
            && self.cert == other.cert
            && self.key.as_ref().map(SecretString::expose_secret)
                == other.key.as_ref().map(SecretString::expose_secret)
    }
}

impl Eq for TlsPem {}

impl BackendTlsSettings {
    /// Whether any TLS setting is given.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.key_secret_arn.is_some()
            || self.domain.is_some()
    }

    /// PEM of the trusted CA, as read at load.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pem.ca.as_deref()
    }

    /// PEM of the client certificate and of its key, as read at load: both or neither.
    pub fn identity_pem(&self) -> Option<(&str, &SecretString)> {
        self.pem.cert.as_deref().zip(self.pem.key.as_ref())
    }

    fn validate(&self, urls: &[(&'static str, &str)]) -> Result<(), ConfigError> {
        if self.key_file.is_some() && self.key_secret_arn.is_some() {
            return invalid(
                "backends.tls.key_secret_arn",
                "must not be set with backends.tls.key_file (one place holds the key)",
            );
        }
        validate_secret_arn(
            "backends.tls.key_secret_arn",
            self.key_secret_arn.as_deref(),
        )?;
        let has_key = self.key_file.is_some() || self.key_secret_arn.is_some();
        match (&self.cert_file, has_key) {
            (Some(_), false) => {
                return invalid(
                    "backends.tls.key_file",
                    "must be set with backends.tls.cert_file, or backends.tls.key_secret_arn \
                     (a client identity is a certificate and its key)",
                );
            }
            (None, true) => {
                return invalid(
                    "backends.tls.cert_file",
                    "must be set with backends.tls.key_file (a client identity is a \
                     certificate and its key)",
                );
            }
            _ => {}
        }
        if self.domain.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return invalid("backends.tls.domain", "must not be empty when set");
        }
        for (setting, url) in urls {
            let https = url.starts_with("https://");
            if self.is_set() && !https {
                return invalid(
                    setting,
                    "must be an https:// URL when backends.tls is set (TLS is never silently \
                     skipped)",
                );
            }
            // No system roots are bundled (lean TLS features): the CA must be named.
            if https && self.ca_file.is_none() {
                return invalid(
                    "backends.tls.ca_file",
                    "must be set when a backend URL is https:// (the CA of the backends' \
                     certificates)",
                );
            }
        }
        Ok(())
    }

    /// Reads the files, checking that each holds the PEM block expected.
    pub(super) fn load(&mut self) -> Result<(), ConfigError> {
        fn read(
            setting: &'static str,
            path: Option<&Path>,
            block: &str,
        ) -> Result<Option<String>, ConfigError> {
            let Some(path) = path else { return Ok(None) };
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => return invalid(setting, format!("cannot read {}: {e}", path.display())),
            };
            if !text.contains(block) {
                return invalid(
                    setting,
                    format!("{} holds no PEM \"{block}\" block", path.display()),
                );
            }
            Ok(Some(text))
        }
        self.pem = TlsPem {
            ca: read(
                "backends.tls.ca_file",
                self.ca_file.as_deref(),
                "-----BEGIN CERTIFICATE-----",
            )?,
            cert: read(
                "backends.tls.cert_file",
                self.cert_file.as_deref(),
                "-----BEGIN CERTIFICATE-----",
            )?,
            key: read(
                "backends.tls.key_file",
                self.key_file.as_deref(),
                PRIVATE_KEY_BLOCK,
            )?
            .map(SecretString::from),
        };
        Ok(())
    }

    /// Whether the key is still to be read from Secrets Manager.
    pub fn key_secret_pending(&self) -> Option<&str> {
        self.key_secret_arn
            .as_deref()
            .filter(|_| self.pem.key.is_none())
    }

    /// Takes the client key read from `backends.tls.key_secret_arn`.
    ///
    /// # Errors
    /// The secret holds no PEM private key.
    pub fn set_key_from_secret(&mut self, pem: SecretString) -> Result<(), ConfigError> {
        if !pem.expose_secret().contains(PRIVATE_KEY_BLOCK) {
            return invalid(
                "backends.tls.key_secret_arn",
                format!("the secret holds no PEM \"{PRIVATE_KEY_BLOCK}\" block"),
            );
        }
        self.pem.key = Some(pem);
        Ok(())
    }
}

impl BackendSettings {
    /// The retry policy of backend calls made while a client waits.
    pub fn retry_policy(&self) -> crate::resilience::RetryPolicy {
        let base = self.retry_base_ms;
        crate::resilience::RetryPolicy {
            max_retries: self.max_retries,
            base,
            cap: base.saturating_mul(16),
        }
    }

    /// A circuit breaker in front of one backend, as `breaker_threshold` and
    /// `breaker_cool_down_secs` say.
    pub fn breaker(&self) -> crate::resilience::CircuitBreaker {
        crate::resilience::CircuitBreaker::new(self.breaker_threshold, self.breaker_cool_down_secs)
    }
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            auth_url: "http://127.0.0.1:50052".to_owned(),
            simulator_url: "http://127.0.0.1:50051".to_owned(),
            deadline_ms: Duration::from_millis(2_000),
            max_retries: 3,
            retry_base_ms: Duration::from_millis(50),
            breaker_threshold: 5,
            breaker_cool_down_secs: Duration::from_secs(10),
            channel_concurrency_limit: 256,
            keep_alive_ms: Duration::from_millis(10_000),
            tls: Box::default(),
        }
    }
}

impl BackendSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (setting, url) in [
            ("backends.auth_url", &self.auth_url),
            ("backends.simulator_url", &self.simulator_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(setting, "must be an http:// or https:// URL");
            }
        }
        self.tls.validate(&[
            ("backends.auth_url", &self.auth_url),
            ("backends.simulator_url", &self.simulator_url),
        ])?;
        check_range(
            "backends.deadline_ms",
            self.deadline_ms.as_millis(),
            10..=60_000,
        )?;
        if self.max_retries > 10 {
            return invalid("backends.max_retries", "must be at most 10");
        }
        check_range(
            "backends.retry_base_ms",
            self.retry_base_ms.as_millis(),
            1..=10_000,
        )?;
        if !(1..=1_000).contains(&self.breaker_threshold) {
            return invalid("backends.breaker_threshold", "must be between 1 and 1000");
        }
        check_range(
            "backends.breaker_cool_down_secs",
            whole_secs(self.breaker_cool_down_secs),
            1..=3600,
        )?;
        check_range(
            "backends.channel_concurrency_limit",
            self.channel_concurrency_limit as u128,
            1..=100_000,
        )?;
        check_range(
            "backends.keep_alive_ms",
            self.keep_alive_ms.as_millis(),
            1_000..=600_000,
        )?;
        Ok(())
    }
}
