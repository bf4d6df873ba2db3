//! `discovery`: how the gRPC backends' servers are found (`crate::discovery`): the static URLs
//! of `backends.*` (the default), AWS Cloud Map, or a Kubernetes headless Service's DNS name.

use std::time::Duration;

use serde::Deserialize;

use super::duration::check_range;
use super::{ConfigError, invalid};

/// Where the list of a backend's servers comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    /// One server each: `backends.simulator_url` and `backends.auth_url`.
    #[default]
    Static,
    /// AWS Cloud Map's `DiscoverInstances`, healthy instances only.
    Cloudmap,
    /// The A records of a DNS name (a Kubernetes headless Service).
    Dns,
}

/// Discovery settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoverySettings {
    /// `static`, `cloudmap` or `dns`.
    pub mode: DiscoveryMode,
    /// The Cloud Map namespace of the backends' services.
    pub namespace: String,
    /// The Cloud Map service of the simulator servers.
    pub simulator_service: String,
    /// The Cloud Map service of the auth service's replicas.
    pub auth_service: String,
    /// A Cloud Map API endpoint to use instead of AWS's (moto, the local stack's registry).
    pub cloudmap_endpoint: Option<String>,
    /// How often the server lists are read again, in milliseconds; a failed read keeps the
    /// last good list.
    #[serde(deserialize_with = "super::duration::millis")]
    pub refresh_ms: Duration,
    /// `host:port` of the simulator servers' headless Service (`dns` mode).
    pub simulator_dns: Option<String>,
    /// `host:port` of the auth replicas' headless Service (`dns` mode).
    pub auth_dns: Option<String>,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            mode: DiscoveryMode::Static,
            namespace: "session.internal".to_owned(),
            simulator_service: "simulator".to_owned(),
            auth_service: "auth".to_owned(),
            cloudmap_endpoint: None,
            refresh_ms: Duration::from_millis(5_000),
            simulator_dns: None,
            auth_dns: None,
        }
    }
}

impl DiscoverySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "discovery.refresh_ms",
            self.refresh_ms.as_millis(),
            100..=300_000,
        )?;
        for (setting, name) in [
            ("discovery.namespace", &self.namespace),
            ("discovery.simulator_service", &self.simulator_service),
            ("discovery.auth_service", &self.auth_service),
        ] {
            if name.trim().is_empty() {
                return invalid(setting, "must not be empty");
            }
        }
        if let Some(url) = &self.cloudmap_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(
                "discovery.cloudmap_endpoint",
                "must be an http:// or https:// URL",
            );
        }
        for (setting, name) in [
            ("discovery.simulator_dns", &self.simulator_dns),
            ("discovery.auth_dns", &self.auth_dns),
        ] {
            match name {
                None if self.mode == DiscoveryMode::Dns => {
                    return invalid(setting, "must be set when discovery.mode is dns");
                }
                Some(name) if !is_host_port(name) => {
                    return invalid(
                        setting,
                        "must be host:port (simulator.sessions.svc.cluster.local:50051)",
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether `text` is `host:port` with a non-empty host and a port number.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_mode_needs_both_names_as_host_and_port() {
        let mut settings = DiscoverySettings {
            mode: DiscoveryMode::Dns,
            ..DiscoverySettings::default()
        };
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("discovery.simulator_dns"), "{err}");
        settings.simulator_dns = Some("simulator.svc:50051".into());
        settings.auth_dns = Some("auth.svc".into());
        let err = settings.validate().unwrap_err().to_string();
        assert!(
            err.contains("discovery.auth_dns: must be host:port"),
            "{err}"
        );
        settings.auth_dns = Some("auth.svc:50052".into());
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn the_defaults_are_static_and_valid() {
        let settings = DiscoverySettings::default();
        assert_eq!(settings.mode, DiscoveryMode::Static);
        assert!(settings.validate().is_ok());
        let bad = DiscoverySettings {
            refresh_ms: Duration::from_millis(10),
            ..settings
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("discovery.refresh_ms")
        );
    }
}
