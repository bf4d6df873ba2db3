//! This region's heartbeat in the replicated table (a multi-region deployment only): every
//! streamer of the region puts `REGION#<this>` / `BEAT` once a [`BEAT_EVERY`], and the other
//! regions read how old the beat they hold is, to say how far behind this region their replica
//! is (`X-Replica-Lag-Ms`, the failover's RPO). The streamer beats because it is the region's
//! long-lived process: a Lambda runs only when called.

use std::sync::Arc;
use std::time::Duration;

use session_core::clock::Clock;
use session_core::config::RegionSettings;
use session_core::domain::RegionName;
use session_core::store::RegionBeatStore;
use session_core::store::ports::{Port, PortUse};
use tokio::sync::watch;
use tracing::warn;

/// How often a streamer beats: a reader's figure is the lag plus at most this.
pub const BEAT_EVERY: Duration = Duration::from_millis(500);

/// The beat of one streamer.
#[derive(Debug, Clone)]
pub struct RegionBeat {
    store: Arc<dyn RegionBeatStore>,
    region: RegionName,
    clock: Arc<dyn Clock>,
}

impl RegionBeat {
    /// The store methods it calls.
    pub const PORTS: &[PortUse] = &[PortUse {
        port: Port::RegionBeats,
        methods: &["beat"],
    }];

    /// The beat of region `regions.this`; `None` in a single-region deployment, which has no
    /// replica to tell about.
    pub fn from_settings(
        regions: &RegionSettings,
        store: Arc<dyn RegionBeatStore>,
        clock: Arc<dyn Clock>,
    ) -> Option<Self> {
        regions.is_multi_region().then(|| Self {
            store,
            region: regions.this.clone(),
            clock,
        })
    }

    /// Beats every [`BEAT_EVERY`] until the streamer drains (the region's other streamers, or
    /// its replacement, go on). A failed put is logged and retried at the next beat.
    pub async fn run(self, mut draining: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(BEAT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = draining.wait_for(|draining| *draining) => return,
            }
            if let Err(error) = self.store.beat(&self.region, self.clock.now()).await {
                warn!(%error, region = %self.region, "the region's beat was not recorded");
            }
        }
    }
}
