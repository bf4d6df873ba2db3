//! What every request handler of the streamer shares: built by `app`, read by `sse` (and the
//! health routes), so that neither imports the other.

use std::sync::Arc;

use crate::settings::StreamerSettings;
use metrics_exporter_prometheus::PrometheusHandle;
use session_core::auth::TokenValidator;
use session_core::service::StreamService;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::hub::Hub;
use crate::limits::StreamLimits;
use crate::runtime::StreamerRuntime;
use crate::upstream::Upstream;
use session_core::appconfig::LiveDocument;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub service: StreamService,
    pub tokens: Arc<dyn TokenValidator>,
    pub hub: Hub,
    pub upstream: Upstream,
    pub settings: Arc<StreamerSettings>,
    pub draining: watch::Receiver<bool>,
    pub metrics: PrometheusHandle,
    /// The pod's connection and stream caps.
    pub admission: Admission,
    /// Rate limits of stream opens, per user and per address.
    pub limits: StreamLimits,
    /// The settings that change without a restart (SSE heartbeat and retry), read at use.
    pub runtime: LiveDocument<StreamerRuntime>,
}
