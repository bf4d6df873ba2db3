//! [`Registry`]: one namespace's services and their instances, with custom health (as a
//! service created with `HealthCheckCustomConfig` has): a new instance is healthy until told
//! otherwise. Every change bumps the revision, as Cloud Map's `InstancesRevision` does.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// The service id the registry gives service `name` (Cloud Map's are `srv-` and random).
pub fn service_id(name: &str) -> String {
    format!("srv-{name}")
}

/// Why an operation was refused; [`RegistryError::code`] is its `__type`.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A required field is absent or not a string.
    #[error("{0} is required (a string, or for Attributes an object of strings)")]
    MissingField(&'static str),
    /// A field's value is not allowed.
    #[error("{0}")]
    InvalidInput(String),
    /// No such namespace.
    #[error("no namespace {0:?}")]
    NamespaceNotFound(String),
    /// No such service.
    #[error("no service {0:?}")]
    ServiceNotFound(String),
    /// No such instance in the service.
    #[error("no instance {0:?}")]
    InstanceNotFound(String),
    /// The operation is not one this registry serves.
    #[error("the operation {0} is not served by the local Cloud Map registry")]
    UnknownOperation(String),
}

impl RegistryError {
    /// The error's `__type`, as Cloud Map names it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField(_) | Self::InvalidInput(_) => "InvalidInput",
            Self::NamespaceNotFound(_) => "NamespaceNotFound",
            Self::ServiceNotFound(_) => "ServiceNotFound",
            Self::InstanceNotFound(_) => "InstanceNotFound",
            Self::UnknownOperation(_) => "UnknownOperationException",
        }
    }
}

/// Which instances `DiscoverInstances` answers (`HealthStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthFilter {
    /// Healthy ones only.
    Healthy,
    /// Unhealthy ones only.
    Unhealthy,
    /// All of them (the API's default).
    All,
    /// Healthy ones, or all of them when none is.
    HealthyOrElseAll,
}

impl HealthFilter {
    /// The filter named `status`.
    ///
    /// # Errors
    /// `status` names no filter.
    pub fn parse(status: &str) -> Result<Self, RegistryError> {
        match status {
            "HEALTHY" => Ok(Self::Healthy),
            "UNHEALTHY" => Ok(Self::Unhealthy),
            "ALL" => Ok(Self::All),
            "HEALTHY_OR_ELSE_ALL" => Ok(Self::HealthyOrElseAll),
            other => Err(RegistryError::InvalidInput(format!(
                "HealthStatus must be HEALTHY, UNHEALTHY, ALL or HEALTHY_OR_ELSE_ALL, not {other:?}"
            ))),
        }
    }
}

/// One instance as `DiscoverInstances` answers it (`HttpInstanceSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// Its id.
    pub instance_id: String,
    /// Its namespace's name.
    pub namespace_name: String,
    /// Its service's name.
    pub service_name: String,
    /// `HEALTHY` or `UNHEALTHY`.
    pub health_status: &'static str,
    /// Its attributes (`AWS_INSTANCE_IPV4`, `AWS_INSTANCE_PORT`, `zone`...).
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Instance {
    attributes: BTreeMap<String, String>,
    healthy: bool,
}

#[derive(Debug)]
struct State {
    /// Instances by service name, then instance id.
    services: BTreeMap<String, BTreeMap<String, Instance>>,
    revision: i64,
    operations: u64,
}

/// An in-memory Cloud Map namespace.
#[derive(Debug)]
pub struct Registry {
    namespace: String,
    state: Mutex<State>,
}

impl Registry {
    /// A namespace with these services and no instance.
    pub fn new(namespace: &str, services: &[&str]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            state: Mutex::new(State {
                services: services
                    .iter()
                    .map(|name| ((*name).to_owned(), BTreeMap::new()))
                    .collect(),
                revision: 0,
                operations: 0,
            }),
        }
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere leaves the maps whole: every change is one insert or update.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers (or replaces) `instance` in the service `service_id`, healthy; answers the
    /// operation's id.
    ///
    /// # Errors
    /// No such service.
    pub fn register(
        &self,
        service_id: &str,
        instance: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, RegistryError> {
        let mut state = self.state();
        let service = service_mut(&mut state, service_id)?;
        service.insert(
            instance.to_owned(),
            Instance {
                attributes,
                healthy: true,
            },
        );
        Ok(changed(&mut state))
    }

    /// Removes `instance` from the service `service_id`; answers the operation's id.
    ///
    /// # Errors
    /// No such service or instance.
    pub fn deregister(&self, service_id: &str, instance: &str) -> Result<String, RegistryError> {
        let mut state = self.state();
        service_mut(&mut state, service_id)?
            .remove(instance)
            .ok_or_else(|| RegistryError::InstanceNotFound(instance.to_owned()))?;
        Ok(changed(&mut state))
    }

    /// Sets the custom health status of `instance`.
    ///
    /// # Errors
    /// No such service or instance.
    pub fn set_health(
        &self,
        service_id: &str,
        instance: &str,
        healthy: bool,
    ) -> Result<(), RegistryError> {
        let mut state = self.state();
        service_mut(&mut state, service_id)?
            .get_mut(instance)
            .ok_or_else(|| RegistryError::InstanceNotFound(instance.to_owned()))?
            .healthy = healthy;
        changed(&mut state);
        Ok(())
    }

    /// The instances of `service` that pass `filter`, and the registry's revision.
    ///
    /// # Errors
    /// No such namespace or service.
    pub fn discover(
        &self,
        namespace: &str,
        service: &str,
        filter: HealthFilter,
    ) -> Result<(Vec<Summary>, i64), RegistryError> {
        if namespace != self.namespace {
            return Err(RegistryError::NamespaceNotFound(namespace.to_owned()));
        }
        let state = self.state();
        let instances = state
            .services
            .get(service)
            .ok_or_else(|| RegistryError::ServiceNotFound(service.to_owned()))?;
        let any_healthy = instances.values().any(|i| i.healthy);
        let summaries = instances
            .iter()
            .filter(|(_, i)| match filter {
                HealthFilter::Healthy => i.healthy,
                HealthFilter::Unhealthy => !i.healthy,
                HealthFilter::All => true,
                HealthFilter::HealthyOrElseAll => i.healthy || !any_healthy,
            })
            .map(|(id, i)| Summary {
                instance_id: id.clone(),
                namespace_name: self.namespace.clone(),
                service_name: service.to_owned(),
                health_status: if i.healthy { "HEALTHY" } else { "UNHEALTHY" },
                attributes: i.attributes.clone(),
            })
            .collect();
        Ok((summaries, state.revision))
    }
}

fn service_mut<'a>(
    state: &'a mut State,
    service_id: &str,
) -> Result<&'a mut BTreeMap<String, Instance>, RegistryError> {
    service_id
        .strip_prefix("srv-")
        .and_then(|name| state.services.get_mut(name))
        .ok_or_else(|| RegistryError::ServiceNotFound(service_id.to_owned()))
}

/// Bumps the revision; answers a new operation id.
fn changed(state: &mut State) -> String {
    state.revision += 1;
    state.operations += 1;
    format!("op-local-{}", state.operations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(port: u16) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("AWS_INSTANCE_IPV4".to_owned(), "127.0.0.1".to_owned()),
            ("AWS_INSTANCE_PORT".to_owned(), port.to_string()),
        ])
    }

    #[test]
    fn an_unhealthy_instance_is_left_out_of_healthy_discovery_until_it_recovers() {
        let registry = Registry::new("ns", &["simulator"]);
        let sim = service_id("simulator");
        registry.register(&sim, "a", attributes(1)).unwrap();
        registry.register(&sim, "b", attributes(2)).unwrap();

        registry.set_health(&sim, "a", false).unwrap();
        let (healthy, revision) = registry
            .discover("ns", "simulator", HealthFilter::Healthy)
            .unwrap();
        let (all, _) = registry
            .discover("ns", "simulator", HealthFilter::All)
            .unwrap();
        registry.set_health(&sim, "a", true).unwrap();
        let (again, later) = registry
            .discover("ns", "simulator", HealthFilter::Healthy)
            .unwrap();

        let ids = |s: &[Summary]| s.iter().map(|i| i.instance_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&healthy), ["b"]);
        assert_eq!(ids(&all), ["a", "b"]);
        assert_eq!(ids(&again), ["a", "b"]);
        assert!(later > revision, "every change bumps the revision");
    }

    #[test]
    fn healthy_or_else_all_answers_every_instance_when_none_is_healthy() {
        let registry = Registry::new("ns", &["auth"]);
        let auth = service_id("auth");
        registry.register(&auth, "a", attributes(1)).unwrap();
        registry.set_health(&auth, "a", false).unwrap();

        let (out, _) = registry
            .discover("ns", "auth", HealthFilter::HealthyOrElseAll)
            .unwrap();

        assert_eq!(out.len(), 1);
        assert_eq!(out[0].health_status, "UNHEALTHY");
    }

    #[test]
    fn unknown_namespaces_services_and_instances_are_named() {
        let registry = Registry::new("ns", &["auth"]);
        let err = registry
            .discover("other", "auth", HealthFilter::All)
            .unwrap_err();
        assert_eq!(err.code(), "NamespaceNotFound");
        let err = registry
            .register("srv-nope", "a", BTreeMap::new())
            .unwrap_err();
        assert_eq!(err.code(), "ServiceNotFound");
        assert!(err.to_string().contains("srv-nope"));
        let err = registry
            .set_health(&service_id("auth"), "ghost", true)
            .unwrap_err();
        assert_eq!(err.code(), "InstanceNotFound");
        assert!(err.to_string().contains("ghost"));
    }
}
