//! The in-memory adapter of [`SimulatorStore`]: simulators by session; quotas count the
//! unfinished ones and the owner's event rate.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{InMemoryStore, conflict};
use crate::domain::{SessionId, Simulator, SimulatorId, UserId};
use crate::store::{Quota, SimulatorQuotas, SimulatorStore, StoreError};

#[async_trait]
impl SimulatorStore for InMemoryStore {
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        self.check_home(&state, &simulator.session_id)?;
        state.usable_session(&simulator.session_id, now)?;
        let budget = quotas.max_events_per_second;
        let used = state.owner_event_rate(owner, now, self.home.as_ref());
        let max_active = quotas.max_active;
        let of_session = state
            .simulators
            .entry(simulator.session_id.clone())
            .or_default();
        if of_session.contains_key(&simulator.id) {
            return Err(StoreError::AlreadyExists {
                entity: "simulator",
                id: simulator.id.to_string(),
            });
        }
        let active = of_session
            .values()
            .filter(|s| !s.status.is_terminal())
            .count();
        if active >= max_active as usize {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::SimulatorsPerSession,
                limit: max_active,
            });
        }
        if used + u64::from(simulator.events_per_second) > u64::from(budget) {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::EventsPerSecondPerUser,
                limit: budget,
            });
        }
        of_session.insert(simulator.id.clone(), simulator.clone());
        Ok(())
    }

    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .simulators
            .get(session)
            .and_then(|of_session| of_session.get(id))
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .simulators
            .get(session)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|sim| sim.expires_at > now)
            .cloned()
            .collect())
    }

    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        // Finishing releases counts on the session, which only its home may change.
        if !previous.status.is_terminal() && next.status.is_terminal() {
            self.check_home(&state, &previous.session_id)?;
        }
        let stored = state
            .simulators
            .get_mut(&previous.session_id)
            .and_then(|of_session| of_session.get_mut(&previous.id));
        match stored {
            Some(stored) if stored.expires_at > now && stored.version == previous.version => {
                *stored = next.clone();
                Ok(())
            }
            Some(stored) if stored.expires_at > now => Err(conflict("simulator", &previous.id)),
            _ => Err(StoreError::NotFound {
                entity: "simulator",
                id: previous.id.to_string(),
            }),
        }
    }
}
