//! Where a new simulator starts: power of two choices over the healthy servers, on this
//! process's count of starts in flight per server. Two random servers are compared and the less
//! busy one taken: close to least-loaded, without the herd that "always the least loaded" sends
//! to one server when every process sees the same counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rand::Rng;

use super::Instance;

/// Counts of starts in flight per server id, and the pick over them.
#[derive(Debug, Default)]
pub struct Balancer {
    in_flight: Mutex<HashMap<String, usize>>,
}

/// A start in flight on a server: counted until dropped.
#[derive(Debug)]
pub struct Load {
    balancer: Arc<Balancer>,
    server: String,
}

impl Drop for Load {
    fn drop(&mut self) {
        let mut counts = self.balancer.counts();
        if let Some(n) = counts.get_mut(&self.server) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.server);
            }
        }
    }
}

impl Balancer {
    /// Picks one of `servers` with `rng` (none when the list is empty) and counts a start on it
    /// until the returned [`Load`] is dropped.
    pub fn pick<'a>(
        self: &Arc<Self>,
        servers: &'a [Instance],
        rng: &mut impl Rng,
    ) -> Option<(&'a Instance, Load)> {
        let chosen = {
            let counts = self.counts();
            let load = |i: &Instance| counts.get(&i.id).copied().unwrap_or(0);
            match servers.len() {
                0 => return None,
                1 => &servers[0],
                n => {
                    let a = rng.random_range(0..n);
                    // A second, different server.
                    let b = (a + rng.random_range(1..n)) % n;
                    if load(&servers[b]) < load(&servers[a]) {
                        &servers[b]
                    } else {
                        &servers[a]
                    }
                }
            }
        };
        *self.counts().entry(chosen.id.clone()).or_default() += 1;
        let load = Load {
            balancer: Arc::clone(self),
            server: chosen.id.clone(),
        };
        Some((chosen, load))
    }

    /// Starts in flight on `server` now.
    pub fn in_flight(&self, server: &str) -> usize {
        self.counts().get(server).copied().unwrap_or(0)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand::rngs::StdRng as ChaCha8Rng;

    use super::*;

    fn servers(n: usize) -> Vec<Instance> {
        (0..n)
            .map(|i| Instance {
                id: format!("sim-{i}"),
                address: format!("10.0.0.{i}:50051"),
                zone: None,
            })
            .collect()
    }

    #[test]
    fn of_two_servers_the_one_with_fewer_starts_in_flight_is_picked() {
        let balancer = Arc::new(Balancer::default());
        let servers = servers(2);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (first, _busy) = balancer.pick(&servers, &mut rng).unwrap();
        let first = first.id.clone();

        // With two servers both are always compared: the idle one wins every time.
        for _ in 0..20 {
            let (next, _) = balancer.pick(&servers, &mut rng).unwrap();
            assert_ne!(next.id, first);
        }
    }

    #[test]
    fn a_finished_start_no_longer_counts() {
        let balancer = Arc::new(Balancer::default());
        let servers = servers(3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);

        let (server, load) = balancer.pick(&servers, &mut rng).unwrap();
        let id = server.id.clone();
        assert_eq!(balancer.in_flight(&id), 1);
        drop(load);

        assert_eq!(balancer.in_flight(&id), 0);
        assert!(balancer.pick(&[], &mut rng).is_none());
    }

    #[test]
    fn concurrent_starts_spread_over_every_server() {
        let balancer = Arc::new(Balancer::default());
        let servers = servers(4);
        let mut rng = ChaCha8Rng::seed_from_u64(42);

        let held: Vec<Load> = (0..40)
            .map(|_| balancer.pick(&servers, &mut rng).unwrap().1)
            .collect();

        for server in &servers {
            let n = balancer.in_flight(&server.id);
            assert!((7..=13).contains(&n), "{}: {n} of 40", server.id);
        }
        drop(held);
    }
}
