//! Admission control: how many connections the pod holds, how many streams each user and each
//! source address holds, and when readiness says `full`.
//!
//! Layout: [`Admission`] is shared by the HTTP server, which takes a [`ConnectionSlot`] for
//! every connection it accepts, and by the SSE route, which takes a [`StreamSlot`] per cap for
//! every stream it opens. A slot is a guard that gives its place back when it is dropped, so no
//! way a connection or a stream ends can leak one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::settings::StreamerSettings;
use session_core::domain::UserId;
use session_core::http::ApiError;
use session_core::ratelimit::{address_key, client_address};

use crate::metrics;

/// Connections beyond the cap that may still ask a probe route (`/health/*`, `/metrics`): a
/// full pod must keep answering the kubelet's probes and Prometheus, a handful of connections
/// every few seconds, and no more than that may be read past the cap.
const PROBE_SLOTS: usize = 64;

/// The routes a probe asks; they are served past the cap.
fn is_probe(path: &str) -> bool {
    matches!(path, "/health/live" | "/health/ready" | "/metrics")
}

/// The pod's caps and their counts; cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    connections: Arc<Connections>,
    users: Arc<Caps<UserId>>,
    addresses: Arc<Caps<IpAddr>>,
    /// Proxies trusted to append the client's address to `X-Forwarded-For`
    /// (`rate_limits.trusted_proxy_hops`): behind the gateway every TCP peer is the gateway.
    trusted_proxy_hops: u8,
}

impl Admission {
    /// The caps of `settings`, behind `trusted_proxy_hops` proxies.
    pub(crate) fn new(settings: &StreamerSettings, trusted_proxy_hops: u8) -> Self {
        let max = settings.max_connections as usize;
        Self {
            connections: Arc::new(Connections {
                max: AtomicUsize::new(max),
                open: AtomicUsize::new(0),
                probes: AtomicUsize::new(0),
                full: AtomicBool::new(false),
            }),
            users: Arc::new(Caps::new("streams_per_user", settings.max_streams_per_user)),
            addresses: Arc::new(Caps::new(
                "streams_per_address",
                settings.max_streams_per_address,
            )),
            trusted_proxy_hops,
        }
    }

    /// A place for a connection just accepted: one of the cap's, or else one of the few kept
    /// for probes; `None` when both are taken (the connection is answered `full` at once).
    pub(crate) fn accept(&self) -> Option<ConnectionSlot> {
        let connections = &self.connections;
        let class = if take(&connections.open, connections.max()) {
            metrics::connections(1.0);
            Class::Capped
        } else if take(&connections.probes, PROBE_SLOTS) {
            Class::Probe
        } else {
            metrics::refused("full");
            return None;
        };
        Some(ConnectionSlot {
            connections: connections.clone(),
            class,
        })
    }

    /// Connections holding a place in the cap.
    pub(crate) fn connections(&self) -> usize {
        self.connections.open.load(Ordering::Relaxed)
    }

    /// Whether readiness says `full`: from the high-water mark (95 % of the cap) until the
    /// count falls to the low-water mark (90 %). Evaluated when a probe asks, which is all the
    /// load balancer sees.
    pub(crate) fn full(&self) -> bool {
        let connections = &self.connections;
        let open = connections.open.load(Ordering::Relaxed);
        let was = connections.full.load(Ordering::Relaxed);
        let full = Marks::of(connections.max()).full(was, open);
        connections.full.store(full, Ordering::Relaxed);
        full
    }

    /// A stream slot of the caller's address's cap: the TCP `peer`, or the address the trusted
    /// proxies put in `forwarded_for`.
    ///
    /// # Errors
    /// `TooManyStreams` (`streams_per_address`) when the address holds its cap.
    pub(crate) fn stream_from(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
    ) -> Result<StreamSlot<IpAddr>, ApiError> {
        let client = client_address(peer, forwarded_for, self.trusted_proxy_hops);
        self.addresses.take(address_key(client))
    }

    /// A stream slot of `user`'s cap.
    ///
    /// # Errors
    /// `TooManyStreams` (`streams_per_user`) when the user holds its cap.
    pub(crate) fn stream_of(&self, user: &UserId) -> Result<StreamSlot<UserId>, ApiError> {
        self.users.take(user.clone())
    }

    /// Sets the caps to `settings`' (a runtime settings change): new connections and streams
    /// are held to them; those open over a lowered cap stay until they end.
    pub(crate) fn set_caps(&self, settings: &StreamerSettings) {
        self.connections
            .max
            .store(settings.max_connections as usize, Ordering::Relaxed);
        self.users
            .limit
            .store(settings.max_streams_per_user, Ordering::Relaxed);
        self.addresses
            .limit
            .store(settings.max_streams_per_address, Ordering::Relaxed);
    }
}

/// The connection counts of the pod.
#[derive(Debug)]
struct Connections {
    /// The cap (`streamer.max_connections`, changed by runtime settings); readiness' marks
    /// follow it.
    max: AtomicUsize,
    /// Connections holding a place in the cap.
    open: AtomicUsize,
    /// Connections past the cap, or moved out of it, that ask probe routes only.
    probes: AtomicUsize,
    /// What readiness last said (the hysteresis' state).
    full: AtomicBool,
}

impl Connections {
    /// The cap now.
    fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
}

/// Takes one of `limit` places counted by `count`; `false` if none is free.
fn take(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// Which count a connection holds a place in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Capped,
    Probe,
}

/// A connection's place; given back when it is dropped (the connection ended).
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    connections: Arc<Connections>,
    class: Class,
}

impl ConnectionSlot {
    /// Whether the connection may be served a request for `path`. A probe route always is, and
    /// its connection moves out of the cap when a probe place is free, so that probes neither
    /// fill the pod nor count toward its readiness; any other route only from a place in the
    /// cap (one is taken if the connection held a probe place and the cap has room again).
    pub(crate) fn admit(&mut self, path: &str) -> bool {
        let connections = &self.connections;
        match (self.class, is_probe(path)) {
            (Class::Capped, true) => {
                if take(&connections.probes, PROBE_SLOTS) {
                    self.release();
                    self.class = Class::Probe;
                }
                true
            }
            (Class::Probe, false) => {
                if !take(&connections.open, connections.max()) {
                    metrics::refused("full");
                    return false;
                }
                metrics::connections(1.0);
                self.release();
                self.class = Class::Capped;
                true
            }
            (Class::Capped, false) | (Class::Probe, true) => true,
        }
    }

    /// Gives back the place of the current class.
    fn release(&self) {
        match self.class {
            Class::Capped => {
                self.connections.open.fetch_sub(1, Ordering::AcqRel);
                metrics::connections(-1.0);
            }
            Class::Probe => {
                self.connections.probes.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// The high-water and low-water marks of readiness. Two marks, not one: at a single threshold
/// the pod would flap in and out of rotation as single clients come and go, and every flap
/// moves part of the gateway's consistent-hash ring (new clients of a session split across
/// pods, each building its own window); between the marks readiness keeps what it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marks {
    /// Readiness says `full` from this many connections (95 % of the cap, rounded up)...
    full_at: usize,
    /// ...until the count is back down to this many (90 %, and below `full_at`).
    ready_at: usize,
}

impl Marks {
    fn of(max: usize) -> Self {
        let full_at = (max - max / 20).max(1);
        Self {
            full_at,
            ready_at: (max * 9 / 10).min(full_at - 1),
        }
    }

    /// What readiness says with `open` connections, having said `was_full` before.
    fn full(self, was_full: bool, open: usize) -> bool {
        if open >= self.full_at {
            true
        } else if open <= self.ready_at {
            false
        } else {
            was_full
        }
    }
}

/// A cap on concurrent streams per key, and the streams each key holds.
#[derive(Debug)]
struct Caps<K> {
    /// The cap's name in problems and metrics.
    quota: &'static str,
    /// The cap (changed by runtime settings).
    limit: AtomicU32,
    /// Only keys holding streams: an entry goes with its last stream, so memory follows the
    /// open streams, not every caller ever seen.
    held: Mutex<HashMap<K, u32>>,
}

impl<K: Hash + Eq + Clone> Caps<K> {
    fn new(quota: &'static str, limit: u32) -> Self {
        Self {
            quota,
            limit: AtomicU32::new(limit),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn take(self: &Arc<Self>, key: K) -> Result<StreamSlot<K>, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        let limit = self.limit.load(Ordering::Relaxed);
        if *count >= limit {
            metrics::refused(self.quota);
            return Err(ApiError::TooManyStreams {
                quota: self.quota,
                limit,
            });
        }
        *count += 1;
        Ok(StreamSlot {
            caps: self.clone(),
            key,
        })
    }
}

/// A stream's place in one cap; given back when it is dropped (the stream ended).
#[derive(Debug)]
pub(crate) struct StreamSlot<K: Hash + Eq + Clone> {
    caps: Arc<Caps<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for StreamSlot<K> {
    fn drop(&mut self) {
        let mut held = self
            .caps
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_connections: u32) -> StreamerSettings {
        StreamerSettings {
            max_connections,
            max_streams_per_user: 2,
            max_streams_per_address: 3,
            ..StreamerSettings::default()
        }
    }

    #[test]
    fn the_marks_are_95_and_90_percent_of_the_cap_and_never_meet() {
        assert_eq!(
            Marks::of(20_000),
            Marks {
                full_at: 19_000,
                ready_at: 18_000
            }
        );
        assert_eq!(
            Marks::of(10),
            Marks {
                full_at: 10,
                ready_at: 9
            }
        );
        assert_eq!(
            Marks::of(1),
            Marks {
                full_at: 1,
                ready_at: 0
            }
        );
    }

    #[test]
    fn readiness_turns_full_at_the_high_mark_and_ready_only_below_the_low_mark() {
        let marks = Marks::of(100);
        let mut full = false;
        let mut said = Vec::new();
        for open in [80, 94, 95, 99, 93, 91, 90, 92, 95] {
            full = marks.full(full, open);
            said.push(full);
        }

        assert_eq!(
            said,
            [false, false, true, true, true, true, false, false, true]
        );
    }

    #[test]
    fn the_cap_holds_and_a_connection_past_it_may_only_ask_probes() {
        let admission = Admission::new(&settings(2), 0);
        let first = admission.accept().unwrap();
        let mut second = admission.accept().unwrap();

        let mut third = admission.accept().expect("a probe place");
        assert!(
            !third.admit("/v1/sessions/s/stream"),
            "no stream past the cap"
        );
        assert!(third.admit("/health/ready"));
        assert_eq!(admission.connections(), 2);

        assert!(second.admit("/metrics"), "a probe leaves the cap");
        assert_eq!(admission.connections(), 1);
        assert!(
            third.admit("/v1/sessions/s/stream"),
            "the cap has room again"
        );
        assert_eq!(admission.connections(), 2);
        drop((first, second, third));
        assert_eq!(admission.connections(), 0);
    }

    #[test]
    fn past_the_probe_places_a_connection_is_refused_at_once() {
        let admission = Admission::new(&settings(1), 0);
        let held: Vec<_> = (0..=PROBE_SLOTS).map(|_| admission.accept()).collect();

        assert!(held.iter().all(Option::is_some));
        assert!(admission.accept().is_none());
        drop(held);
        assert!(admission.accept().is_some(), "places come back");
    }

    #[test]
    fn behind_a_trusted_proxy_the_cap_counts_the_forwarded_address_not_the_proxy() {
        let admission = Admission::new(&settings(10), 1);
        let gateway: IpAddr = "10.0.0.9".parse().unwrap();
        let _held: Vec<_> = (0..3)
            .map(|_| admission.stream_from(gateway, Some("203.0.113.7")).unwrap())
            .collect();

        let same = admission.stream_from(gateway, Some("6.6.6.6, 203.0.113.7"));
        let other = admission.stream_from(gateway, Some("203.0.113.8"));

        assert!(same.is_err(), "a forged leftmost entry changes nothing");
        assert!(other.is_ok(), "another client behind the same gateway");
    }

    #[test]
    fn a_user_cap_refuses_past_its_limit_and_a_dropped_slot_frees_a_place() {
        let admission = Admission::new(&settings(10), 0);
        let alice = UserId::parse("sub", "alice").unwrap();
        let bob = UserId::parse("sub", "bob").unwrap();
        let one = admission.stream_of(&alice).unwrap();
        let _two = admission.stream_of(&alice).unwrap();

        let refused = admission.stream_of(&alice).unwrap_err();
        assert!(
            matches!(
                refused,
                ApiError::TooManyStreams {
                    quota: "streams_per_user",
                    limit: 2
                }
            ),
            "{refused:?}"
        );
        assert!(
            admission.stream_of(&bob).is_ok(),
            "another user is not capped"
        );
        drop(one);
        assert!(admission.stream_of(&alice).is_ok());
    }

    #[test]
    fn an_address_cap_counts_an_ipv6_64_as_one_address_and_forgets_idle_addresses() {
        let admission = Admission::new(&settings(10), 0);
        let from = |address: &str| admission.stream_from(address.parse().unwrap(), None);
        let slots: Vec<_> = ["2001:db8::1", "2001:db8::2", "::ffff:10.0.0.1"]
            .iter()
            .map(|a| from(a).unwrap())
            .collect();
        let _third = from("2001:db8::3").unwrap();

        assert!(
            from("2001:db8:0:0:ffff::9").is_err(),
            "the /64 holds its cap of 3"
        );
        assert!(from("10.0.0.1").is_ok());
        drop(slots);
        let held = admission.addresses.held.lock().unwrap();
        assert_eq!(held.len(), 1, "only addresses with streams are kept");
    }
}
