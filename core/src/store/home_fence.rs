//! Which region a store writes from (`docs/multi-region.md`): in a multi-region deployment every
//! write to a session item is conditional on the session being homed in this region, so a
//! region that is not the home cannot change the session or its counters, whatever path the
//! write takes. A single-region deployment has no fence and adds no condition.

use crate::config::RegionSettings;
use crate::domain::{Connection, RegionName};

/// This region and the primary one, for the stores' home conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeFence {
    this: RegionName,
    primary: RegionName,
}

impl HomeFence {
    /// The fence of a deployment described by `regions`: `None` when it is single-region.
    pub fn from_settings(regions: &RegionSettings) -> Option<Self> {
        regions.is_multi_region().then(|| Self {
            this: regions.this.clone(),
            primary: regions.primary().clone(),
        })
    }

    /// The fence of region `this` in a deployment whose primary region is `primary` (a
    /// failover writes as the region it takes sessions from).
    pub fn new(this: RegionName, primary: RegionName) -> Self {
        Self { this, primary }
    }

    /// This region.
    pub fn this(&self) -> &RegionName {
        &self.this
    }

    /// Whether this is the primary region, home of the sessions whose item names no home.
    pub fn is_primary(&self) -> bool {
        self.this == self.primary
    }

    /// This region as the keys and records of regional items name it: `None` for the primary,
    /// whose keys and records predate regions (they stay as they were).
    pub fn key_region(&self) -> Option<&RegionName> {
        (!self.is_primary()).then_some(&self.this)
    }

    /// The home a session's item records (`None`: the primary region).
    pub fn resolve<'a>(&'a self, home: Option<&'a RegionName>) -> &'a RegionName {
        home.unwrap_or(&self.primary)
    }

    /// Whether a session whose item records `home` (`None`: the primary) is homed here.
    pub fn is_home(&self, home: Option<&RegionName>) -> bool {
        *self.resolve(home) == self.this
    }
}

/// `connection` as the store of region `fence` records it: named as this region's (a fenced
/// store sets the region, whatever the caller put there; an unfenced one, a replay's, keeps it).
pub(crate) fn own_connection(fence: Option<&HomeFence>, connection: &Connection) -> Connection {
    Connection {
        region: fence.map_or_else(|| connection.region.clone(), |f| f.key_region().cloned()),
        ..connection.clone()
    }
}

/// Whether `connection` is region `fence`'s: a region's store sees, counts and removes only its
/// own connections, the ones its `@connections` endpoint can reach (every one without a fence).
pub(crate) fn is_own_connection(fence: Option<&HomeFence>, connection: &Connection) -> bool {
    fence.is_none_or(|f| connection.region.as_ref() == f.key_region())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionName {
        RegionName::parse("region", name).unwrap()
    }

    fn regions(this: &str, primary: Option<&str>, apis: &[&str]) -> RegionSettings {
        RegionSettings {
            this: region(this),
            primary: primary.map(region),
            apis: apis
                .iter()
                .map(|r| (region(r), format!("https://{r}.example")))
                .collect(),
            simulators: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn a_single_region_deployment_has_no_fence() {
        assert_eq!(HomeFence::from_settings(&regions("a", None, &[])), None);
        assert_eq!(
            HomeFence::from_settings(&regions("a", Some("a"), &["a"])),
            None
        );
    }

    #[test]
    fn the_primary_is_home_to_bare_sessions_and_a_secondary_only_to_its_own() {
        let primary = HomeFence::from_settings(&regions("a", None, &["a", "b"])).unwrap();
        let secondary = HomeFence::from_settings(&regions("b", Some("a"), &[])).unwrap();
        assert!(primary.is_primary() && !secondary.is_primary());
        assert!(primary.is_home(None) && primary.is_home(Some(&region("a"))));
        assert!(!primary.is_home(Some(&region("b"))));
        assert!(!secondary.is_home(None) && secondary.is_home(Some(&region("b"))));
    }
}
