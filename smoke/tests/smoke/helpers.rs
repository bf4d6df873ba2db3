//! The local stack with its endpoints file, the `smoke` binary as a process, and a TLS proxy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use session_core::config::Settings;
use session_local::stack::{Stack, StackSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How long a smoke run may take in a test before it counts as hung.
const RUN_PATIENCE: Duration = Duration::from_secs(120);

/// A directory of its own for each test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("session-smoke-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// The local stack on free ports, with its endpoints file.
pub struct LocalStack {
    pub stack: Stack,
    pub endpoints_file: PathBuf,
}

impl LocalStack {
    pub async fn start(dir: &Path) -> Self {
        let mut service = Settings::default();
        // Retries quick enough for tests; the policy is the same.
        service.backends.retry_base_ms = Duration::from_millis(5);
        let endpoints_file = dir.join("endpoints.json");
        let stack = Stack::start(StackSettings {
            endpoints_file: Some(endpoints_file.clone()),
            ..StackSettings::ephemeral(service)
        })
        .await
        .expect("the local stack starts");
        Self {
            stack,
            endpoints_file,
        }
    }

    /// The endpoints file as JSON.
    pub fn endpoints(&self) -> Value {
        let text = std::fs::read_to_string(&self.endpoints_file).expect("the endpoints file");
        serde_json::from_str(&text).expect("JSON")
    }

    /// A session of `user` as the HTTP API returns it.
    pub async fn session(&self, user: &str, session: &str) -> Value {
        let url = format!("{}/v1/sessions/{session}", self.stack.endpoints().http_api);
        reqwest::Client::new()
            .get(url)
            .bearer_auth(self.stack.token(user))
            .send()
            .await
            .expect("the HTTP API answers")
            .json()
            .await
            .expect("a JSON body")
    }
}

/// Writes `endpoints` to `dir/name`.
pub fn write_endpoints(dir: &Path, name: &str, endpoints: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, endpoints.to_string()).expect("writable");
    path
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// A finished `smoke` run.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The line of `step`, whatever its status.
    pub fn line(&self, step: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| {
                line.get(5..)
                    .is_some_and(|rest| rest.starts_with(&format!("{step} ")))
            })
            .unwrap_or_else(|| panic!("no line for step {step:?} in\n{self}"))
    }

    /// The last line printed.
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }

    /// Asserts the run failed (status 1) at `step`, with `reason` in what it says.
    pub fn assert_failed_at(&self, step: &str, reason: &str) {
        assert_eq!(self.status.code(), Some(1), "{self}");
        let last = self.last_line();
        assert!(
            last.starts_with(&format!("FAILED at step \"{step}\": ")),
            "{self}"
        );
        assert!(
            last.contains(reason),
            "{reason:?} not in the last line of\n{self}"
        );
        assert!(self.line(step).starts_with("FAIL "), "{self}");
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// The `smoke` command with `args`, and `env` on top of an environment without SMOKE_*
/// variables; killed if the test ends first.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smoke"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in [
        "SMOKE_TOKEN",
        "SMOKE_TIMEOUT",
        "SMOKE_EVENTS",
        "SMOKE_CA_FILE",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command
}

/// Runs `smoke` (see [`command`]) to its end.
pub async fn smoke(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::time::timeout(RUN_PATIENCE, command(args, env).output())
        .await
        .expect("the run ends in time")
        .expect("smoke runs");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The loopback address of an `http://127.0.0.1:port` or `ws://127.0.0.1:port/...` URL.
pub fn address(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("a URL");
    let port = url.port_or_known_default().expect("a port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A CA, written to `dir/ca.pem`, and a server configuration with a certificate it signed for
/// 127.0.0.1 and localhost.
pub fn pki(dir: &Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "smoke test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
        .expect("a CA certificate");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("writable");

    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let key = KeyPair::generate().expect("a key");
    let cert = CertificateParams::new(names)
        .expect("valid names")
        .signed_by(&key, &ca)
        .expect("a certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("a server configuration");
    (ca_file, Arc::new(config))
}

/// A TLS-terminating proxy on a free loopback port in front of `upstream`, as API Gateway or a
/// load balancer is in front of a deployment; stops accepting when dropped.
pub struct TlsProxy {
    pub port: u16,
    accept: JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(upstream: SocketAddr, config: Arc<rustls::ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { port, accept }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
