//! [`Watch`]: one backend's healthy servers, refreshed in the background. A failed refresh
//! is logged and counted (`discovery_refresh_failures_total`) and keeps the last good list: a
//! registry that cannot be read must not take every server away.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use super::{Backend, Instance, Resolver};

/// The latest list of a backend's healthy servers; `None` until the first read succeeds.
pub type Servers = Option<Arc<Vec<Instance>>>;

/// A backend's healthy servers, kept fresh by a task that ends when every `Watch` clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct Watch {
    backend: Backend,
    servers: watch::Receiver<Servers>,
}

impl Watch {
    /// Reads `backend`'s servers from the resolver `resolver` gives now and then every
    /// `every`, in a task on the current Tokio runtime (so building the resolver, an AWS
    /// client among them, happens there and not in the caller's cold start).
    pub fn spawn(
        resolver: impl Future<Output = Arc<dyn Resolver>> + Send + 'static,
        backend: Backend,
        every: Duration,
    ) -> Self {
        let (tx, servers) = watch::channel(None);
        tokio::spawn(async move { refresh(resolver.await, backend, every, tx).await });
        Self { backend, servers }
    }

    /// A list that never changes (tests, and the static mode's one server).
    pub fn fixed(backend: Backend, instances: Vec<Instance>) -> Self {
        let (_, servers) = watch::channel(Some(Arc::new(instances)));
        Self { backend, servers }
    }

    /// The backend watched.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The latest list (`None` before the first read).
    pub fn current(&self) -> Servers {
        self.servers.borrow().clone()
    }

    /// The latest list, waiting up to `wait` for the first read (empty if there is none yet).
    pub async fn instances(&self, wait: Duration) -> Arc<Vec<Instance>> {
        let mut servers = self.servers.clone();
        let first = tokio::time::timeout(wait, servers.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(list)) => list.clone().unwrap_or_default(),
            _ => self.current().unwrap_or_default(),
        }
    }

    /// A receiver that sees every new list (the auth client's balancer follows it).
    pub fn subscribe(&self) -> watch::Receiver<Servers> {
        self.servers.clone()
    }
}

/// The refresh loop: ends once nobody watches.
async fn refresh(
    resolver: Arc<dyn Resolver>,
    backend: Backend,
    every: Duration,
    tx: watch::Sender<Servers>,
) {
    let name = backend.name();
    loop {
        match resolver.instances(backend).await {
            Ok(instances) => {
                metrics::gauge!("discovery_healthy_instances", "backend" => name)
                    .set(instances.len() as f64);
                tx.send_if_modified(|current| {
                    let changed = current.as_deref() != Some(&instances);
                    if changed {
                        debug!(backend = name, servers = instances.len(), "servers changed");
                        *current = Some(Arc::new(instances));
                    }
                    changed
                });
            }
            Err(error) => {
                metrics::counter!("discovery_refresh_failures_total", "backend" => name)
                    .increment(1);
                warn!(backend = name, error = %error, "discovery refresh failed; keeping the last list");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = tx.closed() => return,
        }
    }
}
