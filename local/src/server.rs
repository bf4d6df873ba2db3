//! Serving a tonic router on a listener until a shutdown future resolves, and the handle of a
//! server spawned in-process.
//!
//! Both reference backends share this: `run(listener, shutdown)` serves until `shutdown`
//! resolves, then stops accepting, lets open connections finish for at most [`DRAIN_TIMEOUT`]
//! and returns. [`ServerHandle`] is what `spawn` gives tests: the bound address and a way to
//! stop the server (explicitly, or by dropping the handle), or to kill it as a crash would
//! ([`ServerHandle::kill`]: every open connection is cut at once, no drain). [`ServerTls`] turns
//! on TLS (and client certificate checks) for both, through [`builder`].

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::{Connected, Router, TcpConnectInfo};
use tonic::transport::{Certificate, Channel, Endpoint, Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

/// How long open connections may take to finish after shutdown is asked for; a client that
/// never reads its stream must not hold a shutdown forever.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or inspecting the listening socket failed.
    #[error("cannot listen: {0}")]
    Listen(#[from] io::Error),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("the server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The settings cannot work (the error names the setting).
    #[error("invalid settings: {0}")]
    Settings(String),
    /// The TLS certificate, key or client CA cannot be read or used.
    #[error("TLS: {what}")]
    Tls {
        /// Which file or step.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// TLS of a reference server: its certificate and key, and, when given, the CA that clients'
/// certificates must chain to (the server then refuses clients without one: mutual TLS).
#[derive(Clone)]
pub struct ServerTls {
    identity: Identity,
    client_ca: Option<Certificate>,
}

// By hand: `Identity`'s own Debug prints the private key.
impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// TLS with this certificate (chain, leaf first) and key, both PEM; no client certificate
    /// asked for.
    pub fn new(cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        Self {
            identity: Identity::from_pem(cert_pem, key_pem),
            client_ca: None,
        }
    }

    /// Requires a client certificate signed by this CA (PEM).
    #[must_use]
    pub fn require_client_certs(self, ca_pem: impl AsRef<[u8]>) -> Self {
        Self {
            client_ca: Some(Certificate::from_pem(ca_pem)),
            ..self
        }
    }

    /// What the binaries' listening log line says: `mutual` or `server only`.
    pub fn mode(&self) -> &'static str {
        if self.client_ca.is_some() {
            "mutual"
        } else {
            "server only"
        }
    }

    /// TLS from PEM files (the binaries' `--tls-cert`, `--tls-key` and `--client-ca`).
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Self, ServerError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| ServerError::Tls {
                what: format!("cannot read {}", path.display()),
                source: e.into(),
            })
        };
        let tls = Self::new(read(cert)?, read(key)?);
        Ok(match client_ca {
            Some(ca) => tls.require_client_certs(read(ca)?),
            None => tls,
        })
    }
}

/// The server builder both reference servers start from: TLS when `tls` is given.
pub(crate) fn builder(tls: Option<&ServerTls>) -> Result<Server, ServerError> {
    let builder = Server::builder().tcp_nodelay(true);
    let Some(tls) = tls else {
        return Ok(builder);
    };
    let mut config = ServerTlsConfig::new().identity(tls.identity.clone());
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(ca.clone());
    }
    builder.tls_config(config).map_err(|e| ServerError::Tls {
        what: "the certificate, key or client CA does not parse".to_owned(),
        source: e.into(),
    })
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (bounded); when `kill`
/// fires, every accepted connection fails at once, as the peer of a crashed process sees it.
pub(crate) async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    kill: KillSignal,
) -> Result<(), ServerError> {
    let addr = listener.local_addr()?;
    let incoming = TcpListenerStream::new(listener).map(move |accepted| {
        accepted.map(|stream| {
            // Best effort, as tonic's own incoming does: Nagle only delays small frames.
            let _ = stream.set_nodelay(true);
            Killable::new(stream, kill.clone())
        })
    });
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        info!(%addr, "shutting down");
        let _ = stopping_tx.send(());
    };
    let serving = router.serve_with_incoming_shutdown(incoming, signal);
    let drain_deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = serving => result.map_err(ServerError::from),
        () = drain_deadline => {
            warn!(%addr, timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; leaving them");
            Ok(())
        }
    }
}

/// Fires when a server is killed ([`ServerHandle::kill`]); a server run by a binary is never.
#[derive(Debug, Clone)]
pub(crate) struct KillSignal(Option<watch::Receiver<bool>>);

impl KillSignal {
    /// A signal that never fires.
    pub(crate) fn never() -> Self {
        Self(None)
    }

    /// Resolves once the server is killed; never if the switch is dropped unfired (a server
    /// stopped gracefully drains its connections instead).
    async fn fired(self) {
        if let Some(mut killed) = self.0
            && killed.wait_for(|killed| *killed).await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// An accepted connection that fails every read and write once its server is killed: hyper then
/// drops it, and the client sees the connection reset mid-stream, with no final status.
struct Killable {
    stream: TcpStream,
    killed: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    dead: bool,
}

impl Killable {
    fn new(stream: TcpStream, kill: KillSignal) -> Self {
        Self {
            stream,
            killed: Box::pin(kill.fired()),
            dead: false,
        }
    }

    /// `Err` once killed; polling registers the waker, so an idle connection learns it too.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
        }
        if self.dead {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the server was killed",
            ))
        } else {
            Ok(())
        }
    }
}

impl Connected for Killable {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Killable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Binds a listener on 127.0.0.1 with an OS-chosen port, as tests and the local stack want.
pub(crate) async fn bind_loopback() -> io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await
}

/// A lazily connecting plaintext channel to the server at `addr`.
pub(crate) fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| unreachable!("an http URL of a socket address is a valid URI"))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// A server running on a task of the current runtime; dropping the handle asks it to stop.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    kill: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    /// Spawns `run(listener, shutdown)` for an already bound `listener`.
    pub(crate) fn spawn<F, Fut>(listener: TcpListener, run: F) -> Result<Self, ServerError>
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>, KillSignal) -> Fut,
        Fut: Future<Output = Result<(), ServerError>> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel();
        let (kill, killed) = watch::channel(false);
        let task = tokio::spawn(run(listener, stop, KillSignal(Some(killed))));
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            kill,
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients connect to, e.g. `http://127.0.0.1:50051`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A lazily connecting channel to the server.
    pub fn channel(&self) -> Channel {
        channel(self.addr)
    }

    /// Stops the server and waits until it has drained (at most [`DRAIN_TIMEOUT`]).
    ///
    /// # Errors
    /// The server failed while running, or its task panicked.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// Kills the server as a crash would: every open connection is cut at once (clients see a
    /// reset, no final status), the port stops accepting, and the server's state is dropped.
    ///
    /// # Errors
    /// The server failed while running, or its task panicked.
    pub async fn kill(self) -> Result<(), ServerError> {
        let _ = self.kill.send(true);
        self.shutdown().await
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // The task stops by itself once told to; nothing waits for it here.
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Resolves on ctrl-c or (on Unix) SIGTERM: the shutdown signal of the binaries.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
