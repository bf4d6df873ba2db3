//! The DynamoDB adapter of [`SimulatorStore`]: one item per simulator (`SESSION#<id>` /
//! `SIM#<id>`); the session item counts its active simulators and their event rate, and the
//! owner's budget (`event_budget`) is claimed in the same transaction.

use crate::store::ports::{GET_ITEM, MethodActions, PUT_ITEM, QUERY, UPDATE_ITEM};
use async_trait::async_trait;

use super::item::{
    SESSION_SK, SIM_PREFIX, key, ms, n, s, session_pk, simulator_from, simulator_item,
};
use super::write::Write;
use super::{DynamoStore, LIVE, applied, event_budget};
use crate::domain::{SessionId, SessionStatus, Simulator, SimulatorId, UserId};
use crate::store::{Quota, SimulatorQuotas, SimulatorStore, StoreError};

/// The DynamoDB actions of each method of [`SimulatorStore`] here (checked against the calls in this
/// file by `iam.rs`; entry points' IAM roles are held to them by `tests/tests/infra.rs`).
pub(super) const IAM_ACTIONS: &[MethodActions] = &[
    // The session's usability is read; the owner's ended sessions are queried and retired.
    (
        "create_simulator",
        &[PUT_ITEM, UPDATE_ITEM, GET_ITEM, QUERY],
    ),
    ("get_simulator", &[GET_ITEM]),
    ("list_simulators", &[QUERY]),
    // Finishing reads the session and releases the quota and budget.
    ("update_simulator", &[PUT_ITEM, UPDATE_ITEM, GET_ITEM]),
];

#[async_trait]
impl SimulatorStore for DynamoStore {
    async fn create_simulator(
        &self,
        simulator: &Simulator,
        owner: &UserId,
        quotas: SimulatorQuotas,
    ) -> Result<(), StoreError> {
        let SimulatorQuotas {
            max_active,
            max_events_per_second: budget,
        } = quotas;
        let rate = simulator.events_per_second;
        let over_budget = StoreError::QuotaExceeded {
            quota: Quota::EventsPerSecondPerUser,
            limit: budget,
        };
        if rate > budget {
            return Err(over_budget);
        }
        for attempt in 0..2 {
            let now = self.clock.now();
            let writes =
                vec![
                Write::put(simulator_item(simulator)).when("attribute_not_exists(#PK)"),
                self.homed_here(Write::update(
                    key(session_pk(&simulator.session_id), SESSION_SK),
                    "SET #active_simulators = if_not_exists(#active_simulators, :zero) + :one, \
                     #event_rate = if_not_exists(#event_rate, :zero) + :rate",
                )
                .when(
                    "#status = :active AND #expires_at > :now \
                     AND (attribute_not_exists(#active_simulators) OR #active_simulators < :max)",
                )
                .bind(":active", s(SessionStatus::Active.as_str()))
                .bind(":now", ms(now))
                .bind(":zero", n(0))
                .bind(":one", n(1))
                .bind(":rate", n(rate))
                .bind(":max", n(max_active))),
                event_budget::claim(self.counters_key(owner), rate, budget),
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                Err(c) if c.at(0) => {
                    return Err(StoreError::AlreadyExists {
                        entity: "simulator",
                        id: simulator.id.to_string(),
                    });
                }
                Err(c) if c.at(1) || !c.at(2) => {
                    if let Some(elsewhere) = self.not_home(&simulator.session_id).await? {
                        return Err(elsewhere);
                    }
                    if !self.session_usable(&simulator.session_id).await? {
                        return Err(StoreError::SessionNotActive {
                            id: simulator.session_id.to_string(),
                        });
                    }
                    return Err(StoreError::QuotaExceeded {
                        quota: Quota::SimulatorsPerSession,
                        limit: max_active,
                    });
                }
                // Over the budget: sessions that ended with simulators counted may hold it.
                Err(_) => {
                    if attempt == 0 && self.retire_ended_sessions(owner).await? > 0 {
                        continue;
                    }
                    break;
                }
            }
        }
        Err(over_budget)
    }

    async fn get_simulator(
        &self,
        session: &SessionId,
        id: &SimulatorId,
    ) -> Result<Option<Simulator>, StoreError> {
        let now = self.clock.now();
        let item = self
            .get(key(session_pk(session), format!("{SIM_PREFIX}{id}")))
            .await?;
        let simulator = item.as_ref().map(simulator_from).transpose()?;
        Ok(simulator.filter(|s| s.expires_at > now))
    }

    async fn list_simulators(&self, session: &SessionId) -> Result<Vec<Simulator>, StoreError> {
        let now = self.clock.now();
        let items = self.query_prefix(session_pk(session), SIM_PREFIX).await?;
        let mut simulators = Vec::with_capacity(items.len());
        for item in &items {
            let simulator = simulator_from(item)?;
            if simulator.expires_at > now {
                simulators.push(simulator);
            }
        }
        Ok(simulators)
    }

    async fn update_simulator(
        &self,
        previous: &Simulator,
        next: &Simulator,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let change = Write::put(simulator_item(next))
            .when(&format!("{LIVE} AND #version = :version"))
            .bind(":now", ms(now))
            .bind(":version", n(previous.version));
        let finishes = !previous.status.is_terminal() && next.status.is_terminal();
        let applied = if finishes {
            self.finish_simulator(change, previous).await?
        } else {
            applied(self.write(change).await)?
        };
        if applied {
            return Ok(());
        }
        // Finishing writes the session's counters, which only its home may change.
        if finishes && let Some(elsewhere) = self.not_home(&previous.session_id).await? {
            return Err(elsewhere);
        }
        let sim_key = key(
            session_pk(&previous.session_id),
            format!("{SIM_PREFIX}{}", previous.id),
        );
        Err(self
            .missing_or_conflict("simulator", previous.id.as_str(), sim_key)
            .await)
    }
}
