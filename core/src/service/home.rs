//! The home region of a session (`docs/multi-region.md`): a write served by a region that is
//! not the session's home is refused before anything is claimed or written, naming the home;
//! a read names the home so that a client needing read-your-writes can go there.

use std::time::Duration;

use super::{ServiceError, SessionService};
use crate::auth::Principal;
use crate::domain::{RegionName, Session, SessionId};

impl SessionService {
    /// Refuses a write to session `id` unless this region is its home: the item's home if the
    /// caller's session is readable here, else the region its id was born in (an item not yet
    /// replicated). Always passes in a single-region deployment, without reading anything.
    ///
    /// # Errors
    /// [`ServiceError::WrongRegion`] naming the home; a store failure.
    pub async fn check_write_home(
        &self,
        caller: &Principal,
        id: &SessionId,
    ) -> Result<(), ServiceError> {
        if !self.regions.is_multi_region() {
            return Ok(());
        }
        let (region, epoch) = match self.sessions.get_session(id).await? {
            Some(session) if session.owner == caller.user => {
                (session.home_region, session.home_epoch)
            }
            // Someone else's session is as absent as a missing one: only the id speaks.
            _ => (id.region(), 1),
        };
        let Some(home) = self.regions.home_elsewhere(region.as_ref()) else {
            return Ok(());
        };
        Err(ServiceError::WrongRegion {
            session: id.to_string(),
            home_region: home.clone(),
            home_epoch: epoch,
            home_api: self.regions.api_of(home).map(str::to_owned),
        })
    }

    /// This region, for an idempotent write's answer to name (`Idempotency-Region`: the region
    /// that holds the key's claim, where a retry is never a new request); `None` in a
    /// single-region deployment.
    pub fn answering_region(&self) -> Option<&RegionName> {
        self.regions.is_multi_region().then_some(&self.regions.this)
    }

    /// How far behind `session`'s home this region's replica may be, for reads to say
    /// (`X-Replica-Lag-Ms`): zero at the home; elsewhere the age of the home's last beat as
    /// replicated here (the replication lag plus at most one beat period: an upper bound, and
    /// one that grows while the home is cut off or down). `None` in a single-region deployment,
    /// before any beat of the home has arrived, or when the store cannot say (logged: the read
    /// itself is answered).
    pub async fn replica_lag(&self, session: &Session) -> Option<Duration> {
        if !self.regions.is_multi_region() {
            return None;
        }
        let Some(home) = self.regions.home_elsewhere(session.home_region.as_ref()) else {
            return Some(Duration::ZERO);
        };
        match self.region_beats.last_beat(home).await {
            Ok(beat) => beat.map(|at| self.clock.now().since(at)),
            Err(error) => {
                tracing::warn!(%error, %home, "the home region's beat could not be read");
                None
            }
        }
    }

    /// `session`'s home region and epoch, for reads to name (`X-Session-Home`); `None` in a
    /// single-region deployment, whose answers stay as they were.
    pub fn home_of(&self, session: &Session) -> Option<(RegionName, u64)> {
        self.regions.is_multi_region().then(|| {
            let home = self.regions.resolve(session.home_region.as_ref());
            (home.clone(), session.home_epoch)
        })
    }
}
