//! The service's token validator (`session_core::auth::GrpcTokenValidator`) against the
//! reference auth service over gRPC: transient failures of the auth service are retried with the
//! backends' policy within a total budget; a verdict on the token, and a refusal of the caller,
//! are not.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use figment::Figment;
use session_core::auth::{AuthError, GrpcTokenValidator, TokenValidator as _};
use session_core::config::Settings;
use session_local::auth::AuthHandle;
use session_proto::auth::v1::auth_service_client::AuthServiceClient;
use session_proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use session_proto::auth::v1::{ValidateTokenRequest, ValidateTokenResponse};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::helpers::{WAIT_TIMEOUT, spawn_auth, within};

/// A gRPC stand-in in front of the reference auth service: fails the first calls with the
/// given codes, forwards the rest, and counts every call.
struct Flaky {
    upstream: AuthServiceClient<Channel>,
    failures: Mutex<VecDeque<Code>>,
    calls: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl AuthService for Flaky {
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failure = self.failures.lock().expect("not poisoned").pop_front();
        if let Some(code) = failure {
            return Err(Status::new(code, "the stand-in fails this call"));
        }
        self.upstream
            .clone()
            .validate_token(request.into_inner())
            .await
    }
}

/// A running stand-in: its URL and call count; dropping it stops it.
struct Proxy {
    url: String,
    calls: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Proxy {
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on a free loopback port, and the URL of a plaintext gRPC server on it.
async fn loopback() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    (listener, url)
}

/// A gRPC stand-in before `auth` that fails its first calls with `failures`.
async fn flaky(auth: &AuthHandle, failures: &[Code]) -> Proxy {
    let (listener, url) = loopback().await;
    let calls = Arc::new(AtomicU32::new(0));
    let service = Flaky {
        upstream: auth.client(),
        failures: Mutex::new(failures.iter().copied().collect()),
        calls: Arc::clone(&calls),
    };
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AuthServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("the stand-in serves");
    });
    Proxy { url, calls, task }
}

/// A TCP relay before `auth` that closes its first `refused` connections at once (an auth
/// service that is not up yet) and relays the rest; counts connections.
async fn refusing_first(auth: &AuthHandle, refused: u32) -> Proxy {
    let (listener, url) = loopback().await;
    let upstream = auth.addr();
    let calls = Arc::new(AtomicU32::new(0));
    let accepted = Arc::clone(&calls);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if accepted.fetch_add(1, Ordering::SeqCst) < refused {
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Proxy { url, calls, task }
}

/// A listener that accepts connections and never answers: a hung auth service. (The client
/// waits on its one connection, so the count says nothing about attempts.)
async fn hung() -> Proxy {
    let (listener, url) = loopback().await;
    let calls = Arc::new(AtomicU32::new(0));
    let accepted = Arc::clone(&calls);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    Proxy { url, calls, task }
}

/// The validator of the service's settings for the auth service at `url`: the default policy
/// (3 retries) with short backoff, and a per-attempt deadline of `deadline_ms`.
fn validator(url: &str, deadline_ms: u64) -> GrpcTokenValidator {
    let figment = Figment::new()
        .merge(("backends.auth_url", url))
        .merge(("backends.max_retries", 3))
        .merge(("backends.retry_base_ms", 5))
        .merge(("backends.deadline_ms", deadline_ms));
    let settings = Settings::from_figment(&figment).expect("valid settings");
    GrpcTokenValidator::from_settings(&settings).expect("a valid endpoint")
}

fn token(auth: &AuthHandle) -> String {
    auth.auth()
        .issue("alice", &["sessions:read"], Duration::from_secs(3600))
        .expect("a token")
}

#[tokio::test]
async fn the_token_validator_retries_an_auth_service_answering_unavailable_then_deadline_exceeded()
{
    // Arrange
    let auth = spawn_auth().await;
    let proxy = flaky(&auth, &[Code::Unavailable, Code::DeadlineExceeded]).await;
    let validator = validator(&proxy.url, 2_000);

    // Act
    let principal = within(
        WAIT_TIMEOUT,
        "a validation",
        validator.validate(&token(&auth)),
    )
    .await;

    // Assert
    assert_eq!(
        principal.expect("valid after two retries").user.as_str(),
        "alice"
    );
    assert_eq!(proxy.calls(), 3);
}

#[tokio::test]
async fn the_token_validator_retries_an_auth_service_that_refuses_its_first_connection() {
    // Arrange
    let auth = spawn_auth().await;
    let proxy = refusing_first(&auth, 1).await;
    let validator = validator(&proxy.url, 2_000);

    // Act
    let principal = within(
        WAIT_TIMEOUT,
        "a validation",
        validator.validate(&token(&auth)),
    )
    .await;

    // Assert
    assert_eq!(
        principal
            .expect("valid on the second connection")
            .user
            .as_str(),
        "alice"
    );
    assert_eq!(proxy.calls(), 2, "connections");
}

#[tokio::test]
async fn an_invalid_token_is_asked_about_once() {
    // Arrange
    let auth = spawn_auth().await;
    let proxy = flaky(&auth, &[]).await;
    let validator = validator(&proxy.url, 2_000);

    // Act
    let result = within(
        WAIT_TIMEOUT,
        "a validation",
        validator.validate("not.a.token"),
    )
    .await;

    // Assert
    assert!(
        matches!(result, Err(AuthError::Rejected { .. })),
        "{result:?}"
    );
    assert_eq!(proxy.calls(), 1);
}

#[tokio::test]
async fn an_auth_service_refusing_the_caller_is_unavailable_and_asked_once() {
    for code in [Code::Unauthenticated, Code::PermissionDenied] {
        // Arrange
        let auth = spawn_auth().await;
        let proxy = flaky(&auth, &[code]).await;
        let validator = validator(&proxy.url, 2_000);

        // Act
        let result = within(
            WAIT_TIMEOUT,
            "a validation",
            validator.validate(&token(&auth)),
        )
        .await;

        // Assert: the service failed (not the token), and asking again would not help.
        match result {
            Err(AuthError::Unavailable(message)) => {
                assert!(message.contains(&format!("{code:?}")), "{message}");
            }
            other => panic!("{code:?}: {other:?}"),
        }
        assert_eq!(proxy.calls(), 1, "{code:?}");
    }
}

#[tokio::test]
async fn a_hung_auth_service_is_given_up_on_within_the_authorizers_timeout() {
    // Arrange: four attempts of 1.5 s each would take 6 s; the authorizer has 5 s.
    let auth = spawn_auth().await;
    let proxy = hung().await;
    let validator = validator(&proxy.url, 1_500);
    let started = Instant::now();

    // Act
    let result = within(
        WAIT_TIMEOUT,
        "a validation",
        validator.validate(&token(&auth)),
    )
    .await;

    // Assert: given up on within the 4 s budget.
    let took = started.elapsed();
    assert!(
        matches!(result, Err(AuthError::Unavailable(_))),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(4_500), "took {took:?}");
    drop(proxy);
}
