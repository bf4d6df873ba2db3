//! [`Registrar`]: the stack's side of Cloud Map, through `aws-sdk-servicediscovery` — it
//! registers each backend server as an instance (address and zone in its attributes) and sets
//! its custom health, as a server registering itself and its failing health check do in AWS.
//! On the embedded registry the services exist already; on another Cloud Map API (moto's) the
//! HTTP namespace and the services are found, or created with custom health checking.

use std::collections::HashMap;
use std::net::SocketAddr;

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::error::DisplayErrorContext;
use aws_sdk_servicediscovery::types::{
    CustomHealthStatus, FilterCondition, HealthCheckCustomConfig, ServiceFilter, ServiceFilterName,
};
use session_core::discovery::CloudMapResolver;

use super::registry::service_id;

/// Why a Cloud Map call of the stack failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    /// The Cloud Map API refused or failed a call.
    #[error("Cloud Map {operation}: {message}")]
    Call {
        /// The operation.
        operation: &'static str,
        /// The SDK's error, with its cause.
        message: String,
    },
    /// A service the stack registers in is unknown to the registrar.
    #[error("no Cloud Map service {0:?} was set up")]
    UnknownService(String),
    /// The namespace did not appear after it was created.
    #[error("the Cloud Map namespace {0:?} was created but is not listed")]
    NamespaceMissing(String),
}

/// Registers the stack's servers in one Cloud Map namespace.
#[derive(Debug, Clone)]
pub struct Registrar {
    client: Client,
    /// Service ids by service name.
    services: HashMap<String, String>,
}

fn call<E>(operation: &'static str) -> impl FnOnce(E) -> RegistrarError
where
    E: std::error::Error + 'static,
{
    move |e| RegistrarError::Call {
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

impl Registrar {
    /// A registrar on the embedded registry at `endpoint`, whose services are `services`.
    pub fn embedded(endpoint: &str, services: &[&str]) -> Self {
        Self {
            client: CloudMapResolver::local_client(endpoint, None),
            services: services
                .iter()
                .map(|name| ((*name).to_owned(), service_id(name)))
                .collect(),
        }
    }

    /// A registrar on the Cloud Map API at `endpoint` (moto's), with the HTTP namespace and
    /// the services found or created.
    ///
    /// # Errors
    /// A Cloud Map call failed.
    pub async fn external(
        endpoint: &str,
        namespace: &str,
        services: &[&str],
    ) -> Result<Self, RegistrarError> {
        let client = CloudMapResolver::local_client(endpoint, None);
        let existing = namespace_id(&client, namespace).await?;
        let namespace_id = if let Some(id) = existing {
            id
        } else {
            client
                .create_http_namespace()
                .name(namespace)
                .send()
                .await
                .map_err(call("CreateHttpNamespace"))?;
            namespace_id(&client, namespace)
                .await?
                .ok_or_else(|| RegistrarError::NamespaceMissing(namespace.to_owned()))?
        };
        let filter = ServiceFilter::builder()
            .name(ServiceFilterName::NamespaceId)
            .condition(FilterCondition::Eq)
            .values(&namespace_id)
            .build()
            .unwrap_or_else(|_| unreachable!("name and values are set"));
        let listed = client
            .list_services()
            .filters(filter)
            .send()
            .await
            .map_err(call("ListServices"))?;
        let mut ids = HashMap::new();
        for name in services {
            let existing = listed
                .services()
                .iter()
                .find(|s| s.name() == Some(*name))
                .and_then(|s| s.id().map(str::to_owned));
            let id = match existing {
                Some(id) => id,
                None => client
                    .create_service()
                    .name(*name)
                    .namespace_id(&namespace_id)
                    .health_check_custom_config(HealthCheckCustomConfig::builder().build())
                    .send()
                    .await
                    .map_err(call("CreateService"))?
                    .service()
                    .and_then(|s| s.id().map(str::to_owned))
                    .unwrap_or_default(),
            };
            ids.insert((*name).to_owned(), id);
        }
        Ok(Self {
            client,
            services: ids,
        })
    }

    /// A registrar of the one service `service` (id `service_id`), on the Cloud Map API of the
    /// environment's AWS configuration (`AWS_ENDPOINT_URL` points it elsewhere): what a server
    /// registering itself uses.
    pub async fn from_env(service: &str, service_id: &str) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Self {
            client: Client::new(&shared),
            services: HashMap::from([(service.to_owned(), service_id.to_owned())]),
        }
    }

    /// The id of the service `name`.
    ///
    /// # Errors
    /// This registrar does not know the service.
    pub fn service_id(&self, name: &str) -> Result<&str, RegistrarError> {
        self.service(name)
    }

    /// Deregisters `instance` of `service`.
    ///
    /// # Errors
    /// The service is unknown, or the call failed.
    pub async fn deregister(&self, service: &str, instance: &str) -> Result<(), RegistrarError> {
        self.client
            .deregister_instance()
            .service_id(self.service(service)?)
            .instance_id(instance)
            .send()
            .await
            .map_err(call("DeregisterInstance"))?;
        Ok(())
    }

    fn service(&self, name: &str) -> Result<&str, RegistrarError> {
        self.services
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| RegistrarError::UnknownService(name.to_owned()))
    }

    /// Registers `instance` of `service` at `addr` in `zone` (healthy).
    ///
    /// # Errors
    /// The service is unknown, or the call failed.
    pub async fn register(
        &self,
        service: &str,
        instance: &str,
        addr: SocketAddr,
        zone: &str,
    ) -> Result<(), RegistrarError> {
        self.client
            .register_instance()
            .service_id(self.service(service)?)
            .instance_id(instance)
            .creator_request_id(format!("{instance}-{}", ulid::Ulid::new()))
            .attributes("AWS_INSTANCE_IPV4", addr.ip().to_string())
            .attributes("AWS_INSTANCE_PORT", addr.port().to_string())
            .attributes("zone", zone)
            .send()
            .await
            .map_err(call("RegisterInstance"))?;
        Ok(())
    }

    /// Sets the custom health of `instance` of `service`, as its health check would.
    ///
    /// # Errors
    /// The service is unknown, or the call failed.
    pub async fn set_health(
        &self,
        service: &str,
        instance: &str,
        healthy: bool,
    ) -> Result<(), RegistrarError> {
        let status = if healthy {
            CustomHealthStatus::Healthy
        } else {
            CustomHealthStatus::Unhealthy
        };
        self.client
            .update_instance_custom_health_status()
            .service_id(self.service(service)?)
            .instance_id(instance)
            .status(status)
            .send()
            .await
            .map_err(call("UpdateInstanceCustomHealthStatus"))?;
        Ok(())
    }
}

/// The id of the namespace called `name`, if there is one.
async fn namespace_id(client: &Client, name: &str) -> Result<Option<String>, RegistrarError> {
    let listed = client
        .list_namespaces()
        .send()
        .await
        .map_err(call("ListNamespaces"))?;
    Ok(listed
        .namespaces()
        .iter()
        .find(|n| n.name() == Some(name))
        .and_then(|n| n.id().map(str::to_owned)))
}
