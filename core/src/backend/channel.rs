//! The one place a gRPC backend's [`Endpoint`] is built, for every client of a backend (the
//! simulator control client, the token validator, the streamer's market data upstream):
//! plaintext for an `http://` URL, TLS for an `https://` one, with the CA, client identity and
//! domain of `backends.tls`.
//!
//! Callers add their own timeouts and keep-alives to the endpoint; connecting (and so the TLS
//! handshake) happens on first use, and `status_text` says what broke when it fails.

use secrecy::ExposeSecret as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::config::BackendTlsSettings;
use crate::resilience::ErrorClass;

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

/// The endpoint of one server of a backend, as every client of a backend server uses it: the
/// call deadline of `backends.deadline_ms` (also the connect timeout), HTTP/2 keep-alive pings
/// every `backends.keep_alive_ms` (a server that vanished without closing is noticed), and at
/// most `backends.channel_concurrency_limit` calls in flight on its one connection.
///
/// # Errors
/// As [`endpoint`].
pub fn server_endpoint(
    url: &str,
    backends: &crate::config::BackendSettings,
) -> Result<Endpoint, tonic::transport::Error> {
    let deadline = backends.deadline_ms;
    Ok(endpoint(url, &backends.tls)?
        .connect_timeout(deadline)
        .timeout(deadline)
        .http2_keep_alive_interval(backends.keep_alive_ms)
        .keep_alive_timeout(deadline)
        .keep_alive_while_idle(true)
        .concurrency_limit(backends.channel_concurrency_limit))
}

/// A backend channel that sends the caller's trace (`traceparent`) on every call.
pub type TracedChannel = InterceptedService<Channel, crate::telemetry::TracePropagation>;

/// `channel`, sending the caller's trace on every call: what every backend client is built on.
pub fn traced(channel: Channel) -> TracedChannel {
    InterceptedService::new(channel, crate::telemetry::TracePropagation)
}

/// Whether a call that failed with `code` may pass when tried again: the classification of
/// every backend call. A request the backend refused (bad argument, not found, not allowed,
/// not implemented) gets the same answer again; unavailability, deadlines, exhaustion, aborts,
/// cancellations, `Unknown` (a broken connection surfaces as it) and `Internal` may pass.
pub(crate) fn status_class(code: Code) -> ErrorClass {
    match code {
        Code::NotFound
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
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

    #[test]
    fn only_failures_that_may_pass_are_transient() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Unknown,
            Code::Internal,
        ] {
            assert_eq!(status_class(code), ErrorClass::Transient, "{code:?}");
        }
        for code in [
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::NotFound,
        ] {
            assert_eq!(status_class(code), ErrorClass::Permanent, "{code:?}");
        }
    }
}
