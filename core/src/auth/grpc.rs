//! [`TokenValidator`] over the auth service's gRPC API, with a deadline, a circuit breaker and
//! a cache of positive answers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_proto::auth::v1::auth_service_client::AuthServiceClient;
use session_proto::auth::v1::validate_token_response::Result as Verdict;
use session_proto::auth::v1::{RejectionReason, ValidateTokenRequest};
use tonic::transport::Channel;

use super::{AuthError, Principal, TokenCache, TokenValidator};
use crate::backend::channel;
use crate::clock::Clock;
use crate::domain::{Timestamp, UserId};
use crate::resilience::{BreakerState, CircuitBreaker};

/// Asks the auth service, remembering valid tokens for a while.
#[derive(Debug, Clone)]
pub struct GrpcTokenValidator {
    client: AuthServiceClient<Channel>,
    audience: String,
    cache: Arc<TokenCache>,
    breaker: Arc<CircuitBreaker>,
    clock: Arc<dyn Clock>,
}

impl GrpcTokenValidator {
    /// The validator of `settings` (`backends.auth_url`, `auth.token_audience`), over TLS as
    /// `backends.tls` says. Connects lazily: building it does no I/O, so a Lambda's cold start
    /// does not wait for the auth service.
    ///
    /// # Errors
    /// The URL is not a valid endpoint URL, or the TLS material does not parse.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Self, tonic::transport::Error> {
        let backends = &settings.backends;
        let timeout = backends.deadline();
        let channel = channel::endpoint(&backends.auth_url, &backends.tls)?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            client: AuthServiceClient::new(channel),
            audience: settings.auth.token_audience.clone(),
            cache: Arc::new(TokenCache::new(10_000, Duration::from_secs(60))),
            breaker: Arc::new(CircuitBreaker::new(5, Duration::from_secs(10))),
            clock: Arc::new(crate::clock::SystemClock),
        })
    }

    /// The state of the breaker in front of the auth service, for health checks.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    async fn ask(&self, token: &str) -> Result<Principal, AuthError> {
        let request = ValidateTokenRequest {
            token: token.to_owned(),
            audience: self.audience.clone(),
        };
        let response = self
            .client
            .clone()
            .validate_token(request)
            .await
            .map_err(|status| AuthError::Unavailable(channel::status_text(&status)))?
            .into_inner();
        match response.result {
            Some(Verdict::Valid(valid)) => Ok(Principal {
                user: UserId::parse("sub", &valid.subject).map_err(|_| AuthError::Rejected {
                    reason: "invalid_subject",
                })?,
                scopes: valid.scopes,
                expires_at: Timestamp::from_unix_millis(
                    valid.expires_at_unix_seconds.saturating_mul(1000),
                ),
                token_id: valid.token_id,
            }),
            Some(Verdict::Rejected(rejection)) => Err(AuthError::Rejected {
                reason: reason_code(rejection.reason()),
            }),
            None => Err(AuthError::Unavailable(
                "the auth service answered with neither a verdict nor an error".to_owned(),
            )),
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
        let principal = self
            .breaker
            .call(self.ask(token))
            .await
            .map_err(|e| match e {
                Ok(e) => e,
                Err(open) => AuthError::Unavailable(open.to_string()),
            })?;
        if principal.expires_at <= now {
            return Err(AuthError::Rejected { reason: "expired" });
        }
        self.cache.insert(token, principal.clone(), now);
        Ok(principal)
    }
}
