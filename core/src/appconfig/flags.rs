//! Feature flags: AppConfig's feature-flag profile as the agent returns it
//! (`{"maintenance_mode": {"enabled": true, "rollout_percent": 10, "allow_users": ["alice"]}}`),
//! kept current by a background poll and evaluated per request for a user.
//!
//! A flag is off unless `enabled`. Enabled without `rollout_percent` or `allow_users`, it is on
//! for everyone; with either, it is on for the users listed and for a stable `rollout_percent`
//! of the others (a SHA-256 of the flag's name and the user id, mod 10,000, below the percent
//! times 100: the same user always gets the same answer, and raising the percent only adds
//! users). A bad or unreachable document is logged and counted; the last good one stays.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::client::AgentClient;
use super::live::{LiveDocument, Source};
use crate::config::AppConfigSettings;

/// REST writes answer `503` `maintenance` for the users it is on for.
pub const MAINTENANCE_MODE: &str = "maintenance_mode";

/// WebSocket tickets that ask for `"compression": "deflate"` are granted it (their pushes go as
/// raw-deflate binary frames) for the users it is on for; for the others the answer says
/// `none`.
pub const WS_COMPRESSION: &str = "ws_compression";

/// Why a flags document was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    /// Not JSON of the profile's shape (serde names the flag and attribute).
    #[error("the flags document is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A `rollout_percent` outside 0..=100.
    #[error("flag {flag}: rollout_percent {percent} is not between 0 and 100")]
    Percent {
        /// The flag.
        flag: String,
        /// Its percent.
        percent: f64,
    },
}

/// One flag of the profile. Attributes other than these are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Flag {
    /// The master switch.
    pub enabled: bool,
    /// The share of users (0 to 100, two decimals count) it is on for.
    #[serde(default)]
    pub rollout_percent: Option<f64>,
    /// Users it is on for whatever the rollout.
    #[serde(default)]
    pub allow_users: Vec<String>,
}

impl Flag {
    /// Whether the flag is on for `user` (`name` is the flag's, which seeds its rollout).
    pub fn is_on_for(&self, name: &str, user: &str) -> bool {
        if !self.enabled {
            return false;
        }
        if self.rollout_percent.is_none() && self.allow_users.is_empty() {
            return true;
        }
        self.allow_users.iter().any(|allowed| allowed == user)
            || self
                .rollout_percent
                .is_some_and(|percent| f64::from(bucket(name, user)) < percent * 100.0)
    }
}

/// The user's stable place, 0..10,000, in `flag`'s rollout.
fn bucket(flag: &str, user: &str) -> u16 {
    let digest = Sha256::new()
        .chain_update(flag.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .finalize();
    let mut head = [0; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % 10_000) as u16
}

/// Every flag of one document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagSet(HashMap<String, Flag>);

impl FlagSet {
    /// The flags of a document as the agent returns it.
    ///
    /// # Errors
    /// It is not the profile's JSON, or a percent is out of range.
    pub fn parse(document: &[u8]) -> Result<Self, FlagsError> {
        let flags: HashMap<String, Flag> = serde_json::from_slice(document)?;
        if let Some((flag, percent)) = flags.iter().find_map(|(name, flag)| {
            flag.rollout_percent
                .filter(|p| !(0.0..=100.0).contains(p))
                .map(|p| (name, p))
        }) {
            return Err(FlagsError::Percent {
                flag: flag.clone(),
                percent,
            });
        }
        Ok(Self(flags))
    }

    /// Whether `flag` is on for `user`; a flag the document lacks is off.
    pub fn is_on(&self, flag: &str, user: &str) -> bool {
        self.0.get(flag).is_some_and(|f| f.is_on_for(flag, user))
    }

    /// The flags that differ between two documents (added, removed or changed).
    pub fn changes(&self, other: &Self) -> Vec<String> {
        let mut changed: Vec<String> = self
            .0
            .keys()
            .chain(other.0.keys())
            .filter(|name| self.0.get(*name) != other.0.get(*name))
            .cloned()
            .collect();
        changed.sort();
        changed.dedup();
        changed
    }
}

/// The flags in force, kept current from the agent while it is configured.
#[derive(Debug)]
pub struct Flags {
    live: LiveDocument<FlagSet>,
    poll_interval: Duration,
}

impl Flags {
    /// Flags that stay as `set` (no agent): tests, and processes without one.
    pub fn fixed(set: FlagSet, poll_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            live: LiveDocument::fixed(set),
            poll_interval,
        })
    }

    /// The flags `settings` name: polled from the agent every `poll_interval_ms` by a task
    /// that ends with the last handle (all off until the first good document; when no agent
    /// is configured, or outside a Tokio runtime, all off for good).
    pub fn from_settings(settings: &AppConfigSettings) -> Arc<Self> {
        let source = AgentClient::from_settings(settings).map(|client| Source {
            client,
            profile: settings.flags_profile.clone(),
            poll_interval: settings.poll_interval_ms,
        });
        Arc::new(Self {
            live: LiveDocument::polled(
                source,
                FlagSet::default(),
                FlagSet::parse,
                FlagSet::changes,
            ),
            poll_interval: settings.poll_interval_ms,
        })
    }

    /// Whether `flag` is on for `user` now; counted in `feature_flag_evaluations_total`.
    pub fn is_on(&self, flag: &'static str, user: &str) -> bool {
        let on = self.snapshot().is_on(flag, user);
        metrics::counter!(
            "feature_flag_evaluations_total",
            "flag" => flag,
            "result" => if on { "on" } else { "off" }
        )
        .increment(1);
        on
    }

    /// How often the flags are refreshed: the longest a flip takes to be seen here.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The document in force.
    pub fn snapshot(&self) -> Arc<FlagSet> {
        self.live.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(json: &str) -> FlagSet {
        FlagSet::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_ten_percent_rollout_is_on_for_ten_percent_of_users_and_always_the_same_ones() {
        let flags = flag(r#"{"f": {"enabled": true, "rollout_percent": 10}}"#);
        let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let on = users.iter().filter(|u| flags.is_on("f", u)).count();
        assert!((900..=1_100).contains(&on), "{on} of 10,000 users");
        // Another read of the document, and a wider rollout: the same users stay in.
        let again = flag(r#"{"f": {"enabled": true, "rollout_percent": 10}}"#);
        let wider = flag(r#"{"f": {"enabled": true, "rollout_percent": 20}}"#);
        for user in &users {
            assert_eq!(flags.is_on("f", user), again.is_on("f", user), "{user}");
            assert!(!flags.is_on("f", user) || wider.is_on("f", user), "{user}");
        }
    }

    #[test]
    fn the_allow_list_wins_over_the_rollout_and_a_disabled_flag_is_off_for_everyone() {
        let flags = flag(
            r#"{"f": {"enabled": true, "rollout_percent": 0, "allow_users": ["alice"]},
                "g": {"enabled": false, "allow_users": ["alice"]},
                "h": {"enabled": true, "note": "other attributes are ignored"}}"#,
        );
        assert!(flags.is_on("f", "alice"));
        assert!(!flags.is_on("f", "bob"));
        assert!(!flags.is_on("g", "alice"));
        assert!(flags.is_on("h", "bob"));
        assert!(!flags.is_on("missing", "alice"));
    }

    #[test]
    fn a_percent_out_of_range_is_refused_naming_the_flag() {
        let err =
            FlagSet::parse(br#"{"f": {"enabled": true, "rollout_percent": 150}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "flag f: rollout_percent 150 is not between 0 and 100"
        );
        assert!(FlagSet::parse(br#"{"f": {"enabled": "yes"}}"#).is_err());
    }
}
