//! `regions`: which region this deployment is, which one is primary, and where each region's
//! HTTP API is (`docs/multi-region.md`). The defaults are a single-region deployment, which
//! behaves exactly as before regions existed: bare `ses_<ULID>` ids, no `421`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::domain::RegionName;

/// The region identity of this deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionSettings {
    /// This deployment's region: by default the AWS region it runs in (`AWS_REGION`, which
    /// Lambda and the SDK set), else `local`.
    pub this: RegionName,
    /// The primary region, where sessions with a bare id (`ses_<ULID>`, minted before regions
    /// existed) are homed; unset, `this`.
    pub primary: Option<RegionName>,
    /// Each region's HTTP API base URL, named in `421 wrong-region` answers (`home_api`).
    pub apis: BTreeMap<RegionName, String>,
    /// Each region's static simulator server (that region's `backends.simulator_url`): where
    /// this region's streamer subscribes for a session homed there whose simulator records no
    /// discovered server (with discovery, the record names its server, whatever its region).
    pub simulators: BTreeMap<RegionName, String>,
}

impl Default for RegionSettings {
    fn default() -> Self {
        let this = std::env::var("AWS_REGION")
            .ok()
            .and_then(|region| RegionName::parse("regions.this", &region).ok())
            .unwrap_or_else(|| RegionName::parse("regions.this", "local").expect("a valid name"));
        Self {
            this,
            primary: None,
            apis: BTreeMap::new(),
            simulators: BTreeMap::new(),
        }
    }
}

impl RegionSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (field, urls) in [
            ("regions.apis", &self.apis),
            ("regions.simulators", &self.simulators),
        ] {
            for (region, url) in urls {
                let parsed = reqwest::Url::parse(url);
                if !parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                    return invalid(
                        field,
                        format!("{region}: {url:?} is not an http:// or https:// URL"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The primary region.
    pub fn primary(&self) -> &RegionName {
        self.primary.as_ref().unwrap_or(&self.this)
    }

    /// Whether more than one region serves: this is not the primary, or `apis` names more
    /// than one region. Only then are ids minted with a region and writes checked for it.
    pub fn is_multi_region(&self) -> bool {
        self.this != *self.primary() || self.apis.len() > 1
    }

    /// The region new sessions are born in, as their id and `home_region` name it: `None` (a
    /// bare id, the primary region) in a single-region deployment.
    pub fn birth_region(&self) -> Option<RegionName> {
        self.is_multi_region().then(|| self.this.clone())
    }

    /// The home of a session from its item's `home_region` (or, when the item is not readable
    /// here, its id's region): `None` means the primary region.
    pub fn resolve<'a>(&'a self, region: Option<&'a RegionName>) -> &'a RegionName {
        region.unwrap_or_else(|| self.primary())
    }

    /// The home of a session whose item records `region` (see [`Self::resolve`]) when that is
    /// another region than this one; `None` when the session is homed here.
    pub fn home_elsewhere<'a>(&'a self, region: Option<&'a RegionName>) -> Option<&'a RegionName> {
        let home = self.resolve(region);
        (*home != self.this).then_some(home)
    }

    /// `region`'s HTTP API base URL, if configured.
    pub fn api_of(&self, region: &RegionName) -> Option<&str> {
        self.apis.get(region).map(String::as_str)
    }

    /// The address (`host:port`) of `region`'s static simulator server, from `simulators`.
    pub fn simulator_of(&self, region: &RegionName) -> Option<String> {
        let url = reqwest::Url::parse(self.simulators.get(region)?).ok()?;
        Some(format!(
            "{}:{}",
            url.host_str()?,
            url.port_or_known_default()?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format as _, Toml};

    fn with(toml: &str) -> Result<super::super::Settings, ConfigError> {
        super::super::Settings::from_figment(&Figment::new().merge(Toml::string(toml)))
    }

    #[test]
    fn a_single_region_deployment_mints_bare_ids() {
        let regions = with("[regions]\nthis = \"eu-west-1\"").unwrap().regions;
        assert_eq!(regions.primary().as_str(), "eu-west-1");
        assert!(!regions.is_multi_region());
        assert_eq!(regions.birth_region(), None);
    }

    #[test]
    fn a_secondary_region_or_several_apis_make_a_multi_region_deployment() {
        let secondary = with("[regions]\nthis = \"b\"\nprimary = \"a\"")
            .unwrap()
            .regions;
        assert_eq!(secondary.birth_region().unwrap().as_str(), "b");
        let toml = "[regions]\nthis = \"a\"\n[regions.apis]\na = \"https://a.example\"\nb = \"https://b.example\"";
        let primary = with(toml).unwrap().regions;
        assert_eq!(primary.birth_region().unwrap().as_str(), "a");
        let b = RegionName::parse("region", "b").unwrap();
        assert_eq!(primary.api_of(&b), Some("https://b.example"));
    }

    #[test]
    fn a_regions_simulator_server_is_its_urls_address() {
        let toml =
            "[regions.simulators]\na = \"http://10.0.0.5:50051\"\nb = \"https://sim.b.example\"";
        let regions = with(toml).unwrap().regions;
        let region = |name| RegionName::parse("region", name).unwrap();
        assert_eq!(
            regions.simulator_of(&region("a")).as_deref(),
            Some("10.0.0.5:50051")
        );
        assert_eq!(
            regions.simulator_of(&region("b")).as_deref(),
            Some("sim.b.example:443")
        );
        assert_eq!(regions.simulator_of(&region("c")), None);
    }

    #[test]
    fn bad_region_names_and_urls_name_the_setting() {
        let err = with("[regions.apis]\na = \"not a url\"").unwrap_err();
        assert!(err.to_string().contains("regions.apis: a:"), "{err}");
        let err = with("[regions.simulators]\nb = \"ftp://b.example\"").unwrap_err();
        assert!(err.to_string().contains("regions.simulators: b:"), "{err}");
        let err = with("[regions]\nthis = \"EU_WEST\"").unwrap_err();
        assert!(err.to_string().contains("regions.this"), "{err}");
        assert!(with("[regions]\nprimary = \"x\"\nthis = \"y\"").is_ok());
    }
}
