//! The one place a gRPC backend's [`Endpoint`] is built, for every client of a backend (the
//! simulator control client, the token validator, the streamer's market data upstream):
//! plaintext for an `http://` URL, TLS for an `https://` one, with the CA, client identity and
//! domain of `backends.tls`.
//!
//! Callers add their own timeouts and keep-alives to the endpoint; connecting (and so the TLS
//! handshake) happens on first use, and `status_text` says what broke when it fails.

use secrecy::ExposeSecret as _;
use tonic::Status;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::BackendTlsSettings;

/// The endpoint of the backend at `url`: TLS when `url` is `https://`, trusting only the CA of
/// `tls` and presenting its client identity when one is configured (mutual TLS).
///
/// # Errors
/// `url` is not a valid URI, or the TLS material does not parse (a malformed certificate or
/// key).
pub fn endpoint(url: &str, tls: &BackendTlsSettings) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = tls.ca_pem() {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = tls.identity_pem() {
        config = config.identity(Identity::from_pem(cert, key.expose_secret()));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    endpoint.tls_config(config)
}

/// The text of a failed call: its message, then the causes of a local failure. A transport
/// failure's message is only `transport error`; its causes say what broke (a refused mutual TLS
/// handshake ends in `received fatal alert: CertificateRequired`).
pub(crate) fn status_text(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let line = error.to_string();
        // Wrappers often repeat their cause's text.
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_urls_stay_plaintext_and_https_ones_take_tls() {
        let tls = BackendTlsSettings::default();
        assert!(endpoint("http://127.0.0.1:50051", &tls).is_ok());
        // No CA is configured here (validation requires one): the endpoint still builds, and
        // no server could be trusted.
        assert!(endpoint("https://simulator.internal:50051", &tls).is_ok());
        assert!(endpoint("not a url", &tls).is_err());
    }
}
