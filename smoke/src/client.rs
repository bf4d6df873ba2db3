//! The HTTP and WebSocket clients: one rustls configuration for both, on aws-lc-rs (the
//! provider the rest of the workspace builds), trusting the system's roots (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are honoured) plus an optional CA file, e.g. a private CA in front of a staging
//! deployment. HTTP/1.1 only: what EventSource, WebSocket and API Gateway speak. Proxies
//! (`HTTPS_PROXY`) are not used: the run talks to the deployment directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};

/// The HTTP client: pooled HTTP/1.1 connections over TCP or TLS.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long a TCP (and TLS) connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the clients cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read or holds no certificate.
    #[error("--ca-file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The clients a run uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// HTTP/1.1 over TCP or TLS; no overall timeout (an SSE response is long-lived): the run's
    /// deadline bounds each step.
    pub http: HttpClient,
    /// The TLS configuration, for `wss://`.
    pub tls: Arc<ClientConfig>,
    /// How many roots are trusted.
    pub roots: usize,
}

impl Clients {
    /// Builds the clients, trusting the system's roots and those of `ca_file`.
    ///
    /// # Errors
    /// `ca_file` cannot be read or has no certificate; rustls refuses the configuration.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        // Unreadable entries of the system's store are skipped, as browsers do; an empty store
        // still serves http:// and makes https:// fail with the certificate named.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            let error = |reason: String| TlsError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(error("no PEM certificate in it".to_owned()));
            }
            for certificate in certificates {
                roots.add(certificate)?;
            }
        }
        let count = roots.len();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        // hyper-rustls sets the HTTP client's ALPN; the WebSocket's is said here.
        let mut websocket = tls;
        websocket.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            http,
            tls: Arc::new(websocket),
            roots: count,
        })
    }
}
