//! [`DnsResolver`]: a Kubernetes headless Service's name resolved to its A records (one per
//! ready pod), each with the port of the setting.

use async_trait::async_trait;

use super::{Backend, DiscoveryError, Instance, Resolver};
use crate::config::DiscoverySettings;

/// Lists a backend's servers as the addresses its DNS name resolves to.
#[derive(Debug, Clone)]
pub struct DnsResolver {
    simulator: String,
    auth: String,
}

impl DnsResolver {
    /// The names `discovery.simulator_dns` and `discovery.auth_dns` (validated as `host:port`
    /// in `dns` mode).
    pub fn from_settings(settings: &DiscoverySettings) -> Self {
        Self {
            simulator: settings.simulator_dns.clone().unwrap_or_default(),
            auth: settings.auth_dns.clone().unwrap_or_default(),
        }
    }
}

#[async_trait]
impl Resolver for DnsResolver {
    async fn instances(&self, backend: Backend) -> Result<Vec<Instance>, DiscoveryError> {
        let name = match backend {
            Backend::Simulator => &self.simulator,
            Backend::Auth => &self.auth,
        };
        let addresses = tokio::net::lookup_host(name.as_str())
            .await
            .map_err(|source| DiscoveryError::Dns {
                name: name.clone(),
                source,
            })?;
        let mut instances: Vec<Instance> = addresses
            .map(|address| Instance {
                id: address.to_string(),
                address: address.to_string(),
                zone: None,
            })
            .collect();
        instances.sort();
        instances.dedup();
        Ok(instances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolves_to_one_instance_per_address_with_the_settings_port() {
        let resolver = DnsResolver {
            simulator: "localhost:50051".into(),
            auth: "no-such-host.invalid:1".into(),
        };

        let simulators = resolver.instances(Backend::Simulator).await.unwrap();

        assert!(!simulators.is_empty());
        assert!(simulators.iter().all(|i| i.address.ends_with(":50051")));
        let err = resolver.instances(Backend::Auth).await.unwrap_err();
        assert!(
            err.to_string().starts_with("dns no-such-host.invalid:1"),
            "{err}"
        );
    }
}
