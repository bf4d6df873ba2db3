//! A simulator server registering itself in Cloud Map, as the servers do in AWS
//! (`infra/k8s/components/simulator-registration` sets the variables, the pod's IRSA role grants
//! the three calls): `RegisterInstance` once it listens, `UpdateInstanceCustomHealthStatus`
//! healthy, and on shutdown unhealthy then `DeregisterInstance`, so discovery drops it before
//! its port closes.

use std::net::{IpAddr, SocketAddr};

use crate::cloudmap::{Registrar, RegistrarError};

/// Where and as whom to register, from the environment the Deployment sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfRegistration {
    /// The Cloud Map service's name (`CLOUDMAP_SERVICE`).
    pub service: String,
    /// Its id (`CLOUDMAP_SERVICE_ID`): registering takes the id, not the name.
    pub service_id: String,
    /// This server's instance id (`CLOUDMAP_INSTANCE_ID`, the pod's name).
    pub instance: String,
    /// The address clients reach it at (`AWS_INSTANCE_IPV4`, `AWS_INSTANCE_PORT`).
    pub address: SocketAddr,
    /// Its availability zone (`CLOUDMAP_ZONE`; empty where the cluster does not label pods).
    pub zone: String,
}

/// Why the environment does not describe a registration.
#[derive(Debug, thiserror::Error)]
pub enum SelfRegistrationError {
    /// Some of the variables are set, not all.
    #[error("{0} is not set (CLOUDMAP_SERVICE_ID turns self-registration on and needs it)")]
    Missing(&'static str),
    /// A variable does not hold what it should.
    #[error("{name}={value:?} is not {what}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        what: &'static str,
    },
}

impl SelfRegistration {
    /// The registration `var` describes (`std::env::var` in the binary), `None` without
    /// `CLOUDMAP_SERVICE_ID`.
    ///
    /// # Errors
    /// A variable is missing or invalid.
    pub fn from_vars(
        var: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Option<Self>, SelfRegistrationError> {
        let Some(service_id) = var("CLOUDMAP_SERVICE_ID") else {
            return Ok(None);
        };
        let required = |name| var(name).ok_or(SelfRegistrationError::Missing(name));
        let ip = required("AWS_INSTANCE_IPV4")?;
        let ip: IpAddr = ip.parse().map_err(|_| SelfRegistrationError::Invalid {
            name: "AWS_INSTANCE_IPV4",
            value: ip,
            what: "an IPv4 address",
        })?;
        let port = required("AWS_INSTANCE_PORT")?;
        let port: u16 = port.parse().map_err(|_| SelfRegistrationError::Invalid {
            name: "AWS_INSTANCE_PORT",
            value: port,
            what: "a port number",
        })?;
        Ok(Some(Self {
            service: required("CLOUDMAP_SERVICE")?,
            service_id,
            instance: required("CLOUDMAP_INSTANCE_ID")?,
            address: SocketAddr::new(ip, port),
            zone: var("CLOUDMAP_ZONE").unwrap_or_default(),
        }))
    }

    /// Registers this server healthy, through the environment's AWS configuration
    /// (`AWS_ENDPOINT_URL_SERVICEDISCOVERY` points it at another Cloud Map API).
    ///
    /// # Errors
    /// A Cloud Map call failed.
    pub async fn register(&self) -> Result<Registered, RegistrarError> {
        let registrar = Registrar::from_env(&self.service, &self.service_id).await;
        registrar
            .register(&self.service, &self.instance, self.address, &self.zone)
            .await?;
        registrar
            .set_health(&self.service, &self.instance, true)
            .await?;
        Ok(Registered {
            registrar,
            registration: self.clone(),
        })
    }
}

/// A registered server; [`Registered::withdraw`] takes it out of discovery.
#[derive(Debug)]
pub struct Registered {
    registrar: Registrar,
    registration: SelfRegistration,
}

impl Registered {
    /// Marks the server unhealthy (discovery drops it at its next refresh), then deregisters it.
    ///
    /// # Errors
    /// A Cloud Map call failed.
    pub async fn withdraw(self) -> Result<(), RegistrarError> {
        let SelfRegistration {
            service, instance, ..
        } = &self.registration;
        self.registrar.set_health(service, instance, false).await?;
        self.registrar.deregister(service, instance).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
        let map: HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    const ALL: &[(&str, &str)] = &[
        ("CLOUDMAP_SERVICE", "simulator"),
        ("CLOUDMAP_SERVICE_ID", "srv-abc"),
        ("CLOUDMAP_INSTANCE_ID", "exchange-simulator-7d9f"),
        ("AWS_INSTANCE_IPV4", "10.0.3.17"),
        ("AWS_INSTANCE_PORT", "50051"),
        ("CLOUDMAP_ZONE", "eu-west-1b"),
    ];

    #[test]
    fn the_deployments_variables_describe_the_registration() {
        let registration = SelfRegistration::from_vars(vars(ALL)).unwrap().unwrap();
        assert_eq!(registration.address, "10.0.3.17:50051".parse().unwrap());
        assert_eq!(registration.instance, "exchange-simulator-7d9f");
        assert_eq!(registration.zone, "eu-west-1b");
    }

    #[test]
    fn without_a_service_id_nothing_registers_and_a_partial_set_is_refused_by_name() {
        assert_eq!(SelfRegistration::from_vars(vars(&[])).unwrap(), None);
        let partial: Vec<_> = ALL
            .iter()
            .copied()
            .filter(|(k, _)| *k != "AWS_INSTANCE_PORT")
            .collect();
        let error = SelfRegistration::from_vars(vars(&partial)).unwrap_err();
        assert!(error.to_string().contains("AWS_INSTANCE_PORT"), "{error}");
        let mut bad = ALL.to_vec();
        bad[3] = ("AWS_INSTANCE_IPV4", "pod-ip");
        let error = SelfRegistration::from_vars(vars(&bad)).unwrap_err();
        assert!(error.to_string().contains("AWS_INSTANCE_IPV4"), "{error}");
    }
}
