//! `Idempotency-Key` on POST requests: the first request with a key does the work and its
//! response is kept for 24 hours; a retry with the same key and body gets that response again;
//! the same key with another body is refused (409 `idempotency-key-reused`); a retry while the
//! first is still running is told so (409 `idempotency-in-progress`). A request that fails gives its key back, so a retry can succeed.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use session_core::auth::Principal;
use session_core::domain::{IdempotencyClaim, IdempotencyKey, RequestFingerprint, StoredResponse};

use super::problem::ApiError;
use super::{App, input};

/// The header clients send.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response replayed for a retry.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// In a multi-region deployment, on the answer to a request with a key: the region that
/// answered, which holds the key's claim. A retry sent elsewhere within the replication lag is
/// a new request (`docs/multi-region.md`, "Idempotency across regions").
pub const IDEMPOTENCY_REGION: HeaderName = HeaderName::from_static("idempotency-region");

/// How long a completed request's response is kept for its retries.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// A POST as idempotency sees it: what identifies the request (method, path, body) and the
/// headers that carry the key and the content type. The body is read within the API's limit.
#[derive(Debug)]
pub(super) struct Post {
    method: Method,
    path: String,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The request's body.
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Post {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let headers = request.headers().clone();
        let body = input::body_bytes(Bytes::from_request(request, state).await)?;
        Ok(Self {
            method,
            path,
            headers,
            body,
        })
    }
}

/// A successful answer, in a form that can be stored and replayed byte for byte.
#[derive(Debug)]
pub(super) struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// `Location`, for creations.
    pub location: Option<String>,
    /// JSON body.
    pub body: String,
}

impl Reply {
    /// A JSON reply.
    pub(super) fn json<T: serde::Serialize>(
        status: StatusCode,
        body: &T,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            status,
            location: None,
            body: serde_json::to_string(body).map_err(|e| {
                ApiError::Service(session_core::service::ServiceError::internal(
                    "serialising a reply",
                    e,
                ))
            })?,
        })
    }

    /// The same reply with a `Location` header.
    pub(super) fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    fn stored(&self) -> StoredResponse {
        let mut headers = vec![(
            header::CONTENT_TYPE.as_str().to_owned(),
            "application/json".to_owned(),
        )];
        if let Some(location) = &self.location {
            headers.push((header::LOCATION.as_str().to_owned(), location.clone()));
        }
        StoredResponse {
            status: self.status.as_u16(),
            headers,
            body: self.body.clone(),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        to_response(&self.stored(), false)
    }
}

fn to_response(stored: &StoredResponse, replayed: bool) -> Response {
    let mut response = Response::new(Body::from(stored.body.clone()));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Runs `work` at most once per idempotency key of `caller` (when `post` has one).
pub(super) async fn once<F>(
    app: &App,
    caller: &Principal,
    post: &Post,
    work: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<Reply, ApiError>>,
{
    let Some(key) = post.headers.get(IDEMPOTENCY_KEY) else {
        return work.await.map(IntoResponse::into_response);
    };
    let key = key.to_str().map_err(|_| {
        ApiError::from(session_core::domain::ValidationError::new(
            "Idempotency-Key",
            "must be printable ASCII",
        ))
    })?;
    let key = IdempotencyKey::parse("Idempotency-Key", key)?;
    let fingerprint = RequestFingerprint::of(&[
        post.method.as_str().as_bytes(),
        post.path.as_bytes(),
        &post.body,
    ]);
    let store = &app.store;
    match store
        .claim_idempotency(&caller.user, &key, &fingerprint, KEEP_FOR)
        .await
        .map_err(session_core::service::ServiceError::from)?
    {
        IdempotencyClaim::Completed(stored) => {
            return Ok(answered_here(app, to_response(&stored, true)));
        }
        IdempotencyClaim::InProgress => return Err(ApiError::IdempotencyInProgress),
        IdempotencyClaim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
        IdempotencyClaim::Claimed => {}
    }
    match work.await {
        Ok(reply) => {
            let stored = reply.stored();
            // The work is done: a failure to record it must not turn success into an error.
            if let Err(e) = store
                .complete_idempotency(&caller.user, &key, &fingerprint, &stored)
                .await
            {
                tracing::warn!(error = %e, "could not record an idempotent response");
            }
            Ok(answered_here(app, to_response(&stored, false)))
        }
        Err(e) => {
            if let Err(abandon) = store
                .abandon_idempotency(&caller.user, &key, &fingerprint)
                .await
            {
                tracing::warn!(error = %abandon, "could not release an idempotency key");
            }
            Err(e)
        }
    }
}

/// `response` naming this region in [`IDEMPOTENCY_REGION`], in a multi-region deployment.
fn answered_here(app: &App, mut response: Response) -> Response {
    let region = app.service.answering_region();
    if let Some(value) = region.and_then(|r| HeaderValue::from_str(r.as_str()).ok()) {
        response.headers_mut().insert(IDEMPOTENCY_REGION, value);
    }
    response
}
