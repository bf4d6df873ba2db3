//! The gRPC edge of the auth service (`auth.v1.AuthService` and health) and its server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use session_proto::auth::v1 as pb;
use session_proto::auth::v1::auth_service_client::AuthServiceClient;
use session_proto::auth::v1::auth_service_server::{self, AuthServiceServer};
use session_proto::auth::v1::validate_token_response::Result as Verdict;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{debug, instrument};

use super::{AuthError, AuthService, AuthSettings};
use crate::server::{self, KillSignal, ServerError, ServerHandle, ServerTls};

/// `auth.v1.AuthService` over an [`AuthService`].
#[derive(Debug, Clone)]
pub struct AuthGrpcService {
    auth: Arc<AuthService>,
}

impl AuthGrpcService {
    /// The gRPC service over `auth`.
    pub fn new(auth: Arc<AuthService>) -> Self {
        Self { auth }
    }
}

#[tonic::async_trait]
impl auth_service_server::AuthService for AuthGrpcService {
    #[instrument(skip_all)]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let request = request.get_ref();
        let result = match self
            .auth
            .validate(&request.token, Some(request.audience.as_str()))
        {
            Ok(valid) => {
                debug!(subject = %valid.subject, token_id = %valid.token_id, "token valid");
                Verdict::Valid(valid)
            }
            Err(rejection) => {
                debug!(reason = ?rejection.reason, detail = %rejection.detail, "token rejected");
                Verdict::Rejected(pb::Rejection {
                    reason: rejection.reason.into(),
                    detail: rejection.detail,
                })
            }
        };
        Ok(Response::new(pb::ValidateTokenResponse {
            result: Some(result),
        }))
    }
}

/// An auth server: the service's keys and the gRPC services over them.
#[derive(Debug, Clone)]
pub struct AuthServer {
    auth: Arc<AuthService>,
    tls: Option<ServerTls>,
}

impl AuthServer {
    /// A server with a freshly generated signing key.
    ///
    /// # Errors
    /// The key cannot be generated.
    pub fn new(settings: AuthSettings) -> Result<Self, AuthError> {
        Ok(Self::from_service(Arc::new(AuthService::new(settings)?)))
    }

    /// A server over an existing service (to share its keys).
    pub fn from_service(auth: Arc<AuthService>) -> Self {
        Self { auth, tls: None }
    }

    /// Serves over TLS (mutual when `tls` names a client CA) instead of plaintext.
    #[must_use]
    pub fn with_tls(self, tls: ServerTls) -> Self {
        Self {
            tls: Some(tls),
            ..self
        }
    }

    /// The service, to issue tokens and read the JWKS.
    pub fn auth(&self) -> &Arc<AuthService> {
        &self.auth
    }

    /// Serves `auth.v1.AuthService` and health on `listener` until `shutdown` resolves.
    ///
    /// # Errors
    /// The TLS material does not parse, or the gRPC server failed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.run_until(listener, shutdown, KillSignal::never())
            .await
    }

    /// [`AuthServer::run`], cut short by `kill`.
    async fn run_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        kill: KillSignal,
    ) -> Result<(), ServerError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<AuthServiceServer<AuthGrpcService>>()
            .await;
        let router = server::builder(self.tls.as_ref())?
            .trace_fn(|request| session_core::telemetry::server_span("auth-service", request))
            .add_service(health)
            .add_service(AuthServiceServer::new(AuthGrpcService::new(self.auth)));
        server::serve(router, listener, shutdown, kill).await
    }

    /// Binds 127.0.0.1 on a free port and runs a server with `settings` on a task of the
    /// current runtime.
    ///
    /// # Errors
    /// The key cannot be generated or the port cannot be bound.
    pub async fn spawn(settings: AuthSettings) -> Result<AuthHandle, ServerError> {
        let server = Self::new(settings).map_err(|e| ServerError::Settings(e.to_string()))?;
        let listener = server::bind_loopback().await?;
        server.spawn_on(listener)
    }

    /// Runs this server on `listener` on a task of the current runtime.
    ///
    /// # Errors
    /// The listener's address cannot be read.
    pub fn spawn_on(self, listener: TcpListener) -> Result<AuthHandle, ServerError> {
        let auth = Arc::clone(&self.auth);
        let server = ServerHandle::spawn(listener, move |listener, stop, kill| {
            self.run_until(
                listener,
                async move {
                    let _ = stop.await;
                },
                kill,
            )
        })?;
        Ok(AuthHandle { server, auth })
    }
}

/// An auth server running in-process; dropping it stops the server.
#[derive(Debug)]
pub struct AuthHandle {
    server: ServerHandle,
    auth: Arc<AuthService>,
}

impl AuthHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The URL clients connect to, e.g. `http://127.0.0.1:50052`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// The service: [`AuthService::issue`] tokens, [`AuthService::jwks`], rotate keys.
    pub fn auth(&self) -> &Arc<AuthService> {
        &self.auth
    }

    /// A lazily connecting channel to the server.
    pub fn channel(&self) -> Channel {
        self.server.channel()
    }

    /// An `AuthService` client on a new connection.
    pub fn client(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel())
    }

    /// Stops the server and waits for it to drain.
    ///
    /// # Errors
    /// The server failed while running, or its task panicked.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.server.shutdown().await
    }

    /// Kills the server as a crash would: open calls are cut, the port refuses connections.
    ///
    /// # Errors
    /// The server failed while running, or its task panicked.
    pub async fn kill(self) -> Result<(), ServerError> {
        self.server.kill().await
    }
}
