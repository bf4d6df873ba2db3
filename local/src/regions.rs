//! `session-local --regions N`: N regional stacks in one process (`local-a`, `local-b`, …),
//! each with its own APIs, streamer and backend servers, over one replicating in-memory store
//! (`session_core::store::Replication`), as `docs/multi-region.md` describes.
//!
//! Every region knows itself (`regions.this`), the primary (`local-a`) and every region's HTTP
//! API (`regions.apis`, named in `421 wrong-region` answers). The first region takes the ports
//! of the settings it is given; region `i` takes each port plus `100 × i` (8080, 8180, …), or
//! free ports where the given port is 0.
//!
//! The first region's HTTP API also serves `POST /_local/regions/{name}/fail` and `/restore`
//! for the others: a failed region's stack stops (its listeners refuse connections, its streams
//! end) and its replication is held; restored, it starts again on the same ports over the same
//! replica (a new auth service and ticket keys: tokens and tickets of before are void) and the
//! held writes drain to and from it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use session_core::clock::{Clock, SystemClock};
use session_core::config::{RegionSettings, StoreBackend, invalid};
use session_core::domain::RegionName;
use session_core::store::Replication;
use tokio::sync::Mutex;

use crate::stack::{Endpoints, Stack, StackError, StackSettings, write_endpoints};
use crate::tokens::bad_request;

/// The replication lag `--replication-lag-ms` defaults to.
pub const DEFAULT_LAG: Duration = Duration::from_millis(200);

/// The name of region `index` (from 0): `local-a`, `local-b`, … (as the simulator servers'
/// zones are named).
pub fn region_name(index: usize) -> String {
    crate::faults::zone(index + 1)
}

/// Where to reach one region; an entry of the endpoints file's `regions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionEndpoints {
    /// The region (`local-a`).
    pub name: String,
    /// Its HTTP API's base URL.
    pub http_api: String,
    /// Its WebSocket API.
    pub ws_api: String,
    /// Its streamer's base URL.
    pub sse: String,
    /// Its web page.
    pub web: String,
    /// Where to mint dev tokens for this region (each region has its own auth service).
    pub token_url: String,
}

/// The endpoints file of a multi-region stack: the first region's keys, and every region.
#[derive(Debug, Serialize)]
struct RegionsFile<'a> {
    #[serde(flatten)]
    first: &'a Endpoints,
    regions: &'a [RegionEndpoints],
}

/// N running regional stacks and the replication between their stores.
#[derive(Debug)]
pub struct Regions {
    first: Stack,
    control: Arc<Control>,
    endpoints: Vec<RegionEndpoints>,
}

/// What `/_local/regions/{name}/{fail,restore}` acts on: the regions after the first.
#[derive(Debug)]
struct Control {
    replication: Replication,
    names: Vec<String>,
    /// Region `i + 1`: its stack (`None` while failed) and the settings to start it again.
    others: Mutex<Vec<(Option<Stack>, StackSettings)>>,
}

impl Regions {
    /// Starts `count` regions from `settings` (the first region's; its endpoints file, if any,
    /// is written once all are ready, with `regions`), replicating after `lag`.
    ///
    /// # Errors
    /// The settings name DynamoDB (regions replicate in memory only), a port is taken, or a
    /// region cannot start.
    pub async fn start(
        settings: StackSettings,
        count: usize,
        lag: Duration,
    ) -> Result<Self, StackError> {
        // Boxed, as `Stack::start` is: N stacks' settings live across its awaits.
        Box::pin(Self::start_inner(settings, count, lag)).await
    }

    async fn start_inner(
        settings: StackSettings,
        count: usize,
        lag: Duration,
    ) -> Result<Self, StackError> {
        if settings.service.store.backend != StoreBackend::Memory {
            invalid::<()>(
                "store.backend",
                "several regions replicate in memory only: drop --dynamodb-endpoint",
            )?;
        }
        let count = count.max(1);
        let names = (0..count)
            .map(|i| region(&region_name(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut per_region: Vec<StackSettings> =
            (0..count).map(|i| offset(&settings, i)).collect::<Vec<_>>();
        // Every region names every region's HTTP API, so each must be known before any starts.
        for s in &mut per_region {
            s.http_api = reserve(s.http_api)?;
        }
        let apis: std::collections::BTreeMap<_, _> = names
            .iter()
            .zip(&per_region)
            .map(|(name, s)| (name.clone(), format!("http://{}", s.http_api)))
            .collect();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let replication = Replication::new(count, lag, &clock);
        for (i, (s, name)) in per_region.iter_mut().zip(&names).enumerate() {
            *s.service.regions = RegionSettings {
                this: name.clone(),
                primary: Some(names[0].clone()),
                apis: apis.clone(),
            };
            s.store = Some(Arc::new(replication.region(i)));
            s.endpoints_file = None;
        }
        let control = Arc::new(Control {
            replication,
            names: names.iter().map(ToString::to_string).collect(),
            others: Mutex::default(),
        });
        // The others first: the first region's API serves the routes that fail them.
        let mut first_settings = per_region.remove(0);
        let mut others = Vec::with_capacity(count - 1);
        for s in per_region {
            let stack = Stack::start(s.clone()).await?;
            let pinned = pinned(s, stack.endpoints());
            others.push((Some(stack), pinned));
        }
        first_settings.routes = Some(control.routes());
        let first = Stack::start(first_settings).await?;
        let endpoints = std::iter::once(&first)
            .chain(others.iter().filter_map(|(stack, _)| stack.as_ref()))
            .zip(&names)
            .map(|(stack, name)| RegionEndpoints::of(name, stack.endpoints()))
            .collect::<Vec<_>>();
        *control.others.lock().await = others;
        if let Some(path) = &settings.endpoints_file {
            let file = RegionsFile {
                first: first.endpoints(),
                regions: &endpoints,
            };
            write_endpoints(path, &file)?;
        }
        Ok(Self {
            first,
            control,
            endpoints,
        })
    }

    /// Where to reach each region, `local-a` first.
    pub fn endpoints(&self) -> &[RegionEndpoints] {
        &self.endpoints
    }

    /// The replication between the regions' stores (to partition them).
    pub fn replication(&self) -> &Replication {
        &self.control.replication
    }

    /// A dev token for `subject` from region `index`'s auth service, valid for an hour; `None`
    /// while that region is failed.
    pub async fn token(&self, index: usize, subject: &str) -> Option<String> {
        match index {
            0 => Some(self.first.token(subject)),
            i => self.control.others.lock().await[i - 1]
                .0
                .as_ref()
                .map(|stack| stack.token(subject)),
        }
    }

    /// Stops every region.
    ///
    /// # Errors
    /// A part failed while running.
    pub async fn shutdown(self) -> Result<(), StackError> {
        self.first.shutdown().await?;
        let others = std::mem::take(&mut *self.control.others.lock().await);
        for (stack, _) in others {
            if let Some(stack) = stack {
                stack.shutdown().await?;
            }
        }
        Ok(())
    }
}

impl RegionEndpoints {
    fn of(name: &RegionName, endpoints: &Endpoints) -> Self {
        Self {
            name: name.to_string(),
            http_api: endpoints.http_api.clone(),
            ws_api: endpoints.ws_api.clone(),
            sse: endpoints.sse.clone(),
            web: endpoints.web.clone(),
            token_url: endpoints.token_url.clone(),
        }
    }
}

/// The route that fails and restores regions.
pub const OUTAGE_PATH: &str = "/_local/regions/{name}/{action}";

impl Control {
    fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route(OUTAGE_PATH, post(outage))
            .with_state(Arc::clone(self))
    }

    /// Takes region `name` down (`fail`: its listeners close, its replication is held) or
    /// brings it back on the same ports over the same replica (`restore`).
    async fn apply(&self, name: &str, fail: bool) -> Result<Value, OutageError> {
        let index = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| OutageError::Unknown(self.names.join(", ")))?;
        let Some(other) = index.checked_sub(1) else {
            return Err(OutageError::First);
        };
        let mut others = self.others.lock().await;
        let (stack, settings) = &mut others[other];
        if fail {
            self.replication.isolate(index, true);
            if let Some(stack) = stack.take() {
                stack.shutdown().await.map_err(OutageError::Stack)?;
            }
        } else {
            if stack.is_none() {
                *stack = Some(
                    Stack::start(settings.clone())
                        .await
                        .map_err(OutageError::Stack)?,
                );
            }
            self.replication.isolate(index, false);
        }
        Ok(json!({ "region": name, "failed": fail }))
    }
}

/// Why a region could not be failed or restored.
#[derive(Debug, thiserror::Error)]
enum OutageError {
    #[error("name: must be one of {0}")]
    Unknown(String),
    #[error("the first region serves /_local and cannot be failed: fail another")]
    First,
    #[error(transparent)]
    Stack(StackError),
}

/// `POST /_local/regions/{name}/fail` and `/restore`.
async fn outage(
    State(control): State<Arc<Control>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let fail = match action.as_str() {
        "fail" => true,
        "restore" => false,
        other => return bad_request(&format!("action: must be fail or restore, not {other:?}")),
    };
    match control.apply(&name, fail).await {
        Ok(state) => Json(state).into_response(),
        Err(e @ OutageError::Stack(_)) => {
            tracing::error!(error = %e, region = name, fail, "cannot fail or restore a region");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "message": e.to_string() })),
            )
                .into_response()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

/// `settings` with every address the ones `endpoints` says the stack bound (free ports
/// resolved), so that a restored region comes back where it was.
fn pinned(settings: StackSettings, endpoints: &Endpoints) -> StackSettings {
    let bound = |url: &str, given: SocketAddr| {
        url.split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or(given)
    };
    StackSettings {
        http_api: bound(&endpoints.http_api, settings.http_api),
        ws_api: bound(&endpoints.ws_api, settings.ws_api),
        sse: bound(&endpoints.sse, settings.sse),
        simulator: bound(&endpoints.simulator_grpc, settings.simulator),
        cloudmap: bound(&endpoints.cloudmap, settings.cloudmap),
        auth: bound(&endpoints.auth_grpc, settings.auth),
        web: bound(&endpoints.web, settings.web),
        appconfig: bound(&endpoints.appconfig, settings.appconfig),
        ..settings
    }
}

fn region(name: &str) -> Result<RegionName, StackError> {
    RegionName::parse("regions.this", name)
        .or_else(|e| invalid("regions.this", e.to_string()))
        .map_err(StackError::Config)
}

/// Region `index`'s settings: `settings` with every fixed port moved up by `100 × index`.
fn offset(settings: &StackSettings, index: usize) -> StackSettings {
    let shift = u16::try_from(index * 100).unwrap_or(u16::MAX);
    let at = |addr: SocketAddr| match addr.port() {
        0 => addr,
        port => SocketAddr::new(addr.ip(), port.saturating_add(shift)),
    };
    StackSettings {
        http_api: at(settings.http_api),
        ws_api: at(settings.ws_api),
        sse: at(settings.sse),
        simulator: at(settings.simulator),
        cloudmap: at(settings.cloudmap),
        auth: at(settings.auth),
        web: at(settings.web),
        appconfig: at(settings.appconfig),
        ..settings.clone()
    }
}

/// `addr`, with a free port picked now if it names port 0 (briefly bound, then released).
fn reserve(addr: SocketAddr) -> Result<SocketAddr, StackError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.local_addr())
        .map_err(|source| StackError::Listen {
            addr: listen,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_named_local_a_local_b_and_so_on() {
        assert_eq!(
            (0..3).map(region_name).collect::<Vec<_>>(),
            ["local-a", "local-b", "local-c"]
        );
    }
}
