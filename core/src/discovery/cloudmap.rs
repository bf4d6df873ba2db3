//! [`CloudMapResolver`]: AWS Cloud Map's `DiscoverInstances`, healthy instances only. Each
//! instance names its address in the standard attributes `AWS_INSTANCE_IPV4` and
//! `AWS_INSTANCE_PORT`, and its zone in the custom attribute `zone`.

use async_trait::async_trait;
use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_servicediscovery::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_servicediscovery::error::{BoxError, DisplayErrorContext};
use aws_sdk_servicediscovery::types::{HealthStatusFilter, HttpInstanceSummary};

use super::{Backend, DiscoveryError, Instance, Resolver};
use crate::component::Component;
use crate::config::DiscoverySettings;

/// Lists a backend's healthy instances in Cloud Map.
#[derive(Debug, Clone)]
pub struct CloudMapResolver {
    client: Client,
    namespace: String,
    simulator_service: String,
    auth_service: String,
}

impl CloudMapResolver {
    /// A resolver over `client`, in the namespace and services of `settings`.
    pub fn new(client: Client, settings: &DiscoverySettings) -> Self {
        Self {
            client,
            namespace: settings.namespace.clone(),
            simulator_service: settings.simulator_service.clone(),
            auth_service: settings.auth_service.clone(),
        }
    }

    /// A resolver whose client comes from the environment's AWS configuration, pointed at
    /// `discovery.cloudmap_endpoint` if set, its calls naming `component` in their user agent.
    ///
    /// An endpoint on this machine (moto's Cloud Map, the local stack's registry) gets fixed
    /// dummy credentials instead: neither checks them, and a developer's machine has none.
    pub async fn from_env(settings: &DiscoverySettings, component: Component) -> Self {
        if let Some(endpoint) = settings
            .cloudmap_endpoint
            .as_deref()
            .filter(|e| on_loopback(e))
        {
            return Self::new(Self::local_client(endpoint, Some(component)), settings);
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .app_name(component.app_name());
        if let Some(endpoint) = &settings.cloudmap_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_servicediscovery::config::Builder::from(&shared);
        if settings.cloudmap_endpoint.is_some() {
            config = config.interceptor(NoHostPrefix);
        }
        Self::new(Client::from_conf(config.build()), settings)
    }

    /// A client of a Cloud-Map-API server on this machine (moto's, the local stack's registry)
    /// at `endpoint`, with fixed dummy credentials and region, whose calls name `component`.
    pub fn local_client(endpoint: &str, component: Option<Component>) -> Client {
        Self::local_client_in(endpoint, "us-east-1", component)
    }

    /// [`local_client`](Self::local_client) in `region`: moto keeps a registry per region, so
    /// tests that share one server each take a region and see only their own namespace.
    pub fn local_client_in(endpoint: &str, region: &str, component: Option<Component>) -> Client {
        use aws_sdk_servicediscovery::config::{BehaviorVersion, Credentials, Region};
        let mut config = aws_sdk_servicediscovery::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new("local", "local", None, None, "local"))
            .endpoint_url(endpoint)
            .interceptor(NoHostPrefix);
        config.set_app_name(component.map(Component::app_name));
        Client::from_conf(config.build())
    }
}

/// Whether `endpoint` (`http://127.0.0.1:8060`) names this machine.
fn on_loopback(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

#[async_trait]
impl Resolver for CloudMapResolver {
    async fn instances(&self, backend: Backend) -> Result<Vec<Instance>, DiscoveryError> {
        let service = match backend {
            Backend::Simulator => &self.simulator_service,
            Backend::Auth => &self.auth_service,
        };
        let out = self
            .client
            .discover_instances()
            .namespace_name(&self.namespace)
            .service_name(service)
            .health_status(HealthStatusFilter::Healthy)
            .send()
            .await
            .map_err(|e| DiscoveryError::CloudMap(DisplayErrorContext(e).to_string()))?;
        let mut instances = out
            .instances()
            .iter()
            .map(instance)
            .collect::<Result<Vec<_>, _>>()?;
        instances.sort();
        Ok(instances)
    }
}

/// The instance `summary` describes.
fn instance(summary: &HttpInstanceSummary) -> Result<Instance, DiscoveryError> {
    let id = summary.instance_id().unwrap_or_default().to_owned();
    let attribute = |name: &str| summary.attributes().and_then(|a| a.get(name));
    let bad = |problem: &str| DiscoveryError::BadInstance {
        id: id.clone(),
        problem: problem.to_owned(),
    };
    let ip = attribute("AWS_INSTANCE_IPV4").ok_or_else(|| bad("no AWS_INSTANCE_IPV4"))?;
    let port = attribute("AWS_INSTANCE_PORT")
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| bad("no AWS_INSTANCE_PORT port number"))?;
    Ok(Instance {
        address: format!("{ip}:{port}"),
        zone: attribute("zone").cloned(),
        id,
    })
}

/// Keeps the endpoint URL as configured: `DiscoverInstances` otherwise sends its calls to
/// `data-<host>`, which is AWS's data-plane name and no host on a test or local endpoint.
#[derive(Debug)]
struct NoHostPrefix;

impl Intercept for NoHostPrefix {
    fn name(&self) -> &'static str {
        "NoHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let uri = context.request().uri();
        if uri.contains("://data-") {
            let unprefixed = uri.replacen("://data-", "://", 1);
            context.request_mut().set_uri(unprefixed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_endpoint_on_this_machine_gets_the_dummy_credentials() {
        for local in [
            "http://127.0.0.1:8060",
            "http://localhost:5000/",
            "http://[::1]:1",
        ] {
            assert!(on_loopback(local), "{local}");
        }
        for remote in [
            "https://servicediscovery.eu-west-1.amazonaws.com",
            "http://10.0.0.7:8060",
            "http://127.0.0.1.example.com:80",
        ] {
            assert!(!on_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn an_instance_takes_its_address_and_zone_from_its_attributes() {
        let summary = HttpInstanceSummary::builder()
            .instance_id("sim-a")
            .attributes("AWS_INSTANCE_IPV4", "10.0.0.7")
            .attributes("AWS_INSTANCE_PORT", "50051")
            .attributes("zone", "eu-west-1a")
            .build();

        let listed = instance(&summary).unwrap();

        assert_eq!(listed.address, "10.0.0.7:50051");
        assert_eq!(listed.zone.as_deref(), Some("eu-west-1a"));
        let no_port = HttpInstanceSummary::builder()
            .instance_id("sim-b")
            .attributes("AWS_INSTANCE_IPV4", "10.0.0.8")
            .build();
        assert_eq!(
            instance(&no_port).unwrap_err().to_string(),
            "cloud map instance sim-b: no AWS_INSTANCE_PORT port number"
        );
    }
}
