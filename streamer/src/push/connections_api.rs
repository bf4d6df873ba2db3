//! The client of API Gateway's `@connections` API: `PostToConnection` and `DeleteConnection`
//! through `aws-sdk-apigatewaymanagement`, their failures sorted into [`PostError`]'s classes,
//! and retries of the transient ones with full-jitter backoff.
//!
//! The SDK's own retries are turned off: [`ConnectionsApi::post`] is exactly one HTTP request
//! (so a caller that fans out to many connections decides how patient to be), and
//! [`ConnectionsApi::post_with_retry`] retries with the workspace's [`RetryPolicy`].

use std::time::Duration;

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, SdkError};
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;
use session_core::component::Component;
use session_core::resilience::{Classify, ErrorClass, RetryPolicy, retry};
use tracing::{debug, instrument, warn};

use crate::metrics;

/// The largest WebSocket frame API Gateway takes from a client (32 KiB); a larger one closes
/// the connection with 1009. Posted messages are not bound by it: API Gateway splits them.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// The largest message API Gateway carries either way (128 KiB): a larger post is refused with
/// 413 ([`PostError::TooLarge`]), a larger message from a client closes its connection (1009).
/// Callers size their batches under it.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// How long establishing a connection to the endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take in all. API Gateway answers a post once the frame is queued, and
/// a delete at once; the bound keeps a stuck endpoint from holding a caller.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed `@connections` call, in the classes the caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// 410 (`GoneException`): the connection is closed; the caller deletes its record.
    #[error("the connection is gone")]
    Gone,
    /// 429 (`LimitExceededException`): too many calls, or the connection's outgoing buffer is
    /// full. Transient.
    #[error("the @connections API throttled the call")]
    Throttled,
    /// 413 (`PayloadTooLargeException`): over [`MAX_MESSAGE_BYTES`], a bug of the caller.
    #[error("the message is over API Gateway's limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    /// 403 (`ForbiddenException`): the call is not allowed (credentials, the
    /// `execute-api:ManageConnections` permission, or a wrong endpoint).
    #[error("the @connections API refused the call (403)")]
    Forbidden,
    /// 5xx, a timeout, or no connection to the endpoint. Transient.
    #[error("the @connections API is unavailable: {0}")]
    Unavailable(String),
    /// Anything else (an unexpected status, a request that could not be built).
    #[error("the @connections call failed: {0}")]
    Other(String),
}

impl PostError {
    /// The `outcome` label of `streamer_ws_posts_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::Throttled => "throttled",
            Self::TooLarge => "too_large",
            Self::Forbidden => "forbidden",
            Self::Unavailable(_) => "unavailable",
            Self::Other(_) => "other",
        }
    }

    fn from_post(err: &SdkError<PostToConnectionError, HttpResponse>) -> Self {
        if let SdkError::ServiceError(service) = err {
            match service.err() {
                PostToConnectionError::GoneException(_) => return Self::Gone,
                PostToConnectionError::LimitExceededException(_) => return Self::Throttled,
                PostToConnectionError::PayloadTooLargeException(_) => return Self::TooLarge,
                PostToConnectionError::ForbiddenException(_) => return Self::Forbidden,
                _ => {}
            }
        }
        Self::untyped(err)
    }

    fn from_delete(err: &SdkError<DeleteConnectionError, HttpResponse>) -> Self {
        if let SdkError::ServiceError(service) = err {
            match service.err() {
                DeleteConnectionError::GoneException(_) => return Self::Gone,
                DeleteConnectionError::LimitExceededException(_) => return Self::Throttled,
                DeleteConnectionError::ForbiddenException(_) => return Self::Forbidden,
                _ => {}
            }
        }
        Self::untyped(err)
    }

    /// Errors the SDK has no type for: by the HTTP status when there was an answer, as
    /// unavailable when there was none.
    fn untyped<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + 'static,
    {
        let detail = DisplayErrorContext(err).to_string();
        match err {
            SdkError::ServiceError(service) => {
                Self::from_status(service.raw().status().as_u16(), detail)
            }
            // An answer that could not be read (cut short, say): transient unless its status
            // says otherwise.
            SdkError::ResponseError(response) => match response.raw().status().as_u16() {
                status @ 400..=499 => Self::from_status(status, detail),
                _ => Self::Unavailable(detail),
            },
            // A request the connector could not send as built (a bad endpoint URL): permanent.
            SdkError::DispatchFailure(failure) if failure.is_user() => Self::Other(detail),
            // No answer in time, or no connection (refused, reset): transient.
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Self::Unavailable(detail),
            _ => Self::Other(detail),
        }
    }

    fn from_status(status: u16, detail: String) -> Self {
        match status {
            410 => Self::Gone,
            429 => Self::Throttled,
            413 => Self::TooLarge,
            403 => Self::Forbidden,
            500..=599 => Self::Unavailable(detail),
            _ => Self::Other(detail),
        }
    }
}

impl Classify for PostError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Throttled | Self::Unavailable(_) => ErrorClass::Transient,
            Self::Gone | Self::TooLarge | Self::Forbidden | Self::Other(_) => ErrorClass::Permanent,
        }
    }
}

/// The `@connections` API of one WebSocket API stage.
#[derive(Debug, Clone)]
pub struct ConnectionsApi {
    client: Client,
}

impl ConnectionsApi {
    /// A client of `endpoint` (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`)
    /// with the default credential chain and region of the environment.
    pub async fn from_env(endpoint: &str) -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::with_config(
            aws_sdk_apigatewaymanagement::config::Builder::from(&shared),
            endpoint,
        )
    }

    /// A client of the local WebSocket emulator at `endpoint` (its `connections_url`, e.g.
    /// `http://127.0.0.1:8081/local`): dummy credentials (requests must be signed, the
    /// signature is not checked) and region `local`.
    pub fn local(endpoint: &str) -> Self {
        let builder = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("local"))
            .credentials_provider(Credentials::new("local", "local", None, None, "local"));
        Self::with_config(builder, endpoint)
    }

    fn with_config(builder: aws_sdk_apigatewaymanagement::config::Builder, endpoint: &str) -> Self {
        let config = builder
            // Only the streamer posts to connections.
            .app_name(Component::Streamer.app_name())
            .endpoint_url(endpoint)
            // One request per call: retries are ours (`post_with_retry`), not the SDK's too.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }

    /// Sends `data` to the connection as one message (a text frame if it is UTF-8), with one
    /// request.
    ///
    /// # Errors
    ///
    /// [`PostError::Gone`] once the connection is closed; the other classes as documented.
    #[instrument(level = "debug", skip(self, data), fields(bytes = data.len()))]
    pub async fn post(&self, connection_id: &str, data: Bytes) -> Result<(), PostError> {
        let started = std::time::Instant::now();
        // The connection's push span goes on with the post (`traceparent`), when tracing is on.
        let traceparent = session_core::telemetry::traceparent(&tracing::Span::current());
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::from_maybe_shared(data))
            .customize()
            .mutate_request(move |request| {
                if let Some(traceparent) = &traceparent {
                    request
                        .headers_mut()
                        .insert("traceparent", traceparent.clone());
                }
            })
            .send()
            .await;
        let result = sent.map(drop).map_err(|e| PostError::from_post(&e));
        match &result {
            Ok(()) => metrics::ws_post("ok", started.elapsed()),
            Err(e) => {
                metrics::ws_post(e.outcome(), started.elapsed());
                match e {
                    PostError::TooLarge | PostError::Forbidden | PostError::Other(_) => {
                        warn!(error = %e, "post to connection failed");
                    }
                    _ => debug!(error = %e, "post to connection failed"),
                }
            }
        }
        result
    }

    /// [`post`](Self::post), retrying throttling and unavailability as `policy` allows; a
    /// gone connection, a message too large and a refusal are returned at once.
    ///
    /// # Errors
    ///
    /// The first permanent error, or the last transient one once `policy` is spent.
    pub async fn post_with_retry(
        &self,
        connection_id: &str,
        data: Bytes,
        policy: RetryPolicy,
    ) -> Result<(), PostError> {
        retry(policy, || self.post(connection_id, data.clone())).await
    }

    /// Closes the connection (drain, slow consumers); one that is already gone is `Ok`.
    ///
    /// # Errors
    ///
    /// Any class but [`PostError::Gone`].
    #[instrument(level = "debug", skip(self))]
    pub async fn delete(&self, connection_id: &str) -> Result<(), PostError> {
        let deleted = self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await;
        match deleted.map_err(|e| PostError::from_delete(&e)) {
            Ok(_) | Err(PostError::Gone) => Ok(()),
            Err(e) => {
                warn!(error = %e, "delete connection failed");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_without_a_typed_error_map_to_their_classes() {
        let of = |status| PostError::from_status(status, format!("status {status}"));

        assert!(matches!(of(410), PostError::Gone));
        assert!(matches!(of(429), PostError::Throttled));
        assert!(matches!(of(413), PostError::TooLarge));
        assert!(matches!(of(403), PostError::Forbidden));
        assert!(matches!(of(500), PostError::Unavailable(_)));
        assert!(matches!(of(503), PostError::Unavailable(_)));
        assert!(matches!(of(504), PostError::Unavailable(_)));
        assert!(matches!(of(400), PostError::Other(_)));
        assert!(matches!(of(404), PostError::Other(_)));
    }

    #[test]
    fn only_throttling_and_unavailability_are_transient() {
        let transient = [
            PostError::Throttled,
            PostError::Unavailable("503".to_owned()),
        ];
        let permanent = [
            PostError::Gone,
            PostError::TooLarge,
            PostError::Forbidden,
            PostError::Other("400".to_owned()),
        ];

        assert!(transient.iter().all(Classify::is_transient));
        assert!(!permanent.iter().any(Classify::is_transient));
    }

    #[test]
    fn the_limits_are_api_gateways() {
        assert_eq!(MAX_FRAME_BYTES, 32_768);
        assert_eq!(MAX_MESSAGE_BYTES, 131_072);
    }
}
