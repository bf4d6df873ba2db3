//! The in-memory adapter of [`SessionStore`]: sessions by id; the open-sessions quota counts
//! the owner's usable ones (those homed in this region, when the store is fenced).

use async_trait::async_trait;

use super::{InMemoryStore, conflict};
use crate::domain::{
    Cursor, Page, PageRequest, RegionName, Session, SessionId, SimulatorStatus, UserId,
};
use crate::store::failover::found;
use crate::store::{HomeMove, Quota, REGION_FAILOVER_REASON, SessionStore, StoreError, Takeover};

#[async_trait]
impl SessionStore for InMemoryStore {
    async fn create_session(&self, session: &Session, max_open: u32) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.sessions.contains_key(&session.id) {
            return Err(StoreError::AlreadyExists {
                entity: "session",
                id: session.id.to_string(),
            });
        }
        // Per region in a multi-region deployment (`docs/multi-region.md`, "Quotas across
        // regions"): only the sessions homed here count, replicated ones from elsewhere do not.
        let home = self.home.as_ref();
        let open = state
            .sessions
            .values()
            .filter(|s| s.owner == session.owner && s.is_usable(now))
            .filter(|s| home.is_none_or(|f| f.is_home(s.home_region.as_ref())))
            .count();
        if open >= max_open as usize {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::SessionsPerUser,
                limit: max_open,
            });
        }
        state.sessions.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .sessions
            .get(id)
            .filter(|s| !s.is_expired(now))
            .cloned())
    }

    async fn list_sessions(
        &self,
        owner: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        let now = self.clock.now();
        let state = self.lock();
        let upper = page.cursor.as_ref().map(Cursor::last_id);
        let items: Vec<Session> = state
            .sessions
            .values()
            .rev()
            .filter(|s| upper.is_none_or(|last| &s.id < last))
            .filter(|s| &s.owner == owner && !s.is_expired(now))
            .take(page.limit as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page.limit))
    }

    async fn update_session(&self, previous: &Session, next: &Session) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        self.check_home(&state, &previous.id)?;
        match state.sessions.get_mut(&previous.id) {
            // As the DynamoDB adapter: only over the version and the home it was read with.
            Some(stored)
                if !stored.is_expired(now)
                    && stored.version == previous.version
                    && (&stored.home_region, stored.home_epoch)
                        == (&previous.home_region, previous.home_epoch) =>
            {
                *stored = next.clone();
                Ok(())
            }
            Some(stored) if !stored.is_expired(now) => Err(conflict("session", &previous.id)),
            _ => Err(StoreError::NotFound {
                entity: "session",
                id: previous.id.to_string(),
            }),
        }
    }

    async fn sessions_homed_in(
        &self,
        region: &RegionName,
        primary: &RegionName,
        page: &PageRequest,
    ) -> Result<Page<Session>, StoreError> {
        let now = self.clock.now();
        let state = self.lock();
        let lower = page.cursor.as_ref().map(Cursor::last_id);
        let items: Vec<Session> = state
            .sessions
            .values()
            .filter(|s| lower.is_none_or(|last| &s.id > last))
            .filter(|s| !s.is_expired(now) && s.home_region.as_ref().unwrap_or(primary) == region)
            .take(page.limit as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page.limit))
    }

    async fn take_over_home(
        &self,
        id: &SessionId,
        step: &HomeMove<'_>,
    ) -> Result<Takeover, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        let stored = state.sessions.get(id).filter(|s| !s.is_expired(now));
        if !stored.is_some_and(|s| step.starts_at(s)) {
            return Ok(found(step, stored));
        }
        // One lock: the move and the simulators' failing are one atomic change here.
        let session = state.sessions.get_mut(id).expect("present: checked above");
        session.home_region = Some(step.to.clone());
        session.home_epoch = step.epoch + 1;
        session.version += 1;
        let epoch = session.home_epoch;
        let mut failed_simulators = 0;
        for simulator in state
            .simulators
            .get_mut(id)
            .into_iter()
            .flat_map(|s| s.values_mut())
        {
            if matches!(
                simulator.status,
                SimulatorStatus::Starting | SimulatorStatus::Running
            ) {
                let reason = Some(REGION_FAILOVER_REASON.to_owned());
                if let Ok(next) = simulator.transition(SimulatorStatus::Failed, reason, now) {
                    *simulator = next;
                    failed_simulators += 1;
                }
            }
        }
        Ok(Takeover::Moved {
            epoch,
            failed_simulators,
        })
    }
}
