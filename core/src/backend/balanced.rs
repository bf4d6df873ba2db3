//! A channel balanced over a backend's discovered servers (the auth replicas): tonic's
//! `balance_channel`, its endpoints inserted and removed as the [`Watch`] lists change, so a
//! replica that left the healthy list gets no more calls.

use std::collections::HashSet;

use tonic::transport::Channel;
use tonic::transport::channel::Change;
use tracing::warn;

use super::channel;
use crate::config::Settings;
use crate::discovery::{Watch, url_of};

/// Endpoints a balanced channel holds before changes wait: more than any list of replicas.
const CHANGES_CAPACITY: usize = 64;

/// A channel over every server `servers` lists now and later, each with the endpoint of
/// [`channel::server_endpoint`]. Must be called on a Tokio runtime (it spawns the follower,
/// which ends when the channel is dropped).
pub fn balanced_channel(servers: &Watch, settings: &Settings) -> Channel {
    let (balanced, changes) = Channel::balance_channel::<String>(CHANGES_CAPACITY);
    let mut lists = servers.subscribe();
    let settings = settings.clone();
    tokio::spawn(async move {
        let mut current: HashSet<String> = HashSet::new();
        loop {
            let listed: HashSet<String> = lists
                .borrow_and_update()
                .as_deref()
                .map(|list| list.iter().map(|i| i.address.clone()).collect())
                .unwrap_or_default();
            for gone in current.difference(&listed) {
                if changes.send(Change::Remove(gone.clone())).await.is_err() {
                    return;
                }
            }
            for new in listed.difference(&current) {
                let url = url_of(&settings, new);
                match channel::server_endpoint(&url, &settings.backends) {
                    Ok(endpoint) => {
                        if changes
                            .send(Change::Insert(new.clone(), endpoint))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(error) => warn!(server = %new, %error, "cannot call a discovered server"),
                }
            }
            current = listed;
            if lists.changed().await.is_err() {
                return;
            }
        }
    });
    balanced
}
