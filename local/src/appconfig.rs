//! The AppConfig Agent's local HTTP API, served from a folder: `GET /applications/{app}/
//! environments/{env}/configurations/{profile}` answers `DIR/<profile>.json` for any application
//! and environment, read on each request (so an edit is served at once, as the agent serves a
//! new deployment after its next poll). Without a folder, or for a profile the folder lacks,
//! the built-in defaults (`local/appconfig/`: `flags.json`, `settings.json`) are served.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The built-in documents, by profile: every flag off, no runtime setting overridden.
const DEFAULTS: &[(&str, &str)] = &[
    ("flags", include_str!("../appconfig/flags.json")),
    ("settings", include_str!("../appconfig/settings.json")),
];

/// A running agent API; dropping it stops the server.
#[derive(Debug)]
pub struct AppConfigAgent {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AppConfigAgent {
    /// Serves `dir` (the built-in defaults when `None`) on `listener`.
    ///
    /// # Errors
    /// The listener has no local address.
    pub fn spawn(listener: TcpListener, dir: Option<PathBuf>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route(
                "/applications/{application}/environments/{environment}/configurations/{profile}",
                get(document),
            )
            .with_state(Arc::new(dir));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the AppConfig agent API stopped");
            }
        });
        Ok(Self { addr, task })
    }

    /// The agent's base URL (`appconfig.base_url`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for AppConfigAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The profile's document, or `404` as the agent answers for an unknown profile.
async fn document(
    State(dir): State<Arc<Option<PathBuf>>>,
    Path((_application, _environment, profile)): Path<(String, String, String)>,
) -> Response {
    // A name, never a path out of the folder.
    if profile.is_empty()
        || !profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return (StatusCode::BAD_REQUEST, "invalid profile name").into_response();
    }
    let file = match dir.as_ref() {
        Some(dir) => tokio::fs::read(dir.join(format!("{profile}.json")))
            .await
            .ok(),
        None => None,
    };
    // A profile the folder lacks is served from the defaults (a folder of flags only).
    let body = file.or_else(|| {
        DEFAULTS
            .iter()
            .find(|(name, _)| *name == profile)
            .map(|(_, text)| text.as_bytes().to_vec())
    });
    match body {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no profile {profile}")).into_response(),
    }
}
