//! Mutual TLS between the service's own backend clients (built from its settings, as in
//! production) and the reference servers requiring client certificates, over TCP on loopback.
//!
//! Certificates are minted per test: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, a client certificate from that CA, and a CA of strangers with its own client
//! certificate. Every refusal must reach the caller as the service's own error (backend or auth
//! service unavailable), never as a panic or a hang.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use figment::Figment;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use session_core::auth::{AuthError, GrpcTokenValidator, TokenValidator as _};
use session_core::backend::{BackendError, GrpcSimulatorBackend, SimulatorBackend as _, StartSpec};
use session_core::config::Settings;
use session_core::domain::{SimulatorId, SimulatorStatus, Symbol};
use session_local::ServerTls;
use session_local::auth::{AuthHandle, AuthServer, AuthSettings};
use session_local::simulator::{SimulatorHandle, SimulatorServer, SimulatorSettings};
use tokio::net::TcpListener;

use crate::helpers::{WAIT_TIMEOUT, within};

/// A certificate authority of a test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("valid names");
        params.distinguished_name.push(DnType::CommonName, "test");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Everything a test needs, written to files as an operator would mount them.
struct Pki {
    server: ServerTls,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    client: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
}

impl Pki {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "mtls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let write = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents).expect("a writable scratch directory");
            path
        };
        let ca = Ca::new("backends CA");
        let other = Ca::new("strangers CA");
        let server = ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = ca.issue(&["session-service"], ExtendedKeyUsagePurpose::ClientAuth);
        let stranger = other.issue(&["session-service"], ExtendedKeyUsagePurpose::ClientAuth);
        Self {
            server: ServerTls::new(&server.cert, &server.key).require_client_certs(ca.issuer.pem()),
            ca_file: write("ca.pem", &ca.issuer.pem()),
            other_ca_file: write("other-ca.pem", &other.issuer.pem()),
            client: (
                write("client.pem", &client.cert),
                write("client.key", &client.key),
            ),
            stranger: (
                write("stranger.pem", &stranger.cert),
                write("stranger.key", &stranger.key),
            ),
        }
    }

    /// The service's settings for backends at these URLs, trusting `ca` and presenting
    /// `identity`: loaded and validated as the service loads them. No retries: a refusal
    /// surfaces at once.
    fn settings(
        simulator_url: &str,
        auth_url: &str,
        ca: &Path,
        identity: Option<&(PathBuf, PathBuf)>,
        domain: Option<&str>,
    ) -> Settings {
        let mut figment = Figment::new()
            .merge(("backends.simulator_url", simulator_url))
            .merge(("backends.auth_url", auth_url))
            .merge(("backends.max_retries", 0))
            .merge(("backends.deadline_ms", 5_000))
            .merge(("backends.tls.ca_file", ca));
        if let Some((cert, key)) = identity {
            figment = figment
                .merge(("backends.tls.cert_file", cert))
                .merge(("backends.tls.key_file", key));
        }
        if let Some(domain) = domain {
            figment = figment.merge(("backends.tls.domain", domain));
        }
        Settings::from_figment(&figment).expect("valid TLS settings")
    }
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port")
}

async fn mtls_simulator(pki: &Pki) -> (SimulatorHandle, String) {
    let handle = SimulatorServer::new(SimulatorSettings::default())
        .with_tls(pki.server.clone())
        .spawn_on(loopback().await)
        .expect("the simulator server starts");
    let url = format!("https://127.0.0.1:{}", handle.addr().port());
    (handle, url)
}

async fn mtls_auth(pki: &Pki) -> (AuthHandle, String) {
    let handle = AuthServer::new(AuthSettings::default())
        .expect("a signing key")
        .with_tls(pki.server.clone())
        .spawn_on(loopback().await)
        .expect("the auth server starts");
    let url = format!("https://127.0.0.1:{}", handle.addr().port());
    (handle, url)
}

fn start_spec() -> StartSpec {
    StartSpec {
        client_token: SimulatorId::generate(),
        symbols: vec![Symbol::parse("symbols", "BTC-USD").expect("a symbol")],
        seed: 7,
        events_per_second: 100,
    }
}

/// Starts a simulator through the service's backend client built from `settings`.
async fn start_with(settings: &Settings) -> Result<SimulatorStatus, BackendError> {
    let backend = GrpcSimulatorBackend::from_settings(settings).expect("a valid endpoint");
    let started = within(
        WAIT_TIMEOUT,
        "a start over TLS",
        backend.start(&start_spec()),
    )
    .await?;
    let status = within(
        WAIT_TIMEOUT,
        "a status over TLS",
        backend.get(&started.backend_id),
    )
    .await?;
    Ok(status.status)
}

/// Asserts a refusal surfaced as the backend being unavailable, and returns its text (which
/// names the TLS alert or verification error, as the service's logs will).
fn assert_unavailable(result: Result<SimulatorStatus, BackendError>) -> String {
    match result {
        Err(BackendError::Unavailable(message)) => message,
        other => panic!("expected the backend to be unavailable, got {other:?}"),
    }
}

const NO_AUTH: &str = "https://127.0.0.1:9";

#[tokio::test]
async fn the_simulator_backend_with_the_ca_and_a_client_certificate_starts_a_simulator_over_mtls() {
    // Arrange
    let pki = Pki::new();
    let (_simulator, url) = mtls_simulator(&pki).await;
    let settings = Pki::settings(&url, NO_AUTH, &pki.ca_file, Some(&pki.client), None);

    // Act
    let status = start_with(&settings).await;

    // Assert
    assert!(
        matches!(
            status,
            Ok(SimulatorStatus::Running | SimulatorStatus::Starting)
        ),
        "{status:?}"
    );
}

#[tokio::test]
async fn the_simulator_backend_without_a_client_certificate_is_refused_as_unavailable() {
    // Arrange
    let pki = Pki::new();
    let (_simulator, url) = mtls_simulator(&pki).await;
    let settings = Pki::settings(&url, NO_AUTH, &pki.ca_file, None, None);

    // Act
    let result = start_with(&settings).await;

    // Assert
    let message = assert_unavailable(result);
    assert!(message.contains("CertificateRequired"), "{message}");
}

#[tokio::test]
async fn the_simulator_backend_with_a_client_certificate_of_another_ca_is_refused_as_unavailable() {
    // Arrange
    let pki = Pki::new();
    let (_simulator, url) = mtls_simulator(&pki).await;
    let settings = Pki::settings(&url, NO_AUTH, &pki.ca_file, Some(&pki.stranger), None);

    // Act
    let result = start_with(&settings).await;

    // Assert
    let message = assert_unavailable(result);
    assert!(message.contains("UnknownCA"), "{message}");
}

#[tokio::test]
async fn the_simulator_backend_trusting_another_ca_refuses_the_server_as_unavailable() {
    // Arrange
    let pki = Pki::new();
    let (simulator, url) = mtls_simulator(&pki).await;
    let settings = Pki::settings(&url, NO_AUTH, &pki.other_ca_file, Some(&pki.client), None);

    // Act
    let result = start_with(&settings).await;

    // Assert: refused, and nothing was started on the server.
    let message = assert_unavailable(result);
    assert!(message.contains("UnknownIssuer"), "{message}");
    let listed = simulator.simulators().list(0, "").expect("a listing");
    assert!(listed.simulators.is_empty());
}

#[tokio::test]
async fn the_token_validator_with_a_client_certificate_validates_over_mtls_by_the_configured_domain()
 {
    // Arrange: the URL is an address, the certificate is checked for `localhost`.
    let pki = Pki::new();
    let (auth, url) = mtls_auth(&pki).await;
    let settings = Pki::settings(
        &url,
        &url,
        &pki.ca_file,
        Some(&pki.client),
        Some("localhost"),
    );
    let validator = GrpcTokenValidator::from_settings(&settings).expect("a valid endpoint");
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], Duration::from_secs(3600))
        .expect("a token");

    // Act
    let principal = within(
        WAIT_TIMEOUT,
        "a validation over TLS",
        validator.validate(&token),
    )
    .await;

    // Assert
    let principal = principal.expect("a valid token over mTLS");
    assert_eq!(principal.user.as_str(), "alice");
}

#[tokio::test]
async fn the_token_validator_without_a_client_certificate_is_refused_as_unavailable() {
    // Arrange
    let pki = Pki::new();
    let (auth, url) = mtls_auth(&pki).await;
    let settings = Pki::settings(&url, &url, &pki.ca_file, None, None);
    let validator = GrpcTokenValidator::from_settings(&settings).expect("a valid endpoint");
    let token = auth
        .auth()
        .issue("alice", &["sessions:read"], Duration::from_secs(3600))
        .expect("a token");

    // Act
    let result = within(
        WAIT_TIMEOUT,
        "a validation over TLS",
        validator.validate(&token),
    )
    .await;

    // Assert
    match result {
        Err(AuthError::Unavailable(message)) => {
            assert!(message.contains("CertificateRequired"), "{message}");
        }
        other => panic!("expected the auth service to be unavailable, got {other:?}"),
    }
}
