//! The edge guard: with CloudFront and AWS WAF in front of the HTTP API, the API answers only
//! requests that came through them. CloudFront adds a secret header to every request it
//! forwards (`edge.origin_header`, the value from the secret `edge.origin_secret_arn`); a request
//! without it went to the `execute-api` endpoint directly, around the WAF, and is refused with
//! `403 edge-only`.
//!
//! The secret is JSON, `{"current": "...", "previous": "..."}`: CloudFront sends `current`, and
//! both are accepted, so a rotation (the new value becomes `current`, the old one `previous`,
//! then a stack update moves CloudFront to the new one) refuses nothing at any moment; a plain
//! string is one accepted value. It is read once at a cold start and again when a request brings
//! a value that does not match, at most once per refresh interval: warm instances pick a rotated
//! value up at their first mismatch, while a client probing with wrong values costs at most one
//! Secrets Manager call per interval per instance.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use tracing::{info, warn};

use session_core::component::Component;
use session_core::config::EdgeSettings;
use session_core::secrets::{Client, read_secret_string};

use super::problem::ApiError;

/// Reads the secret's current value.
pub type FetchSecret = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<SecretString, String>> + Send>> + Send + Sync,
>;

/// How often a mismatching request may make the guard read the secret again.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Checks the edge's origin header on every request.
pub struct EdgeGuard {
    header: HeaderName,
    fetch: FetchSecret,
    refresh_every: Duration,
    /// The digests of the accepted values, and when they were read. Digests, not values:
    /// comparing digests with `==` leaks nothing useful through timing (a prefix of a SHA-256
    /// digest says nothing about the value), where comparing values would.
    current: Mutex<(Vec<[u8; 32]>, Instant)>,
}

impl std::fmt::Debug for EdgeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeGuard")
            .field("header", &self.header)
            .field("refresh_every", &self.refresh_every)
            .finish_non_exhaustive()
    }
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

/// The digests of the values a secret accepts: `current` and `previous` of a JSON object, or
/// the whole string.
fn accepted(secret: &SecretString) -> Vec<[u8; 32]> {
    #[derive(serde::Deserialize)]
    struct Rotating {
        current: String,
        #[serde(default)]
        previous: String,
    }
    match serde_json::from_str::<Rotating>(secret.expose_secret()) {
        Ok(Rotating { current, previous }) => [current, previous]
            .iter()
            .filter(|v| !v.is_empty())
            .map(|v| digest(v.as_bytes()))
            .collect(),
        Err(_) => vec![digest(secret.expose_secret().as_bytes())],
    }
}

impl EdgeGuard {
    /// A guard of `header`, whose expected value `fetch` reads now and on later mismatches, at
    /// most once per `refresh_every`.
    ///
    /// # Errors
    /// The first read failed (the error says why).
    pub async fn new(
        header: &str,
        fetch: FetchSecret,
        refresh_every: Duration,
    ) -> Result<Self, String> {
        let header = HeaderName::try_from(header).map_err(|e| format!("{header}: {e}"))?;
        let value = fetch().await?;
        Ok(Self {
            header,
            fetch,
            refresh_every,
            current: Mutex::new((accepted(&value), Instant::now())),
        })
    }

    /// Whether `presented` is the edge's value, reading the secret again on a mismatch if the
    /// last read is older than the refresh interval.
    async fn admits(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        {
            let Ok(mut current) = self.current.lock() else {
                return false;
            };
            if current.0.contains(&presented) {
                return true;
            }
            if current.1.elapsed() < self.refresh_every {
                return false;
            }
            // This request reads again; concurrent mismatches meanwhile are refused unread.
            current.1 = Instant::now();
        }
        match (self.fetch)().await {
            Ok(value) => {
                let fresh = accepted(&value);
                let admitted = fresh.contains(&presented);
                if let Ok(mut current) = self.current.lock() {
                    if current.0 != fresh {
                        info!("the edge's origin secret changed; using the new values");
                    }
                    *current = (fresh, Instant::now());
                }
                admitted
            }
            Err(e) => {
                warn!(error = %e, "cannot read the edge's origin secret again; keeping the last");
                false
            }
        }
    }
}

/// The client's address as the edge saw it, on a request that came through the edge: behind
/// CloudFront, API Gateway's `sourceIp` is CloudFront's, and per-address limits need the
/// client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerAddress(pub IpAddr);

/// The address of a `CloudFront-Viewer-Address` value: the viewer's IP address and source
/// port, `198.51.100.10:46532` or `2001:db8::1:46532` (IPv6 without brackets).
fn viewer_address(value: &str) -> Option<IpAddr> {
    let (address, port) = value.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The middleware: refuses a request that did not come through the edge, and marks one that did
/// with its [`ViewerAddress`]. Only then is that header believed: a client cannot set it past
/// CloudFront, which writes it.
///
/// # Errors
/// [`ApiError::EdgeOnly`] when the header is missing or wrong.
pub async fn require_edge(
    State(guard): State<Arc<EdgeGuard>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(&guard.header)
        .map(|v| v.as_bytes().to_vec());
    match presented {
        Some(value) if guard.admits(&value).await => {
            let viewer = request
                .headers()
                .get("cloudfront-viewer-address")
                .and_then(|v| v.to_str().ok())
                .and_then(viewer_address);
            if let Some(address) = viewer {
                request.extensions_mut().insert(ViewerAddress(address));
            }
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::EdgeOnly),
    }
}

/// `router` answering only requests that came through the edge `guard` checks.
pub fn behind_edge(router: axum::Router, guard: Arc<EdgeGuard>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(guard, require_edge))
}

/// The guard `edge` asks for, reading its secret through `client`; `None` without an edge.
///
/// # Errors
/// The secret cannot be read (the message names the setting).
pub async fn guard(edge: &EdgeSettings, client: Client) -> Result<Option<Arc<EdgeGuard>>, String> {
    let Some(arn) = edge.origin_secret_arn.clone() else {
        return Ok(None);
    };
    let fetch: FetchSecret = Arc::new(move || {
        let (client, arn) = (client.clone(), arn.clone());
        Box::pin(async move { read_secret_string(&client, &arn).await })
    });
    EdgeGuard::new(&edge.origin_header, fetch, DEFAULT_REFRESH_EVERY)
        .await
        .map(|guard| Some(Arc::new(guard)))
        .map_err(|e| format!("edge.origin_secret_arn: {e}"))
}

/// [`guard`] with a client from the Lambda's environment, as `component`.
///
/// # Errors
/// The secret cannot be read.
pub async fn guard_from_env(
    edge: &EdgeSettings,
    component: Component,
) -> Result<Option<Arc<EdgeGuard>>, String> {
    if edge.origin_secret_arn.is_none() {
        return Ok(None);
    }
    guard(
        edge,
        session_core::secrets::client_from_env(component).await,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_address_is_read_from_both_families_and_nothing_else() {
        let v4: IpAddr = "198.51.100.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(viewer_address("198.51.100.10:46532"), Some(v4));
        assert_eq!(viewer_address("2001:db8::1:46532"), Some(v6));
        assert_eq!(viewer_address("[2001:db8::1]:46532"), Some(v6));
        assert_eq!(viewer_address("198.51.100.10"), None);
        assert_eq!(viewer_address("not an address:1"), None);
    }
}
