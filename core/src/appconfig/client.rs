//! The AppConfig Agent's client: `GET {base}/applications/{app}/environments/{env}/
//! configurations/{profile}` on loopback (plain HTTP, the agent's only transport).

use std::time::Duration;

use bytes::Bytes;

use crate::config::AppConfigSettings;

/// How long one call to the agent may take: it answers from its cache on loopback.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a document could not be read from the agent.
#[derive(Debug, thiserror::Error)]
pub enum AppConfigError {
    /// The agent could not be reached, or did not answer in time.
    #[error("the AppConfig agent at {url} is unreachable: {source}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The agent answered with an error status (`404`: no such profile).
    #[error("the AppConfig agent answered {status} for {url}")]
    Status {
        /// The URL asked.
        url: String,
        /// Its status.
        status: u16,
    },
}

/// A client of the agent for one application and environment.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
}

impl AgentClient {
    /// The client `settings` name, `None` when no agent is configured (`base_url` unset).
    pub fn from_settings(settings: &AppConfigSettings) -> Option<Self> {
        let base_url = settings.base_url.as_ref()?;
        Some(Self {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .build()
                .unwrap_or_default(),
            base: format!(
                "{base_url}/applications/{}/environments/{}/configurations",
                settings.application, settings.environment
            ),
        })
    }

    /// The URL of `profile`'s document.
    pub fn url(&self, profile: &str) -> String {
        format!("{}/{profile}", self.base)
    }

    /// The current document of `profile`, as the agent holds it.
    ///
    /// # Errors
    /// The agent is unreachable or answers with an error status.
    pub async fn fetch(&self, profile: &str) -> Result<Bytes, AppConfigError> {
        let url = self.url(profile);
        let unreachable = |source| AppConfigError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = self.http.get(&url).send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(AppConfigError::Status {
                status: response.status().as_u16(),
                url,
            });
        }
        response.bytes().await.map_err(unreachable)
    }
}
