//! Service discovery: where the servers of a gRPC backend (the simulator servers, the auth
//! replicas) are now. One [`Resolver`] per mode (`discovery.mode`): [`StaticResolver`] (the
//! `backends.*_url` settings, the default), [`CloudMapResolver`] (AWS Cloud Map's
//! `DiscoverInstances`, healthy instances only) and [`DnsResolver`] (a headless Service's A
//! records). A [`Watch`] refreshes one backend's list in the background and keeps the last
//! good list when a refresh fails; [`balance`] picks a server for a new simulator.

pub mod balance;
mod cloudmap;
mod dns;
mod watch;

use std::sync::Arc;

use async_trait::async_trait;

pub use cloudmap::CloudMapResolver;
pub use dns::DnsResolver;
pub use watch::{Servers, Watch};

use crate::component::Component;
use crate::config::{DiscoveryMode, Settings};

/// A backend whose servers are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The simulator servers (`simulator.v1`): stateful, each instance lives on one.
    Simulator,
    /// The auth service's replicas (`auth.v1`): stateless, any one answers.
    Auth,
}

impl Backend {
    /// The name in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Auth => "auth",
        }
    }
}

/// One healthy server of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance {
    /// Its id in the registry (Cloud Map's instance id; the address for DNS and static).
    pub id: String,
    /// Where its gRPC server listens, `host:port`.
    pub address: String,
    /// Its availability zone, when the registry says (the `zone` attribute).
    pub zone: Option<String>,
}

/// Why a backend's servers could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Cloud Map's `DiscoverInstances` failed.
    #[error("cloud map: {0}")]
    CloudMap(String),
    /// Cloud Map listed an instance without a usable address.
    #[error("cloud map instance {id}: {problem}")]
    BadInstance {
        /// The instance.
        id: String,
        /// What is missing or wrong.
        problem: String,
    },
    /// A DNS name did not resolve.
    #[error("dns {name}: {source}")]
    Dns {
        /// The name, `host:port`.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Lists the healthy servers of a backend.
#[async_trait]
pub trait Resolver: Send + Sync + std::fmt::Debug {
    /// The healthy servers of `backend` now, sorted by id.
    ///
    /// # Errors
    /// The registry could not be read.
    async fn instances(&self, backend: Backend) -> Result<Vec<Instance>, DiscoveryError>;
}

/// The one server of each backend that `backends.simulator_url` and `backends.auth_url` name.
#[derive(Debug, Clone)]
pub struct StaticResolver {
    simulator: Instance,
    auth: Instance,
}

impl StaticResolver {
    /// The servers of `settings.backends`.
    pub fn from_settings(settings: &Settings) -> Self {
        let instance = |url: &str| {
            let address = url
                .split_once("://")
                .map_or(url, |(_, rest)| rest)
                .trim_end_matches('/')
                .to_owned();
            Instance {
                id: address.clone(),
                address,
                zone: None,
            }
        };
        Self {
            simulator: instance(&settings.backends.simulator_url),
            auth: instance(&settings.backends.auth_url),
        }
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn instances(&self, backend: Backend) -> Result<Vec<Instance>, DiscoveryError> {
        Ok(vec![match backend {
            Backend::Simulator => self.simulator.clone(),
            Backend::Auth => self.auth.clone(),
        }])
    }
}

/// A [`Watch`] of `backend`'s servers as `settings.discovery.mode` says, its AWS calls
/// (Cloud Map) naming `component`; `None` in `static` mode, where the clients keep their one
/// URL. Spawns the refresh task on the current Tokio runtime; no I/O before it runs.
pub fn watch_from_settings(
    settings: &Settings,
    backend: Backend,
    component: Component,
) -> Option<Watch> {
    let discovery = settings.discovery.clone();
    let resolver = async move {
        let resolver: Arc<dyn Resolver> = match discovery.mode {
            DiscoveryMode::Cloudmap => {
                Arc::new(CloudMapResolver::from_env(&discovery, component).await)
            }
            _ => Arc::new(DnsResolver::from_settings(&discovery)),
        };
        resolver
    };
    (settings.discovery.mode != DiscoveryMode::Static)
        .then(|| Watch::spawn(resolver, backend, settings.discovery.refresh_ms))
}

/// The scheme of a discovered server's URL: TLS when `backends.tls` is set.
pub fn url_of(settings: &Settings, address: &str) -> String {
    let scheme = if settings.backends.tls.is_set() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_static_resolver_names_the_configured_urls_hosts() {
        let settings = Settings::default();
        let resolver = StaticResolver::from_settings(&settings);

        let simulators = resolver.instances(Backend::Simulator).await.unwrap();

        assert_eq!(simulators.len(), 1);
        assert_eq!(simulators[0].address, "127.0.0.1:50051");
        assert_eq!(
            url_of(&settings, &simulators[0].address),
            "http://127.0.0.1:50051"
        );
    }
}
