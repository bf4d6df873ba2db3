//! [`TokenValidator`] over the auth service's gRPC API, with a deadline per attempt, jittered
//! retries of transient failures within a total budget, a circuit breaker and a cache of
//! positive answers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_proto::auth::v1::auth_service_client::AuthServiceClient;
use session_proto::auth::v1::validate_token_response::Result as Verdict;
use session_proto::auth::v1::{RejectionReason, ValidateTokenRequest};

use super::{AuthError, Principal, TokenCache, TokenValidator};
use crate::backend::channel;
use crate::clock::Clock;
use crate::domain::{Timestamp, UserId};
use crate::resilience::{BreakerState, CircuitBreaker, Classify, ErrorClass, RetryPolicy, retry};

/// The longest one validation may take, retries included. The authorizer Lambdas time out
/// after 5 s (`infra/template.yaml`); with the default 2 s deadline this leaves room for two
/// whole attempts and a cut-short third, and a second for the rest of the invocation, so a
/// slow auth service ends in a clean "unavailable", never in a timed-out function.
const VALIDATION_BUDGET: Duration = Duration::from_secs(4);

/// Asks the auth service, remembering valid tokens for a while.
#[derive(Debug, Clone)]
pub struct GrpcTokenValidator {
    client: AuthServiceClient<channel::TracedChannel>,
    audience: String,
    cache: Arc<TokenCache>,
    retry: RetryPolicy,
    /// Bounds the attempts and the waits between them together.
    budget: Duration,
    breaker: Arc<CircuitBreaker>,
    clock: Arc<dyn Clock>,
}

/// One attempt's failure and whether another attempt may pass: a gRPC status classed as every
/// backend call's ([`channel::status_class`]); a verdict on the token is final.
#[derive(Debug)]
struct Failure {
    error: AuthError,
    class: ErrorClass,
}

impl Failure {
    fn permanent(error: AuthError) -> Self {
        Self {
            error,
            class: ErrorClass::Permanent,
        }
    }
}

impl Classify for Failure {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

impl GrpcTokenValidator {
    /// The validator of `settings` (`backends.auth_url`, `auth.token_audience`), over TLS as
    /// `backends.tls` says, retrying as `backends` says within [`VALIDATION_BUDGET`]. Connects
    /// lazily: building it does no I/O, so a Lambda's cold start does not wait for the auth
    /// service.
    ///
    /// # Errors
    /// The URL is not a valid endpoint URL, or the TLS material does not parse.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Self, tonic::transport::Error> {
        let backends = &settings.backends;
        let timeout = backends.deadline_ms;
        let channel = channel::endpoint(&backends.auth_url, &backends.tls)?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(Self::over(channel, settings))
    }

    /// The validator of `settings` balanced over the auth replicas `servers` lists
    /// ([`crate::backend::balanced_channel`]): a replica that leaves the healthy list gets no
    /// more calls. Must be called on a Tokio runtime.
    pub fn balanced(settings: &crate::config::Settings, servers: &crate::discovery::Watch) -> Self {
        Self::over(
            crate::backend::balanced_channel(servers, settings),
            settings,
        )
    }

    /// The validator of `settings` over `channel`.
    fn over(channel: tonic::transport::Channel, settings: &crate::config::Settings) -> Self {
        let backends = &settings.backends;
        Self {
            client: AuthServiceClient::new(channel::traced(channel)),
            audience: settings.auth.token_audience.clone(),
            cache: Arc::new(TokenCache::new(
                settings.auth.token_cache_entries,
                Duration::from_secs(60),
            )),
            retry: backends.retry_policy(),
            budget: VALIDATION_BUDGET,
            breaker: Arc::new(backends.breaker()),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }

    /// The state of the breaker in front of the auth service, for health checks.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Asks with retries, each attempt behind the breaker, all within the budget.
    async fn ask_patiently(&self, token: &str) -> Result<Principal, AuthError> {
        let attempts = retry(self.retry, || async {
            match self.breaker.call(self.ask(token)).await {
                Ok(principal) => Ok(principal),
                Err(Ok(failure)) => Err(failure),
                // Not worth retrying within one call: the cool-down is longer than any caller
                // waits.
                Err(Err(open)) => Err(Failure::permanent(AuthError::Unavailable(open.to_string()))),
            }
        });
        match tokio::time::timeout(self.budget, attempts).await {
            Ok(answer) => answer.map_err(|failure| failure.error),
            Err(_) => Err(AuthError::Unavailable(format!(
                "no answer within {:?}, retries included",
                self.budget
            ))),
        }
    }

    /// One attempt.
    async fn ask(&self, token: &str) -> Result<Principal, Failure> {
        let request = ValidateTokenRequest {
            token: token.to_owned(),
            audience: self.audience.clone(),
        };
        let response = self
            .client
            .clone()
            .validate_token(request)
            .await
            .map_err(|status| Failure {
                error: AuthError::Unavailable(format!(
                    "{:?}: {}",
                    status.code(),
                    channel::status_text(&status)
                )),
                class: channel::status_class(status.code()),
            })?
            .into_inner();
        match response.result {
            Some(Verdict::Valid(valid)) => Ok(Principal {
                user: UserId::parse("sub", &valid.subject).map_err(|_| {
                    Failure::permanent(AuthError::Rejected {
                        reason: "invalid_subject",
                    })
                })?,
                scopes: valid.scopes,
                expires_at: Timestamp::from_unix_millis(
                    valid.expires_at_unix_seconds.saturating_mul(1000),
                ),
                token_id: valid.token_id,
            }),
            Some(Verdict::Rejected(rejection)) => Err(Failure::permanent(AuthError::Rejected {
                reason: reason_code(rejection.reason()),
            })),
            None => Err(Failure {
                error: AuthError::Unavailable(
                    "the auth service answered with neither a verdict nor an error".to_owned(),
                ),
                class: ErrorClass::Transient,
            }),
        }
    }
}

/// The stable code of a rejection reason, safe to show clients.
pub(super) fn reason_code(reason: RejectionReason) -> &'static str {
    match reason {
        RejectionReason::Malformed => "malformed",
        RejectionReason::BadSignature => "bad_signature",
        RejectionReason::AlgorithmNotAllowed => "algorithm_not_allowed",
        RejectionReason::UnknownKey => "unknown_key",
        RejectionReason::WrongIssuer => "wrong_issuer",
        RejectionReason::WrongAudience => "wrong_audience",
        RejectionReason::Expired => "expired",
        RejectionReason::NotYetValid => "not_yet_valid",
        RejectionReason::Unspecified => "rejected",
    }
}

#[async_trait]
impl TokenValidator for GrpcTokenValidator {
    async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        let now = self.clock.now();
        if let Some(principal) = self.cache.get(token, now) {
            return Ok(principal);
        }
        let principal = self.ask_patiently(token).await?;
        if principal.expires_at <= now {
            return Err(AuthError::Rejected { reason: "expired" });
        }
        self.cache.insert(token, principal.clone(), now);
        Ok(principal)
    }
}
