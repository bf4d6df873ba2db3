//! The per-user budget of simulator events per second: two counters kept in the same
//! transactions as the simulators they count.
//!
//! - the session item's `event_rate`: the sum of `events_per_second` of its simulators that are
//!   not stopped or failed (maintained with `active_simulators`);
//! - the owner's quota item's `event_rate` (`OWNER#u` / `QUOTA`): the sum of the
//!   `event_rate` of the owner's sessions.
//!
//! Every write that changes one changes the other by the same amount in the same transaction,
//! so the owner's counter is always exactly the sum of its sessions' counters: under any race,
//! and whatever clock each writer reads. It may count sessions that closed or expired with
//! simulators still counted (their simulators no longer run, or soon will not); a start that
//! would exceed the budget *retires* those sessions first: one conditional transaction per
//! session zeroes the session's counter and subtracts what it held from the owner's. Retiring
//! works from the session item itself rather than setting the owner's counter to a sum read
//! from the owner index: that index is eventually consistent (a sum read from it could miss a
//! start that already counts, and lock in a counter below the truth), and a simulator of a
//! session dropped from such a sum would later release its rate a second time. A simulator that
//! stops in a retired session finds its session's counter below its rate and releases neither
//! counter (its rate left both with the retirement).

use super::item::{
    Item, ItemExt as _, SESSION_SK, key, ms, n, owner_pk, s, session_from, session_pk,
};
use super::write::Write;
use super::{DynamoStore, TableSpec, every_page};
use crate::domain::{SessionStatus, Simulator, UserId};
use crate::store::StoreError;

/// Adds `rate` to the owner's counter (`counters`, this region's) if the sum stays within
/// `budget` (`rate <= budget`).
pub(super) fn claim(counters: Item, rate: u32, budget: u32) -> Write {
    Write::update(
        counters,
        "SET #event_rate = if_not_exists(#event_rate, :zero) + :rate",
    )
    .when("attribute_not_exists(#event_rate) OR #event_rate <= :room")
    .bind(":zero", n(0))
    .bind(":rate", n(rate))
    .bind(":room", n(budget - rate))
}

/// Subtracts `rate` from the owner's counter (`counters`).
fn release(counters: Item, rate: u64) -> Write {
    Write::update(counters, "SET #event_rate = #event_rate - :rate")
        .when("#event_rate >= :rate")
        .bind(":rate", n(rate))
}

/// What a simulator's terminal transition releases besides its own change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Its session's slot and rate, and its owner's rate.
    All,
    /// Its session's slot and rate (the owner's counter is below the rate: never under the
    /// invariant, kept so a terminal transition cannot fail on the budget).
    Session,
    /// Its session's slot only: the session was retired (or predates the counters).
    Slot,
}

impl DynamoStore {
    /// Writes `change`, the terminal transition of `previous`, releasing its session's
    /// simulator slot and its rate from the budget in the same transaction. `false` if the
    /// change did not apply (the simulator changed or is gone). Never fails on the budget: a
    /// release the counters cannot take is dropped (see the module docs).
    pub(super) async fn finish_simulator(
        &self,
        change: Write,
        previous: &Simulator,
    ) -> Result<bool, StoreError> {
        let session_key = key(session_pk(&previous.session_id), SESSION_SK);
        let owner = match self.get(session_key.clone()).await? {
            Some(item) => Some(session_from(&item)?.owner),
            None => None,
        };
        let rate = previous.events_per_second;
        let mut level = if owner.is_some() {
            Release::All
        } else {
            Release::Slot
        };
        // At most three tries: each cancellation moves to a smaller release, never back.
        for _ in 0..3 {
            let session = self.homed_here(
                if level == Release::Slot {
                    Write::update(
                        session_key.clone(),
                        "SET #active_simulators = #active_simulators - :one",
                    )
                    .when("#active_simulators > :zero")
                } else {
                    Write::update(
                        session_key.clone(),
                        "SET #active_simulators = #active_simulators - :one, \
                     #event_rate = #event_rate - :rate",
                    )
                    .when("#active_simulators > :zero AND #event_rate >= :rate")
                    .bind(":rate", n(rate))
                }
                .bind(":one", n(1))
                .bind(":zero", n(0)),
            );
            let mut writes = vec![change.clone(), session];
            if let (Release::All, Some(owner)) = (level, &owner) {
                writes.push(release(self.counters_key(owner), u64::from(rate)));
            }
            level = match self.transact(writes).await? {
                Ok(()) => return Ok(true),
                Err(c) if c.at(0) => return Ok(false),
                Err(c) if c.at(1) && level != Release::Slot => Release::Slot,
                Err(c) if c.at(2) => Release::Session,
                Err(_) => return Ok(false),
            };
        }
        Ok(false)
    }

    /// Retires the owner's sessions that are closed or expired but still count simulator
    /// events (see the module docs). Returns how many were retired.
    pub(super) async fn retire_ended_sessions(&self, owner: &UserId) -> Result<usize, StoreError> {
        let now = self.clock.now();
        // Eventually consistent (an index): each retirement's condition re-checks the session
        // item itself, so a stale entry costs a failed condition, never a wrong counter.
        let entries = every_page(
            self.client
                .query()
                .table_name(self.table.as_ref())
                .index_name(TableSpec::GSI1)
                .key_condition_expression("#GSI1PK = :owner")
                .filter_expression("#event_rate > :zero")
                .projection_expression("#PK, #status, #expires_at, #event_rate")
                .expression_attribute_names("#GSI1PK", TableSpec::GSI1PK)
                .expression_attribute_names("#PK", TableSpec::PK)
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#expires_at", "expires_at")
                .expression_attribute_names("#event_rate", "event_rate")
                .expression_attribute_values(":owner", s(owner_pk(owner)))
                .expression_attribute_values(":zero", n(0)),
        )
        .await?;
        let mut retired = 0;
        for entry in &entries {
            let ended = entry.string("status")? != SessionStatus::Active.as_str()
                || entry.timestamp("expires_at")? <= now;
            if !ended {
                continue;
            }
            let rate: u64 = entry.number("event_rate")?;
            // A session homed elsewhere is retired by its home (the fence refuses it here).
            let session = self.homed_here(
                Write::update(
                    key(entry.string(TableSpec::PK)?, SESSION_SK),
                    "SET #event_rate = :zero",
                )
                .when("#event_rate = :rate AND (#status <> :active OR #expires_at <= :now)")
                .bind(":zero", n(0))
                .bind(":rate", n(rate))
                .bind(":active", s(SessionStatus::Active.as_str()))
                .bind(":now", ms(now)),
            );
            if self
                .transact(vec![session, release(self.counters_key(owner), rate)])
                .await?
                .is_ok()
            {
                retired += 1;
            }
        }
        Ok(retired)
    }
}
