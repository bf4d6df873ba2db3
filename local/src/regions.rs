//! `session-local --regions N`: N regional stacks in one process (`local-a`, `local-b`, …),
//! each with its own APIs, streamer and backend servers, over one replicating in-memory store
//! (`session_core::store::Replication`), as `docs/multi-region.md` describes.
//!
//! Every region knows itself (`regions.this`), the primary (`local-a`) and every region's HTTP
//! API (`regions.apis`, named in `421 wrong-region` answers). The first region takes the ports
//! of the settings it is given; region `i` takes each port plus `100 × i` (8080, 8180, …), or
//! free ports where the given port is 0. Every region's web page is told of every region (to
//! fail over to) and may call every region's APIs (each allows every page's origin), so the
//! ports a page names are fixed before any region starts. One identity provider serves every
//! region (the first region's keys, behind each region's own auth service): a token is valid
//! everywhere, as a global identity provider's would be; tickets stay regional (each region has
//! its own keys).
//!
//! Every region's HTTP API serves `POST /_local/regions/{name}/fail`, `/restore`,
//! `/failover?to=<region>`, `/partition` and `/heal`, for any region, itself included: a single
//! region serving them could not be failed, and the operator's tools outlive any one region. A
//! failed region's stack stops (its listeners refuse connections, its streams end) and its
//! replication is held; restored, it starts again on the same ports over the same replica (new
//! ticket keys: tickets of before are void; tokens stay valid) and the held writes drain to and
//! from it. `failover` runs the takeover of `session-admin region failover`
//! (`session_core::service::HomeFailover`) on the target region's replica; the fence is the
//! outage itself, so it is refused for a region that runs. `partition` cuts a running region
//! off from the others (its replication held both ways, the region serving on) and `heal`
//! reconnects it: the queues drain in order.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use session_core::clock::{Clock, SystemClock};
use session_core::config::{RegionSettings, StoreBackend, invalid};
use session_core::domain::RegionName;
use session_core::service::{HomeFailover, HomeFailoverError};
use session_core::store::{HomeFence, Replication};
use tokio::sync::Mutex;

use crate::auth::{AuthService, AuthSettings};
use crate::server::ServerError;
use crate::stack::{Endpoints, Stack, StackError, StackSettings, write_endpoints};
use crate::tokens::{self, bad_request};

/// The replication lag `--replication-lag-ms` defaults to.
pub const DEFAULT_LAG: Duration = Duration::from_millis(200);

/// The name of region `index` (from 0): `local-a`, `local-b`, … (as the simulator servers'
/// zones are named).
pub fn region_name(index: usize) -> String {
    crate::faults::zone(index + 1)
}

pub use crate::region_endpoints::RegionEndpoints;

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
    control: Arc<Control>,
    endpoints: Vec<RegionEndpoints>,
    /// The identity provider every region's auth service serves.
    identity: Arc<AuthService>,
}

/// What `/_local/regions/{name}/…` acts on: every region.
#[derive(Debug)]
struct Control {
    replication: Replication,
    names: Vec<RegionName>,
    /// Region `i`: its stack (`None` while failed) and the settings to start it again.
    stacks: Mutex<Vec<(Option<Stack>, StackSettings)>>,
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
        // Every region names every region's HTTP API, and every region's page knows every
        // region (and may call its APIs: CORS), so each must be known before any starts. The
        // servers only the region itself calls are reserved too: a restored region binds its
        // ports again, and one taken from the ephemeral range could have gone meanwhile to an
        // outgoing connection.
        for s in &mut per_region {
            s.http_api = reserve(s.http_api)?;
            s.ws_api = reserve(s.ws_api)?;
            s.sse = reserve(s.sse)?;
            s.web = reserve(s.web)?;
            s.simulator = reserve(s.simulator)?;
            s.cloudmap = reserve(s.cloudmap)?;
            s.auth = reserve(s.auth)?;
            s.appconfig = reserve(s.appconfig)?;
        }
        let planned = names
            .iter()
            .zip(&per_region)
            .map(|(name, s)| RegionEndpoints::planned(name.as_str(), s))
            .collect::<Vec<_>>();
        let page_origins = per_region
            .iter()
            .flat_map(|s| crate::web::origins(s.web))
            .collect::<Vec<_>>();
        for s in &mut per_region {
            s.regions.clone_from(&planned);
            allow_origins(s, &page_origins);
        }
        let urls = |of: fn(&StackSettings) -> SocketAddr| -> std::collections::BTreeMap<_, _> {
            names
                .iter()
                .zip(&per_region)
                .map(|(name, s)| (name.clone(), format!("http://{}", of(s))))
                .collect()
        };
        let apis = urls(|s| s.http_api);
        // A region's streamer serves sessions homed in another from that region's simulators.
        let simulators = urls(|s| s.simulator);
        let identity = Arc::new(
            AuthService::new(AuthSettings {
                audience: settings.service.auth.token_audience.clone(),
                ..AuthSettings::default()
            })
            .map_err(|e| StackError::Server(ServerError::Settings(e.to_string())))?,
        );
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let replication = Replication::new(count, lag, &clock);
        let control = Arc::new(Control {
            replication,
            names: names.clone(),
            stacks: Mutex::default(),
        });
        let mut stacks = Vec::with_capacity(count);
        for (i, (mut s, name)) in per_region.into_iter().zip(&names).enumerate() {
            *s.service.regions = RegionSettings {
                this: name.clone(),
                primary: Some(names[0].clone()),
                apis: apis.clone(),
                simulators: simulators.clone(),
            };
            // Fenced to the sessions homed in this region, as a regional deployment's store is
            // (`store::from_settings`): the REST `421` is not the only guard.
            let fence = HomeFence::from_settings(&s.service.regions);
            s.store = Some(Arc::new(control.replication.region(i).fenced_by(fence)));
            s.endpoints_file = None;
            s.identity = Some(Arc::clone(&identity));
            s.routes = Some(control.routes(i));
            let stack = Stack::start(s.clone()).await?;
            let pinned = pinned(s, stack.endpoints());
            stacks.push((Some(stack), pinned));
        }
        let endpoints = stacks
            .iter()
            .filter_map(|(stack, _)| stack.as_ref())
            .zip(&names)
            .map(|(stack, name)| RegionEndpoints::of(name.as_str(), stack.endpoints()))
            .collect::<Vec<_>>();
        if let Some(path) = &settings.endpoints_file {
            let first = stacks[0].0.as_ref().map(Stack::endpoints);
            let file = RegionsFile {
                first: first.unwrap_or_else(|| unreachable!("every region was just started")),
                regions: &endpoints,
            };
            write_endpoints(path, &file)?;
        }
        *control.stacks.lock().await = stacks;
        Ok(Self {
            control,
            endpoints,
            identity,
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

    /// A dev token for `subject`, valid for an hour in every region.
    pub fn token(&self, subject: &str) -> String {
        self.identity
            .issue(subject, &tokens::DEFAULT_SCOPES, Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("the local auth service signs tokens: {e}"))
    }

    /// Stops every region.
    ///
    /// # Errors
    /// A part failed while running.
    pub async fn shutdown(self) -> Result<(), StackError> {
        let stacks = std::mem::take(&mut *self.control.stacks.lock().await);
        for (stack, _) in stacks {
            if let Some(stack) = stack {
                stack.shutdown().await?;
            }
        }
        Ok(())
    }
}

impl RegionEndpoints {
    /// Region `name`'s entry before it starts, from its fixed (or reserved) addresses, as
    /// [`Stack`] names them once bound.
    fn planned(name: &str, settings: &StackSettings) -> Self {
        let http_api = format!("http://{}", settings.http_api);
        Self {
            name: name.to_owned(),
            token_url: format!("{http_api}{}", tokens::PATH),
            http_api,
            ws_api: format!("ws://{}/{}", settings.ws_api, crate::ws_api::STAGE),
            sse: format!("http://{}", settings.sse),
            web: format!("http://{}", settings.web),
        }
    }
}

/// The route that fails, restores and fails over regions.
pub const OUTAGE_PATH: &str = "/_local/regions/{name}/{action}";

/// What one region's HTTP API acts with: every region, and which one it is.
#[derive(Debug, Clone)]
struct Serving {
    control: Arc<Control>,
    index: usize,
}

/// `?to=` of `/failover`.
#[derive(Debug, serde::Deserialize)]
struct FailoverQuery {
    to: Option<String>,
}

impl Control {
    /// The routes region `index`'s HTTP API serves.
    fn routes(self: &Arc<Self>, index: usize) -> Router {
        Router::new()
            .route(OUTAGE_PATH, post(outage))
            .with_state(Serving {
                control: Arc::clone(self),
                index,
            })
    }

    fn index(&self, name: &str) -> Result<usize, OutageError> {
        self.names
            .iter()
            .position(|n| n.as_str() == name)
            .ok_or_else(|| OutageError::Unknown(self.names_list()))
    }

    fn names_list(&self) -> String {
        self.names
            .iter()
            .map(RegionName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Takes region `index` down: its replication is held and its stack stops. The region
    /// serving the request (`serving`) cannot wait for its own stop, which drains that very
    /// request: its stop runs after the answer (`Ok(false)`: still stopping).
    async fn fail(&self, index: usize, serving: usize) -> Result<bool, OutageError> {
        let stack = self.stacks.lock().await[index].0.take();
        self.replication.isolate(index, true);
        let Some(stack) = stack else {
            return Ok(true);
        };
        if index == serving {
            tokio::spawn(async move {
                if let Err(e) = stack.shutdown().await {
                    tracing::error!(error = %e, "a failed region stopped with an error");
                }
            });
            return Ok(false);
        }
        stack.shutdown().await.map_err(OutageError::Stack)?;
        Ok(true)
    }

    /// Brings region `index` back on the same ports over the same replica.
    async fn restore(&self, index: usize) -> Result<(), OutageError> {
        let mut stacks = self.stacks.lock().await;
        let (stack, settings) = &mut stacks[index];
        if stack.is_none() {
            *stack = Some(
                Stack::start(settings.clone())
                    .await
                    .map_err(OutageError::Stack)?,
            );
        }
        self.replication.isolate(index, false);
        Ok(())
    }

    /// Cuts running region `index` off from the others (`true`: a partition; its writes and
    /// theirs are held, nothing is dropped) or heals it. A failed region stays cut off until
    /// restored.
    async fn partition(&self, index: usize, cut: bool) -> Result<(), OutageError> {
        if self.stacks.lock().await[index].0.is_none() {
            return Err(OutageError::Failed(self.names[index].to_string()));
        }
        self.replication.isolate(index, cut);
        Ok(())
    }

    /// Moves the home of every session homed in region `from` to region `to`, on `to`'s
    /// replica, as `session-admin region failover` does; `from` must be failed (its fence).
    async fn failover(&self, from: usize, to: usize) -> Result<Value, OutageError> {
        if from == to {
            return Err(OutageError::SameRegion);
        }
        if self.stacks.lock().await[from].0.is_some() {
            return Err(OutageError::Running(self.names[from].to_string()));
        }
        let store = self.replication.region(to);
        let mut report = Vec::new();
        let summary = HomeFailover {
            store: &store,
            from: &self.names[from],
            to: &self.names[to],
            primary: &self.names[0],
            dry_run: false,
            late_since: None,
            clock: &SystemClock,
        }
        .run(None, &mut report)
        .await
        .map_err(OutageError::Takeover)?;
        let report = String::from_utf8_lossy(&report);
        Ok(json!({
            "from": self.names[from].as_str(),
            "to": self.names[to].as_str(),
            "summary": summary,
            "report": report.lines().collect::<Vec<_>>(),
        }))
    }
}

/// Why a region could not be failed, restored or failed over.
#[derive(Debug, thiserror::Error)]
enum OutageError {
    #[error("name: must be one of {0}")]
    Unknown(String),
    #[error("action: must be fail, restore, failover, partition or heal, not {0:?}")]
    Action(String),
    #[error("to: required by failover (the region taking the sessions over)")]
    NoTarget,
    #[error("to: must be another region than the one failed over")]
    SameRegion,
    #[error("{0} runs: fail it first (its outage is the local stack's fence)")]
    Running(String),
    #[error("{0} is failed: restore it (a failed region stays cut off)")]
    Failed(String),
    #[error(transparent)]
    Stack(StackError),
    #[error(transparent)]
    Takeover(HomeFailoverError),
}

/// `POST /_local/regions/{name}/fail`, `/restore`, `/failover?to=<region>`, `/partition` and
/// `/heal`.
async fn outage(
    State(serving): State<Serving>,
    Path((name, action)): Path<(String, String)>,
    Query(query): Query<FailoverQuery>,
) -> Response {
    let control = &serving.control;
    let done = async {
        let index = control.index(&name)?;
        match action.as_str() {
            "fail" => {
                let stopped = control.fail(index, serving.index).await?;
                let status = if stopped {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                Ok((
                    status,
                    json!({ "region": name, "failed": true, "stopped": stopped }),
                ))
            }
            "restore" => {
                control.restore(index).await?;
                Ok((StatusCode::OK, json!({ "region": name, "failed": false })))
            }
            "failover" => {
                let to = control.index(query.to.as_deref().ok_or(OutageError::NoTarget)?)?;
                Ok((StatusCode::OK, control.failover(index, to).await?))
            }
            "partition" | "heal" => {
                let cut = action == "partition";
                control.partition(index, cut).await?;
                Ok((
                    StatusCode::OK,
                    json!({ "region": name, "partitioned": cut }),
                ))
            }
            other => Err(OutageError::Action(other.to_owned())),
        }
    };
    match done.await {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e @ (OutageError::Stack(_) | OutageError::Takeover(_))) => {
            tracing::error!(error = %e, region = name, action, "a region's outage step failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "message": e.to_string() })),
            )
                .into_response()
        }
        Err(e @ (OutageError::Running(_) | OutageError::Failed(_))) => (
            StatusCode::CONFLICT,
            Json(json!({ "message": e.to_string() })),
        )
            .into_response(),
        Err(e) => bad_request(&e.to_string()),
    }
}

/// Lets every page of `origins` call `settings`' APIs: the HTTP API (CORS), the WebSocket API
/// (its `Origin` check) and the streamer (CORS), as each stack does for its own page.
fn allow_origins(settings: &mut StackSettings, origins: &[String]) {
    let lists = [
        &mut settings.http.cors.allow_origins,
        &mut settings.service.websocket.allowed_origins,
        &mut settings.streamer.cors_origins,
    ];
    for list in lists {
        for origin in origins {
            if !list.contains(origin) {
                list.push(origin.clone());
            }
        }
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

/// Ports [`reserve`] picks from: below Linux's default ephemeral range (32768–60999).
const RESERVED_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// The ports [`reserve`] has handed out in this process: never twice, as the port is released
/// until its stack binds it, and another multi-region stack of the process (tests start
/// several at once) could otherwise be handed it meanwhile.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// `addr`, with a free port picked now if it names port 0 (briefly bound, then released).
/// Picked outside the ephemeral range: until its region's stack binds it, every other `:0` bind
/// and outgoing connection of the process (another region's servers, their clients) draws
/// from that range and could take a port released there.
fn reserve(addr: SocketAddr) -> Result<SocketAddr, StackError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..200 {
        let port = rand::random_range(RESERVED_PORTS);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(free) = std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port))
            .and_then(|l| l.local_addr())
        {
            handed_out.insert(port);
            return Ok(free);
        }
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
    fn a_reserved_port_is_free_and_outside_the_ephemeral_range() {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let reserved = reserve(any).unwrap();
        assert!(RESERVED_PORTS.contains(&reserved.port()), "{reserved}");
        std::net::TcpListener::bind(reserved).expect("still free");
        let fixed = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
        assert_eq!(reserve(fixed).unwrap(), fixed, "a given port is kept");
    }

    #[test]
    fn a_port_is_reserved_once_per_process_though_released_meanwhile() {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        // Without the record, 2,000 random picks among 12,768 ports repeat one almost surely.
        let ports: Vec<u16> = (0..2_000).map(|_| reserve(any).unwrap().port()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    #[test]
    fn regions_are_named_local_a_local_b_and_so_on() {
        assert_eq!(
            (0..3).map(region_name).collect::<Vec<_>>(),
            ["local-a", "local-b", "local-c"]
        );
    }
}
