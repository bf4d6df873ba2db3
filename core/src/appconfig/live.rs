//! A live document: one AppConfig profile kept current by a background poll of the agent,
//! parsed and validated by the profile's own function. A bad or unreachable document is
//! logged (naming the problem) and counted in `appconfig_refresh_failures_total`, and the last
//! good value stays in force. Readers take the current value cheaply ([`LiveDocument::current`])
//! or subscribe to its changes ([`LiveDocument::subscribe`], a `tokio::sync::watch`).

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::client::AgentClient;

/// Where a live document is read from: the agent, the profile, and how often.
#[derive(Debug, Clone)]
pub struct Source {
    /// The agent's client.
    pub client: AgentClient,
    /// The profile (`settings`, `flags`).
    pub profile: String,
    /// How often the agent is asked.
    pub poll_interval: Duration,
}

/// A value read from an AppConfig profile, current as of the last good poll; cheap to clone.
#[derive(Debug)]
pub struct LiveDocument<T> {
    current: watch::Receiver<Arc<T>>,
}

impl<T> Clone for LiveDocument<T> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> LiveDocument<T> {
    /// A value that never changes (no agent configured, or tests).
    pub fn fixed(value: T) -> Self {
        let (_, current) = watch::channel(Arc::new(value));
        Self { current }
    }

    /// `initial` until the first good document of `source`, polled by a task that ends with
    /// the last handle. `parse` reads and validates a document; `changes` names what differs
    /// between two values (logged when a document is applied; none: nothing is applied). Without
    /// a source, or outside a Tokio runtime, `initial` stays for good.
    pub fn polled<E, P>(
        source: Option<Source>,
        initial: T,
        parse: P,
        changes: fn(&T, &T) -> Vec<String>,
    ) -> Self
    where
        E: Display + 'static,
        P: Fn(&[u8]) -> Result<T, E> + Send + 'static,
    {
        let (sender, current) = watch::channel(Arc::new(initial));
        if let (Some(source), Ok(runtime)) = (source, tokio::runtime::Handle::try_current()) {
            runtime.spawn(poll(sender, source, parse, changes));
        }
        Self { current }
    }

    /// The value in force.
    pub fn current(&self) -> Arc<T> {
        self.current.borrow().clone()
    }

    /// A receiver of the value in force (`borrow`) and of every value applied from now on
    /// (`changed`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        let mut receiver = self.current.clone();
        receiver.mark_unchanged();
        receiver
    }
}

/// Refreshes `sender` from the agent until every receiver is gone; a failure keeps the last
/// good value.
async fn poll<T, E, P>(
    sender: watch::Sender<Arc<T>>,
    source: Source,
    parse: P,
    changes: fn(&T, &T) -> Vec<String>,
) where
    E: Display,
    P: Fn(&[u8]) -> Result<T, E>,
{
    let profile = source.profile.as_str();
    let mut ticks = tokio::time::interval(source.poll_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = sender.closed() => return,
        }
        let reason = match source.client.fetch(profile).await {
            Ok(body) => match parse(&body) {
                Ok(value) => {
                    let changed = changes(&sender.borrow(), &value);
                    if changed.is_empty() {
                        debug!(profile, "AppConfig document unchanged");
                    } else {
                        info!(profile, changed = ?changed, "AppConfig document applied");
                        sender.send_replace(Arc::new(value));
                    }
                    continue;
                }
                Err(error) => {
                    warn!(profile, %error, "AppConfig document refused; the previous one stays");
                    "invalid"
                }
            },
            Err(error) => {
                warn!(profile, %error, "AppConfig document unreadable; the previous one stays");
                "unreachable"
            }
        };
        metrics::counter!(
            "appconfig_refresh_failures_total",
            "profile" => source.profile.clone(),
            "reason" => reason
        )
        .increment(1);
    }
}

/// The dotted paths (`limits.sessions_per_user`) whose values differ between two documents'
/// JSON forms, a key present in one only included: what a change of document changed.
pub fn changed_keys<T: Serialize>(before: &T, after: &T) -> Vec<String> {
    let (before, after) = (
        serde_json::to_value(before).unwrap_or_default(),
        serde_json::to_value(after).unwrap_or_default(),
    );
    let mut changed = Vec::new();
    diff("", &before, &after, &mut changed);
    changed
}

fn diff(path: &str, before: &Value, after: &Value, changed: &mut Vec<String>) {
    // A section present on one side only: every leaf of it changed.
    let empty = serde_json::Map::new();
    match (
        as_object(before, after, &empty),
        as_object(after, before, &empty),
    ) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let null = Value::Null;
                diff(
                    &child,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    changed,
                );
            }
        }
        _ if before != after => changed.push(path.to_owned()),
        _ => {}
    }
}

/// `value`'s entries; `empty` for a missing section when `other` has it.
fn as_object<'a>(
    value: &'a Value,
    other: &Value,
    empty: &'a serde_json::Map<String, Value>,
) -> Option<&'a serde_json::Map<String, Value>> {
    match value {
        Value::Null if other.is_object() => Some(empty),
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_names_the_leaves_that_differ_as_dotted_paths() {
        let before = serde_json::json!({"limits": {"a": 1, "b": 2}, "x": {"y": true}});
        let after = serde_json::json!({"limits": {"a": 1, "b": 3}, "z": 1});
        assert_eq!(changed_keys(&before, &after), vec!["limits.b", "x.y", "z"],);
        assert!(changed_keys(&before, &before).is_empty());
    }
}
