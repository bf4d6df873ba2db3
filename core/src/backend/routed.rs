//! [`RoutedSimulatorBackend`]: the simulator servers found by discovery. A new simulator
//! starts on a server picked by power of two choices ([`crate::discovery::balance`]); every
//! later call goes to the server its record names, through one channel per server (cached by
//! address, its own breaker). Records without a server belong to the static server
//! (`backends.simulator_url`), as before discovery existed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::StartSpec;
use super::{BackendError, BackendSimulator, GrpcSimulatorBackend, Placement, SimulatorBackend};
use crate::config::Settings;
use crate::discovery::balance::Balancer;
use crate::discovery::{Watch, url_of};
use crate::domain::{BookView, SimulatorHost, Symbol};
use crate::resilience::BreakerState;

/// Routes each simulator's calls to the server that hosts it.
#[derive(Debug, Clone)]
pub struct RoutedSimulatorBackend {
    servers: Watch,
    /// The static server: records without a server, and the health probe.
    fallback: GrpcSimulatorBackend,
    /// One client (one HTTP/2 channel, one breaker) per server address.
    channels: Arc<Mutex<HashMap<String, GrpcSimulatorBackend>>>,
    balancer: Arc<Balancer>,
    settings: Arc<Settings>,
    /// How long a cold process waits for its first list of servers.
    first_list_wait: Duration,
}

impl RoutedSimulatorBackend {
    /// The servers `servers` lists, called with the `backends.*` settings of `settings`.
    ///
    /// # Errors
    /// `backends.simulator_url` is not a valid endpoint URL, or the TLS material does not
    /// parse.
    pub fn new(servers: Watch, settings: &Settings) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            servers,
            fallback: GrpcSimulatorBackend::from_settings(settings)?,
            channels: Arc::default(),
            balancer: Arc::default(),
            settings: Arc::new(settings.clone()),
            first_list_wait: settings.backends.deadline_ms,
        })
    }

    /// The client of `host` (the static server's for `None`).
    fn client(&self, host: Option<&SimulatorHost>) -> Result<GrpcSimulatorBackend, BackendError> {
        let Some(host) = host else {
            return Ok(self.fallback.clone());
        };
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = channels.get(&host.address) {
            return Ok(client.clone());
        }
        let url = url_of(&self.settings, &host.address);
        let client = GrpcSimulatorBackend::at(&url, &self.settings.backends)
            .map_err(|e| BackendError::Unavailable(format!("server {host}: {e}")))?;
        channels.insert(host.address.clone(), client.clone());
        Ok(client)
    }

    /// Drops the channels of servers no longer listed (they are not coming back under that
    /// address, and their connections would keep pinging).
    fn forget_gone(&self, listed: &[crate::discovery::Instance]) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.retain(|address, _| listed.iter().any(|i| &i.address == address));
    }
}

#[async_trait]
impl SimulatorBackend for RoutedSimulatorBackend {
    async fn start(&self, spec: &StartSpec) -> Result<BackendSimulator, BackendError> {
        self.fallback.start(spec).await
    }

    async fn stop(&self, backend_id: &str) -> Result<BackendSimulator, BackendError> {
        self.fallback.stop(backend_id).await
    }

    async fn get(&self, backend_id: &str) -> Result<BackendSimulator, BackendError> {
        self.fallback.get(backend_id).await
    }

    async fn book(&self, backend_id: &str, symbol: &Symbol) -> Result<BookView, BackendError> {
        self.fallback.book(backend_id, symbol).await
    }

    async fn probe(&self, backend_id: &str, deadline: Duration) -> Result<(), BackendError> {
        // Any healthy server answers for the service's health; the static one otherwise.
        let servers = self.servers.current().unwrap_or_default();
        let host = servers.first().map(|i| SimulatorHost {
            id: i.id.clone(),
            address: i.address.clone(),
        });
        self.client(host.as_ref())?
            .probe(backend_id, deadline)
            .await
    }

    fn breaker_state(&self) -> BreakerState {
        self.fallback.breaker_state()
    }

    async fn place(&self) -> Result<Placement, BackendError> {
        let servers = self.servers.instances(self.first_list_wait).await;
        self.forget_gone(&servers);
        let (server, load) = self
            .balancer
            .pick(&servers, &mut rand::rng())
            .ok_or_else(|| {
                BackendError::Unavailable("no simulator server is healthy".to_owned())
            })?;
        Ok(Placement {
            host: Some(SimulatorHost {
                id: server.id.clone(),
                address: server.address.clone(),
            }),
            load: Some(load),
        })
    }

    async fn start_on(
        &self,
        host: Option<&SimulatorHost>,
        spec: &StartSpec,
    ) -> Result<BackendSimulator, BackendError> {
        self.client(host)?.start(spec).await
    }

    async fn stop_on(
        &self,
        host: Option<&SimulatorHost>,
        backend_id: &str,
    ) -> Result<BackendSimulator, BackendError> {
        self.client(host)?.stop(backend_id).await
    }

    async fn get_on(
        &self,
        host: Option<&SimulatorHost>,
        backend_id: &str,
    ) -> Result<BackendSimulator, BackendError> {
        self.client(host)?.get(backend_id).await
    }

    async fn book_on(
        &self,
        host: Option<&SimulatorHost>,
        backend_id: &str,
        symbol: &Symbol,
    ) -> Result<BookView, BackendError> {
        self.client(host)?.book(backend_id, symbol).await
    }

    async fn serves(&self, host: &SimulatorHost) -> bool {
        let servers = self.servers.instances(self.first_list_wait).await;
        // A list not read yet says nothing: the server is given the benefit of the doubt.
        self.servers.current().is_none()
            || servers
                .iter()
                .any(|i| i.id == host.id && i.address == host.address)
    }
}
